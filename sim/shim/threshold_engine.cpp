// C++ shim around the verilated threshold engine: a whole tensor per call, never a Python call per
// clock cycle. Built by hwprune.sim.build.shared_library with -DLANES=.. -DWIDTH=..
#include <cstdint>
#include <vector>
#include "Vthreshold_engine.h"
#include "verilated.h"
#include "ports.h"

using namespace hwprune;

namespace {
using Engine = Model<Vthreshold_engine>;
constexpr unsigned PAYLOAD_BITS = LANES * WIDTH + LANES;
}  // namespace

extern "C" {

HWPRUNE_STREAM_SHIM_LIFECYCLE(te, Engine)

static inline void pack_beat(Bits& bits, const int16_t* t, uint64_t lane_valid) {
    pack_tile<LANES, WIDTH>(bits, t, lane_valid);
}

// Unpack the output payload: LANES sign-extended weights and one keep byte per lane.
static inline void unpack_beat(const Bits& bits, int16_t* o, uint8_t* keep) {
    unpack_lanes<LANES, WIDTH>(bits, 0, o);
    uint64_t m = bits.get(LANES * WIDTH, LANES > 32 ? 32 : LANES);
    if (LANES > 32) m |= bits.get(LANES * WIDTH + 32, LANES - 32) << 32;
    for (unsigned i = 0; i < LANES; ++i) keep[i] = (m >> i) & 1;
}

static void configure(Engine* e, uint32_t threshold, uint32_t tie_budget) {
    auto* m = e->m;
    m->threshold = threshold;
    m->tie_budget = tie_budget;
    m->clear = 1;
    m->PORT(i_stream, valid) = 0;
    m->PORT(o_stream, ready) = 0;
    e->tick();
    m->clear = 0;
}

// Stream `beats` tiles through the engine. in/out: beats*LANES int16; lane_valid: one uint64
// bitmap per beat; keep: beats*LANES bytes (1: kept); counters: {beats, kept, ties_left}.
// Random stalls (percent per cycle, seeded) exercise backpressure. Returns the cycles from the
// first beat offered to the last beat taken, or -1 if the engine stops making progress.
int64_t te_run(void* h, const int16_t* in, const uint64_t* lane_valid, int64_t beats,
               uint32_t threshold, uint32_t tie_budget, int16_t* out, uint8_t* keep,
               uint32_t* counters, uint32_t stall_seed, uint32_t in_stall_pct,
               uint32_t out_stall_pct) {
    auto* e = static_cast<Engine*>(h);
    auto* m = e->m;
    configure(e, threshold, tie_budget);

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
            read_port(m->PORT(o_stream, payload), bits);
            unpack_beat(bits, out + got * LANES, keep + got * LANES);
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
    counters[2] = m->ties_left;
    return cycles;
}

// The benchmark's ceiling: the same model clocked by a bare C++ loop over payloads packed before
// the loop, always valid and always ready, the raw output payload copied out every cycle. No
// host buffers are converted and no stall logic runs. Returns the cycles clocked.
int64_t te_raw_loop(void* h, const int16_t* in, const uint64_t* lane_valid, int64_t beats) {
    auto* e = static_cast<Engine*>(h);
    auto* m = e->m;
    configure(e, 1, 0xffffffffu);
    const unsigned words = (PAYLOAD_BITS + 31) / 32;
    std::vector<uint32_t> packed(words * beats);
    Bits bits;
    for (int64_t b = 0; b < beats; ++b) {
        pack_beat(bits, in + b * LANES, lane_valid[b]);
        std::memcpy(&packed[b * words], bits.w, words * 4);
    }
    volatile uint32_t sink = 0;
    m->PORT(i_stream, valid) = 1;
    m->PORT(o_stream, ready) = 1;
    int64_t cycles = 0;
    for (int64_t b = 0; b < beats + 4; ++b, ++cycles) {
        if (b < beats) {
            std::memcpy(bits.w, &packed[b * words], words * 4);
            write_port(m->PORT(i_stream, payload), bits);
        }
        e->tick();
        read_port(m->PORT(o_stream, payload), bits);
        sink = sink + bits.w[0];
    }
    m->PORT(i_stream, valid) = 0;
    m->PORT(o_stream, ready) = 0;
    (void)sink;
    return cycles;
}

}  // extern "C"
