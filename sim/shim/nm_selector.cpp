// C++ shim around the verilated N:M selector: a whole tensor per call, never a Python call per
// clock cycle. Built by hwprune.sim.build.shared_library with -DLANES=.. -DWIDTH=..
#include <cstdint>
#include "Vnm_selector.h"
#include "verilated.h"
#include "ports.h"

using namespace hwprune;

namespace {
using Selector = Model<Vnm_selector>;
constexpr unsigned IN_BITS = LANES * WIDTH + LANES;
// Output payload: data [LANES*WIDTH], mask [LANES], values [LANES*WIDTH], index [LANES*3]; always
// wider than 64 bits, so the port is a VlWide array of 32-bit words (up to 2304 bits: wider than
// the shared Bits buffer, so it is read in place).
constexpr unsigned MASK_LO = LANES * WIDTH;
constexpr unsigned VALUES_LO = MASK_LO + LANES;
constexpr unsigned INDEX_LO = VALUES_LO + LANES * WIDTH;
constexpr unsigned INDEX_BITS = 3;

inline uint64_t field(const uint32_t* w, unsigned lo, unsigned n) {  // n <= 32
    unsigned word = lo / 32, off = lo % 32;
    uint64_t v = w[word] >> off;
    if (off + n > 32) v |= (uint64_t)w[word + 1] << (32 - off);
    return v & ((1ULL << n) - 1);
}

void pack_beat(Bits& bits, const int16_t* t, uint64_t lane_valid) {
    pack_tile<LANES, WIDTH>(bits, t, lane_valid);
}

void unpack_beat(const uint32_t* w, int16_t* data, uint8_t* mask, int16_t* values,
                 uint8_t* index) {
    uint64_t keep = field(w, MASK_LO, LANES > 32 ? 32 : LANES);
    if (LANES > 32) keep |= field(w, MASK_LO + 32, LANES - 32) << 32;
    const Bits& bits = *reinterpret_cast<const Bits*>(w);
    unpack_lanes<LANES, WIDTH>(bits, 0, data);
    unpack_lanes<LANES, WIDTH>(bits, VALUES_LO, values);
    for (unsigned i = 0; i < LANES; ++i) {
        index[i] = (uint8_t)field(w, INDEX_LO + i * INDEX_BITS, INDEX_BITS);
        mask[i] = (keep >> i) & 1;
    }
}
}  // namespace

extern "C" {

HWPRUNE_STREAM_SHIM_LIFECYCLE(nm, Selector)

// Stream `beats` tiles through the selector with pattern n:(m8 ? 8 : 4). in: beats*LANES int16;
// lane_valid: one uint64 bitmap per beat; data/values: beats*LANES int16; mask/index:
// beats*LANES bytes; counters: {beats, kept}. Random stalls (percent per cycle, seeded) exercise
// backpressure. Returns the cycles from the first beat offered to the last beat taken, or -1 if
// the selector stops making progress.
int64_t nm_run(void* h, const int16_t* in, const uint64_t* lane_valid, int64_t beats,
               uint32_t m8, uint32_t n, int16_t* data, uint8_t* mask, int16_t* values,
               uint8_t* index, uint32_t* counters, uint32_t stall_seed, uint32_t in_stall_pct,
               uint32_t out_stall_pct) {
    auto* e = static_cast<Selector*>(h);
    auto* m = e->m;
    m->m8 = m8;
    m->n = n;
    m->clear = 1;
    m->PORT(i_stream, valid) = 0;
    m->PORT(o_stream, ready) = 0;
    e->tick();
    m->clear = 0;

    Lcg rng(stall_seed);
    Bits bits;
    const bool stalls = in_stall_pct || out_stall_pct;
    int64_t sent = 0, got = 0, cycles = 0;
    const int64_t limit = 64 * beats + 1000;
    bool loaded = false;  // payload of beat `sent` already on the port
    while (got < beats) {
        bool offer = sent < beats && !(stalls && rng.percent(in_stall_pct));
        if (offer && !loaded) {
            pack_beat(bits, in + sent * LANES, lane_valid[sent]);
            write_port(m->PORT(i_stream, payload), bits);
            loaded = true;
        }
        bool take = !(stalls && rng.percent(out_stall_pct));
        m->PORT(i_stream, valid) = offer;
        m->PORT(o_stream, ready) = take;
        m->clk = 0;
        m->eval();
        bool in_fire = offer && m->PORT(i_stream, ready);
        if (m->PORT(o_stream, valid) && take) {
            const int64_t o = got * LANES;
            unpack_beat(m->PORT(o_stream, payload).m_storage, data + o, mask + o, values + o,
                        index + o);
            ++got;
        }
        m->clk = 1;
        m->eval();
        ++cycles;
        if (in_fire) { ++sent; loaded = false; }
        if (cycles > limit) return -1;
    }
    m->PORT(i_stream, valid) = 0;
    m->PORT(o_stream, ready) = 0;
    e->tick();  // let the counters see the last transfer
    counters[0] = m->beats;
    counters[1] = m->kept;
    return cycles;
}

}  // extern "C"
