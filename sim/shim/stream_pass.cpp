// The one C++ stream-pass template: runs one pass of any stream block, a whole job per call,
// never a Python call per clock cycle. The block's ports come from block_ports.h, which
// hwprune.sim.shim_gen generates from the block's description (hwprune.contract); payloads
// arrive and leave as 32-bit words packed by the host from the same layouts.
//
// A pass: idle every stream, set the configuration ports, strobe `clear` (when the block has
// one), then offer the input streams (each its beats `repeat` times) and take the output stream
// with random stalls on every handshake (percent per cycle, seeded), until the expected number of
// results has been taken (or, without an output stream, every input beat has gone in); then
// strobe `finish` and wait for its `done` (when the block has one) and read the counters.
#include <cstdint>
#include <cstring>
#include <vector>
#include "verilated.h"
#include "ports.h"
#include "block_ports.h"

using namespace hwprune;

namespace {
using Unit = Model<Top>;

void idle(Top* m) {
    for (unsigned s = 0; s < gen::N_IN; ++s) gen::in_valid(m, s, false);
    gen::out_ready(m, false);
    gen::set_clear(m, false);
    gen::set_finish(m, false);
}

// Idle the streams, set the configuration ports and clock once (with `clear` when the block
// has one): the start of a pass.
void configure(Unit* u, const uint64_t* config) {
    idle(u->m);
    gen::set_config(u->m, config);
    if (gen::HAS_CLEAR) gen::set_clear(u->m, true);
    u->tick();
    gen::set_clear(u->m, false);
}

bool settle(Unit* u, int64_t limit) {
    idle(u->m);
    u->reset();
    if (!gen::HAS_BUSY) { u->tick(); return true; }
    for (int64_t c = 0; gen::busy(u->m); ++c) {
        if (c > limit) return false;
        u->tick();
    }
    return true;
}
}  // namespace

extern "C" {

const char* hw_signature() { return gen::SIGNATURE; }

void* hw_create() {
    auto* u = new Unit();
    settle(u, 1 << 20);
    return u;
}

void hw_destroy(void* h) { delete static_cast<Unit*>(h); }

void hw_reset(void* h) { settle(static_cast<Unit*>(h), 1 << 20); }

// in[s]: stream s's packed beats (in_beats[s] x IN_WORDS[s] words), sent in_repeat[s] times;
// config: one value per configuration port; out: room for out_capacity output beats of
// OUT_WORDS words, *out_beats set to the beats taken; counters: one value per counter port.
// Returns the cycles from the first beat offered to the last result taken (to `done` for a
// block with a finish handshake), -1 if the block stops making progress (no transfer for
// 64 x (input beats + results) + 1000 cycles in a row), -2 if it sends more
// output beats than out_capacity.
int64_t hw_run(void* h, const uint32_t* const* in, const int64_t* in_beats,
               const int64_t* in_repeat, const uint64_t* config, uint32_t* out, int64_t items,
               int64_t out_capacity, int64_t* out_beats, uint64_t* counters, uint32_t stall_seed,
               uint32_t in_stall_pct, uint32_t out_stall_pct) {
    auto* u = static_cast<Unit*>(h);
    auto* m = u->m;
    configure(u, config);

    Lcg rng(stall_seed);
    const bool stalls = in_stall_pct || out_stall_pct;
    int64_t total[gen::N_IN], sent[gen::N_IN];
    bool loaded[gen::N_IN], offer[gen::N_IN];
    int64_t all = 0;
    for (unsigned s = 0; s < gen::N_IN; ++s) {
        total[s] = in_beats[s] * in_repeat[s];
        sent[s] = 0;
        loaded[s] = false;
        all += total[s];
    }
    int64_t got = 0, beats_out = 0, cycles = 0, done_in = 0, quiet = 0;
    // The deadlock guard: clock cycles in a row without a transfer on any stream.
    const int64_t limit = 64 * (all + items) + 1000;
    auto finished = [&]() { return gen::HAS_OUT ? got >= items : done_in >= all; };
    while (!finished()) {
        for (unsigned s = 0; s < gen::N_IN; ++s) {
            offer[s] = sent[s] < total[s] && !(stalls && rng.percent(in_stall_pct));
            if (offer[s] && !loaded[s]) {
                gen::in_write(m, s, in[s] + (sent[s] % in_beats[s]) * gen::IN_WORDS[s]);
                loaded[s] = true;
            }
        }
        const bool take = gen::HAS_OUT && !(stalls && rng.percent(out_stall_pct));
        for (unsigned s = 0; s < gen::N_IN; ++s) gen::in_valid(m, s, offer[s]);
        gen::out_ready(m, take);
        m->clk = 0;
        m->eval();
        bool fire[gen::N_IN];
        for (unsigned s = 0; s < gen::N_IN; ++s) fire[s] = offer[s] && gen::in_ready(m, s);
        bool moved = false;
        for (unsigned s = 0; s < gen::N_IN; ++s) moved = moved || fire[s];
        if (gen::HAS_OUT && take && gen::out_valid(m)) {
            moved = true;
            if (beats_out >= out_capacity) { idle(m); return -2; }
            uint32_t* w = out + beats_out * gen::OUT_WORDS;
            gen::out_read(m, w);
            got += gen::out_items(w);
            ++beats_out;
        }
        m->clk = 1;
        m->eval();
        ++cycles;
        for (unsigned s = 0; s < gen::N_IN; ++s)
            if (fire[s]) { ++sent[s]; ++done_in; loaded[s] = false; }
        quiet = moved ? 0 : quiet + 1;
        if (quiet > limit) { idle(m); return -1; }
    }
    idle(m);
    if (gen::HAS_FINISH) {
        gen::set_finish(m, true);
        u->tick();
        ++cycles;
        gen::set_finish(m, false);
        for (int64_t waited = 0; !gen::finish_done(m); ++waited) {
            u->tick();
            ++cycles;
            if (waited > limit + 100000) return -1;
        }
    } else {
        u->tick();  // let the counters see the last transfer
    }
    *out_beats = beats_out;
    gen::get_counters(m, counters);
    return cycles;
}

// The benchmark's ceiling: the same model clocked by a bare loop over stream 0's beats (packed
// before the call), always valid and always ready, the raw output payload read every cycle; no
// stall logic runs. Returns the cycles clocked.
int64_t hw_raw_loop(void* h, const uint32_t* in, int64_t beats, const uint64_t* config) {
    auto* u = static_cast<Unit*>(h);
    auto* m = u->m;
    configure(u, config);
    std::vector<uint32_t> sink(gen::OUT_WORDS + 1);
    volatile uint32_t acc = 0;
    gen::in_valid(m, 0, true);
    gen::out_ready(m, true);
    int64_t cycles = 0;
    for (int64_t b = 0; b < beats + 4; ++b, ++cycles) {
        if (b < beats) gen::in_write(m, 0, in + b * gen::IN_WORDS[0]);
        u->tick();
        if (gen::HAS_OUT) { gen::out_read(m, sink.data()); acc = acc + sink[0]; }
    }
    idle(m);
    (void)acc;
    return cycles;
}

}  // extern "C"
