// Helpers shared by the C++ shims: move packed bit fields between host buffers and Verilator
// ports of any width (CData/SData/IData/QData integers, or VlWide<N> arrays of 32-bit words).
#pragma once
#include <cstdint>
#include <cstring>
#include "verilated.h"

namespace hwprune {

// A packed bit vector of up to 64 * 32 bits, built on the host side before one port write.
struct Bits {
    uint32_t w[64];
    void clear(unsigned nbits) { std::memset(w, 0, ((nbits + 31) / 32) * 4); }
    void put(unsigned lo, unsigned n, uint64_t v) {
        if (n < 64) v &= (1ULL << n) - 1;
        unsigned word = lo / 32, off = lo % 32;
        uint64_t shifted = v << off;  // n <= 32 in every caller, so this fits in 64 bits
        w[word] |= (uint32_t)shifted;
        if (off + n > 32) w[word + 1] |= (uint32_t)(shifted >> 32);
    }
    uint64_t get(unsigned lo, unsigned n) const {
        unsigned word = lo / 32, off = lo % 32;
        uint64_t v = w[word] >> off;
        if (off + n > 32) v |= (uint64_t)w[word + 1] << (32 - off);
        return n < 64 ? v & ((1ULL << n) - 1) : v;
    }
};

template <typename T> inline void write_port(T& port, const Bits& b) {
    port = (T)((uint64_t)b.w[0] | ((uint64_t)b.w[1] << 32));
}
template <std::size_t N> inline void write_port(VlWide<N>& port, const Bits& b) {
    std::memcpy(port.m_storage, b.w, N * 4);
}
template <typename T> inline void read_port(const T& port, Bits& b) {
    uint64_t v = (uint64_t)port;
    b.w[0] = (uint32_t)v;
    b.w[1] = (uint32_t)(v >> 32);
}
template <std::size_t N> inline void read_port(const VlWide<N>& port, Bits& b) {
    std::memcpy(b.w, port.m_storage, N * 4);
}

// Sign-extend the low `width` bits of v.
inline int32_t sext(uint64_t v, unsigned width) {
    uint32_t m = 1u << (width - 1);
    uint32_t x = (uint32_t)v & ((width >= 32) ? 0xffffffffu : ((1u << width) - 1));
    return (int32_t)((x ^ m) - m);
}

// Small deterministic generator for stall patterns (same on every platform).
struct Lcg {
    uint64_t s;
    explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
    uint32_t next() { s = s * 6364136223846793005ULL + 1442695040888963407ULL; return (uint32_t)(s >> 33); }
    bool percent(uint32_t p) { return p && (next() % 100) < p; }
};

// Pack one input tile (TileLayout: `lanes` weights of `width` bits, then the lane_valid bitmap).
template <unsigned LANES_, unsigned WIDTH_>
inline void pack_tile(Bits& bits, const int16_t* t, uint64_t lane_valid) {
    bits.clear(LANES_ * WIDTH_ + LANES_);
    if (WIDTH_ == 8 || WIDTH_ == 16) {
        // Little-endian: lane i is byte (or half-word) i of the packed vector.
        auto* bytes = reinterpret_cast<uint8_t*>(bits.w);
        for (unsigned i = 0; i < LANES_; ++i) {
            if (WIDTH_ == 8) bytes[i] = (uint8_t)t[i];
            else { bytes[2 * i] = (uint8_t)t[i]; bytes[2 * i + 1] = (uint8_t)((uint16_t)t[i] >> 8); }
        }
    } else {
        for (unsigned i = 0; i < LANES_; ++i) bits.put(i * WIDTH_, WIDTH_, (uint16_t)t[i]);
    }
    bits.put(LANES_ * WIDTH_, LANES_ > 32 ? 32 : LANES_, lane_valid & 0xffffffffu);
    if (LANES_ > 32) bits.put(LANES_ * WIDTH_ + 32, LANES_ - 32, lane_valid >> 32);
}

// Unpack `lanes` signed weights of `width` bits starting at bit `lo` of the packed vector.
template <unsigned LANES_, unsigned WIDTH_>
inline void unpack_lanes(const Bits& bits, unsigned lo, int16_t* o) {
    if ((WIDTH_ == 8 || WIDTH_ == 16) && lo % 8 == 0) {
        auto* bytes = reinterpret_cast<const uint8_t*>(bits.w) + lo / 8;
        for (unsigned i = 0; i < LANES_; ++i) {
            if (WIDTH_ == 8) o[i] = (int8_t)bytes[i];
            else o[i] = (int16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        }
    } else {
        for (unsigned i = 0; i < LANES_; ++i) o[i] = (int16_t)sext(bits.get(lo + i * WIDTH_, WIDTH_), WIDTH_);
    }
}

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

// Verilator mangles the double underscore of Amaranth's flattened names ("i_stream__valid").
#define PORT(a, b) a##___05F##b

// The lifecycle every stream-block shim exports, inside its extern "C" block:
// <prefix>_lanes, _width, _create (both streams idle, reset, one clock), _destroy, _reset.
#define HWPRUNE_STREAM_SHIM_LIFECYCLE(prefix, Type)                                    \
    int prefix##_lanes() { return LANES; }                                             \
    int prefix##_width() { return WIDTH; }                                             \
    void* prefix##_create() {                                                          \
        auto* e = new Type();                                                          \
        e->m->PORT(i_stream, valid) = 0;                                               \
        e->m->PORT(o_stream, ready) = 0;                                               \
        e->reset();                                                                    \
        e->tick();                                                                     \
        return e;                                                                      \
    }                                                                                  \
    void prefix##_destroy(void* h) { delete static_cast<Type*>(h); }                   \
    void prefix##_reset(void* h) { static_cast<Type*>(h)->reset(); }
