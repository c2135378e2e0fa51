// C++ shim around the verilated magnitude histogram / radix select: one pass (a whole stream of
// tiles, then the select walk) per call. Built with -DLANES=.. -DWIDTH=..
#include <cstdint>
#include "Vmagnitude_histogram.h"
#include "verilated.h"
#include "ports.h"

using namespace hwprune;

namespace {
struct Unit : Model<Vmagnitude_histogram> {
    // Clock until the unit is idle (the clear walk after reset, or a select walk).
    bool wait_idle(int64_t& cycles, int64_t limit) {
        while (m->busy) { tick(); ++cycles; if (cycles > limit) return false; }
        return true;
    }
};
}  // namespace

extern "C" {

int mh_lanes() { return LANES; }
int mh_width() { return WIDTH; }

void* mh_create() {
    auto* u = new Unit();
    u->m->PORT(i_stream, valid) = 0;
    u->m->select = 0;
    u->reset();
    int64_t cycles = 0;
    u->wait_idle(cycles, 1 << 20);
    return u;
}

void mh_destroy(void* h) { delete static_cast<Unit*>(h); }

// Count `beats` tiles (random idle cycles on the input, seeded), then run the select walk for
// `keep`. results: {found_bin, above, ties, counted}. Returns the cycles from the first beat
// offered to `done`, or -1 if the unit stops making progress.
int64_t mh_run(void* h, const int16_t* in, const uint64_t* lane_valid, int64_t beats,
               uint32_t shift, uint32_t match_en, uint32_t match_value, uint32_t keep,
               uint32_t* results, uint32_t stall_seed, uint32_t in_stall_pct) {
    auto* u = static_cast<Unit*>(h);
    auto* m = u->m;
    m->shift = shift;
    m->match_en = match_en;
    m->match_value = match_value;
    m->keep = keep;
    Lcg rng(stall_seed);
    Bits bits;
    int64_t sent = 0, cycles = 0;
    const int64_t limit = 64 * beats + 100000;
    while (sent < beats) {
        bool offer = !(in_stall_pct && rng.percent(in_stall_pct));
        if (offer) {
            pack_tile<LANES, WIDTH>(bits, in + sent * LANES, lane_valid[sent]);
            write_port(m->PORT(i_stream, payload), bits);
        }
        m->PORT(i_stream, valid) = offer;
        m->clk = 0;
        m->eval();
        bool fire = offer && m->PORT(i_stream, ready);
        m->clk = 1;
        m->eval();
        ++cycles;
        if (fire) ++sent;
        if (cycles > limit) return -1;
    }
    m->PORT(i_stream, valid) = 0;
    m->select = 1;
    u->tick();
    ++cycles;
    m->select = 0;
    while (!m->done) {
        u->tick();
        if (++cycles > limit) return -1;
    }
    results[0] = m->found_bin;
    results[1] = m->above;
    results[2] = m->ties;
    results[3] = m->counted;
    return cycles;
}

}  // extern "C"
