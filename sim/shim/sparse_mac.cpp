// C++ shim around the verilated sparse MAC unit: a whole layer pass per call. Built by
// hwprune.sim.build.shared_library with -DLANES -DWIDTH -DACT_WIDTH -DMAX_K -DCOUNT_BITS
// -DACC_WIDTH -DINDEX_WIDTH. Port layouts: see hw/sparse_mac.py.
#include <cstdint>
#include <cstring>
#include "Vsparse_mac.h"
#include "verilated.h"
#include "ports.h"

using namespace hwprune;

namespace {
using Unit = Model<Vsparse_mac>;
constexpr unsigned W_VALUE = 0;
constexpr unsigned W_INDEX = LANES * WIDTH;
constexpr unsigned W_COUNT = W_INDEX + LANES * INDEX_WIDTH;
constexpr unsigned W_END = W_COUNT + COUNT_BITS;
constexpr unsigned W_FINAL = W_END + LANES;
constexpr unsigned W_BITS = W_FINAL + 1;
constexpr unsigned A_LAST = LANES * ACT_WIDTH;
constexpr unsigned A_BITS = A_LAST + 1;

// The result beat (LANES accumulators of ACC_WIDTH bits, then the valid bitmap) can be wider than
// ports.h's Bits: read it into a buffer of its own.
constexpr unsigned O_BITS = LANES * ACC_WIDTH + LANES;
constexpr unsigned O_WORDS = (O_BITS + 31) / 32 + 2;
struct WideOut {
    uint32_t w[O_WORDS];
    uint64_t get(unsigned lo, unsigned n) const {   // n <= 64
        uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) {
            unsigned bit = lo + i;
            v |= (uint64_t)((w[bit / 32] >> (bit % 32)) & 1u) << i;
        }
        return v;
    }
};
template <typename T> inline void read_out(const T& port, WideOut& o) {
    std::memset(o.w, 0, sizeof o.w);
    uint64_t v = (uint64_t)port;
    o.w[0] = (uint32_t)v;
    o.w[1] = (uint32_t)(v >> 32);
}
template <std::size_t N> inline void read_out(const VlWide<N>& port, WideOut& o) {
    static_assert(N <= O_WORDS, "result port wider than the buffer");
    std::memset(o.w, 0, sizeof o.w);
    std::memcpy(o.w, port.m_storage, N * 4);
}

inline int64_t sext64(uint64_t v, unsigned width) {
    if (width >= 64) return (int64_t)v;
    uint64_t mask = (1ULL << width) - 1, sign = 1ULL << (width - 1);
    v &= mask;
    return (int64_t)((v ^ sign) - sign);
}

void idle(Unit* u) {
    u->m->PORT(w_stream, valid) = 0;
    u->m->PORT(a_stream, valid) = 0;
    u->m->PORT(o_stream, ready) = 0;
}
}  // namespace

extern "C" {

int sm_lanes() { return LANES; }
int sm_width() { return WIDTH; }
int sm_act_width() { return ACT_WIDTH; }
int sm_max_k() { return MAX_K; }

void sm_reset(void* h) {
    auto* u = static_cast<Unit*>(h);
    idle(u);
    u->reset();
    u->tick();
}

void* sm_create() {
    auto* u = new Unit();
    sm_reset(u);
    return u;
}

void sm_destroy(void* h) { delete static_cast<Unit*>(h); }

// One pass: the weight stream (`beats` beats; `end`: one bitmap per beat of the slots that end a
// row) is replayed for each of `vectors` activation vectors of `act_beats` beats. out: vectors*rows results, vector-major. Random stalls (percent
// per cycle and stream, seeded) exercise every handshake. Returns the cycles from the first beat
// offered to the last result taken, or -1 if the unit stops making progress.
int64_t sm_run(void* h, const int16_t* value, const uint8_t* index, const uint8_t* count,
               const uint64_t* end, int64_t beats, const int16_t* acts, int64_t act_beats,
               int64_t vectors, uint32_t fmt, uint32_t nm_n, uint32_t nm_m_log2, int64_t rows,
               int64_t* out, uint32_t stall_seed, uint32_t in_stall_pct, uint32_t out_stall_pct) {
    auto* u = static_cast<Unit*>(h);
    auto* m = u->m;
    idle(u);
    m->fmt = fmt;
    m->nm_n = nm_n;
    m->nm_m_log2 = nm_m_log2;
    u->tick();

    Lcg rng(stall_seed);
    Bits wbits, abits;
    WideOut obits;
    const bool stalls = in_stall_pct || out_stall_pct;
    const int64_t w_total = beats * vectors, a_total = act_beats * vectors, o_total = rows * vectors;
    int64_t w_sent = 0, a_sent = 0, got = 0, cycles = 0;
    const int64_t limit = 64 * (w_total + a_total + o_total) + 1000;
    bool w_loaded = false, a_loaded = false;
    while (got < o_total) {
        bool offer_w = w_sent < w_total && !(stalls && rng.percent(in_stall_pct));
        bool offer_a = a_sent < a_total && !(stalls && rng.percent(in_stall_pct));
        if (offer_w && !w_loaded) {
            int64_t b = w_sent % beats;
            const int16_t* v = value + b * LANES;
            const uint8_t* ix = index + b * LANES;
            wbits.clear(W_BITS);
            auto* bytes = reinterpret_cast<uint8_t*>(wbits.w);
            // Little-endian packed fields: 8/16-bit values and the 8-bit indices are whole bytes
            // (LANES * WIDTH is a multiple of 16 for every supported LANES and WIDTH).
            if (WIDTH == 8) for (unsigned s = 0; s < LANES; ++s) bytes[s] = (uint8_t)v[s];
            else if (WIDTH == 16) std::memcpy(bytes, v, LANES * 2);
            else for (unsigned s = 0; s < LANES; ++s) wbits.put(W_VALUE + s * WIDTH, WIDTH, (uint16_t)v[s]);
            static_assert(W_INDEX % 8 == 0 && INDEX_WIDTH == 8, "index field must be byte aligned");
            std::memcpy(bytes + W_INDEX / 8, ix, LANES);
            wbits.put(W_COUNT, COUNT_BITS, count[b]);
            wbits.put(W_END, LANES > 32 ? 32 : LANES, end[b] & 0xffffffffu);
            if (LANES > 32) wbits.put(W_END + 32, LANES - 32, end[b] >> 32);
            wbits.put(W_FINAL, 1, b == beats - 1 ? 1 : 0);
            write_port(m->PORT(w_stream, payload), wbits);
            w_loaded = true;
        }
        if (offer_a && !a_loaded) {
            const int16_t* d = acts + a_sent * LANES;
            abits.clear(A_BITS);
            auto* abytes = reinterpret_cast<uint8_t*>(abits.w);
            if (ACT_WIDTH == 8) for (unsigned s = 0; s < LANES; ++s) abytes[s] = (uint8_t)d[s];
            else if (ACT_WIDTH == 16) std::memcpy(abytes, d, LANES * 2);
            else for (unsigned s = 0; s < LANES; ++s) abits.put(s * ACT_WIDTH, ACT_WIDTH, (uint16_t)d[s]);
            abits.put(A_LAST, 1, (a_sent % act_beats) == act_beats - 1 ? 1 : 0);
            write_port(m->PORT(a_stream, payload), abits);
            a_loaded = true;
        }
        bool take = !(stalls && rng.percent(out_stall_pct));
        m->PORT(w_stream, valid) = offer_w;
        m->PORT(a_stream, valid) = offer_a;
        m->PORT(o_stream, ready) = take;
        m->clk = 0;
        m->eval();
        bool w_fire = offer_w && m->PORT(w_stream, ready);
        bool a_fire = offer_a && m->PORT(a_stream, ready);
        if (m->PORT(o_stream, valid) && take) {
            read_out(m->PORT(o_stream, payload), obits);
            uint64_t valid = obits.get(LANES * ACC_WIDTH, LANES);
            for (unsigned s = 0; s < LANES; ++s)
                if (((valid >> s) & 1) && got < o_total)
                    out[got++] = sext64(obits.get(s * ACC_WIDTH, ACC_WIDTH), ACC_WIDTH);
        }
        m->clk = 1;
        m->eval();
        ++cycles;
        if (w_fire) { ++w_sent; w_loaded = false; }
        if (a_fire) { ++a_sent; a_loaded = false; }
        if (cycles > limit) { idle(u); return -1; }
    }
    idle(u);
    u->tick();
    return cycles;
}

}  // extern "C"
