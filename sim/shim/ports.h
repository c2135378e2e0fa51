// Helpers shared by the C++ shims: whole payload words to and from Verilator ports of any width
// (CData/SData/IData/QData integers, or VlWide<N> arrays of 32-bit words), a seeded stall
// generator and the model harness (context, clocking, reset).
#pragma once
#include <cstdint>
#include <cstring>
#include "verilated.h"

namespace hwprune {

// Whole 32-bit words to and from a port of NW words (an integer port, or a VlWide<NW> array).
template <unsigned NW, typename T> inline void write_words(T& port, const uint32_t* w) {
    uint64_t v = w[0];
    if (NW > 1) v |= (uint64_t)w[1] << 32;
    port = (T)v;
}
template <unsigned NW, std::size_t N> inline void write_words(VlWide<N>& port, const uint32_t* w) {
    static_assert(N == NW, "payload port and layout disagree on the word count");
    std::memcpy(port.m_storage, w, N * 4);
}
template <unsigned NW, typename T> inline void read_words(const T& port, uint32_t* w) {
    uint64_t v = (uint64_t)port;
    w[0] = (uint32_t)v;
    if (NW > 1) w[1] = (uint32_t)(v >> 32);
}
template <unsigned NW, std::size_t N> inline void read_words(const VlWide<N>& port, uint32_t* w) {
    static_assert(N == NW, "payload port and layout disagree on the word count");
    std::memcpy(w, port.m_storage, N * 4);
}

// Small deterministic generator for stall patterns (same on every platform).
struct Lcg {
    uint64_t s;
    explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
    uint32_t next() { s = s * 6364136223846793005ULL + 1442695040888963407ULL; return (uint32_t)(s >> 33); }
    bool percent(uint32_t p) { return p && (next() % 100) < p; }
};

// One verilated block with its own context: clocking and a synchronous reset of `cycles` clocks.
template <typename V>
struct Model {
    VerilatedContext ctx;
    V* m;
    Model() : m(new V{&ctx}) {}
    ~Model() { m->final(); delete m; }
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;
    void tick() { m->clk = 0; m->eval(); m->clk = 1; m->eval(); }
    void reset(unsigned cycles = 2) {
        m->rst = 1;
        for (unsigned i = 0; i < cycles; ++i) tick();
        m->rst = 0;
    }
};

}  // namespace hwprune
