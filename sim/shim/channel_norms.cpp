// C++ shim around the verilated channel-norm accumulator: a whole tensor per call, never a Python
// call per clock cycle. Built by hwprune.sim.build.shared_library with -DLANES=.. -DWIDTH=..
#include <cstdint>
#include "Vchannel_norms.h"
#include "verilated.h"
#include "ports.h"

using namespace hwprune;

namespace {
using Norms = Model<Vchannel_norms>;
constexpr unsigned IN_BITS = LANES * WIDTH + LANES + 1;
// Output payload: l1 [WIDTH+24], then l2 [2*WIDTH+23] (at most 95 bits).
constexpr unsigned L1_BITS = WIDTH + 24;
constexpr unsigned L2_BITS = 2 * WIDTH + 23;

uint64_t field(const Bits& bits, unsigned lo, unsigned n) {
    uint64_t v = 0;
    for (unsigned done = 0; done < n; done += 32) {
        unsigned k = n - done < 32 ? n - done : 32;
        v |= bits.get(lo + done, k) << done;
    }
    return v;
}

void pack_beat(Bits& bits, const int16_t* t, uint64_t lane_valid, bool last) {
    pack_tile<LANES, WIDTH>(bits, t, lane_valid);
    // `last` may fall in a word pack_tile did not clear: set or clear its bit explicitly.
    const unsigned lo = LANES * WIDTH + LANES;
    bits.w[lo / 32] = (bits.w[lo / 32] & ~(1u << (lo % 32))) | ((uint32_t)last << (lo % 32));
}
}  // namespace

extern "C" {

HWPRUNE_STREAM_SHIM_LIFECYCLE(cn, Norms)

// Stream `beats` tiles (channels ended by `last`, one byte per beat) through the block and collect
// one {l1, l2} per channel into l1/l2 (`channels` entries each). counters: {beats}. Random stalls
// (percent per cycle, seeded) exercise backpressure. Returns the cycles from the first beat
// offered to the last channel taken, or -1 if the block stops making progress.
int64_t cn_run(void* h, const int16_t* in, const uint64_t* lane_valid, const uint8_t* last,
               int64_t beats, int64_t channels, int64_t* l1, int64_t* l2, uint32_t* counters,
               uint32_t stall_seed, uint32_t in_stall_pct, uint32_t out_stall_pct) {
    auto* e = static_cast<Norms*>(h);
    auto* m = e->m;
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
    while (got < channels) {
        bool offer = sent < beats && !(stalls && rng.percent(in_stall_pct));
        if (offer && !loaded) {
            pack_beat(bits, in + sent * LANES, lane_valid[sent], last[sent]);
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
            read_port(m->PORT(o_stream, payload), bits);
            l1[got] = (int64_t)field(bits, 0, L1_BITS);
            l2[got] = (int64_t)field(bits, L1_BITS, L2_BITS);
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
    counters[1] = m->channels;
    return cycles;
}

}  // extern "C"
