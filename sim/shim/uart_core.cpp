// C++ shim around the verilated UART core (UART receiver + command bridge + engine + UART
// transmitter): it plays the host's end of the serial line bit by bit, so whole buffers of bytes
// cross the ctypes boundary per call, never a Python call per clock cycle.
// Built by hwprune.sim.uart_lib with -DLANES=.. -DWIDTH=.. -DCLOCKS_PER_BIT=.. -DTIMEOUT=..
#include <cstdint>
#include <deque>
#include "Vuart_core.h"
#include "verilated.h"
#include "ports.h"

using namespace hwprune;

namespace {
constexpr uint32_t CPB = CLOCKS_PER_BIT;
constexpr uint16_t BAD_STOP = 0x100;  // queue flag: send this byte with its stop bit low

struct Sim {
    VerilatedContext ctx;
    Vuart_core* m;
    std::deque<uint16_t> host_q;   // bytes the host still has to send
    std::deque<uint8_t> recv_q;    // bytes the device sent, not yet read by the host
    // The host's bit time in device clocks, in 1/65536 clock units: CPB exactly, or off by the
    // host clock's mismatch (a real USB-UART's crystal is not the board's).
    uint64_t period = (uint64_t)CPB << 16;
    // host -> device line
    uint32_t h_left = 0, h_gap = 0;
    uint64_t h_acc = 0;
    uint16_t h_frame = 0x3ff;
    bool h_line = true;
    // device -> host line (the host's receiver, sampling mid-bit at its own bit time)
    int d_state = 0;  // 0 idle, 1 start, 2 data, 3 stop
    uint64_t d_t = 0, d_next = 0;
    uint32_t d_bit = 0;
    uint8_t d_shift = 0;
    bool link = true;
    uint32_t gap_pct = 0;
    Lcg rng{1};
    // Line faults: bit flips (per bit, parts per million) and lost bytes (per byte), both
    // directions, from their own generator; a device reset scheduled at a cycle.
    uint32_t ber_ppm = 0, drop_ppm = 0;
    Lcg fault_rng{7};
    uint64_t flips = 0, drops = 0, resets = 0, reset_at = 0;
    int rst_left = 0;
    uint64_t cycles = 0, framing_errors = 0, last_event = 0;

    Sim() { m = new Vuart_core{&ctx}; }
    ~Sim() { m->final(); delete m; }

    bool fault(uint32_t ppm) { return ppm && fault_rng.next() % 1000000u < ppm; }

    void host_line() {
        if (h_left == 0) {
            if (h_gap) { --h_gap; h_line = true; h_acc = 0; return; }
            if (host_q.empty()) { h_line = true; h_acc = 0; return; }
            uint16_t b = host_q.front();
            host_q.pop_front();
            if (fault(drop_ppm)) { ++drops; h_line = true; return; }   // lost on the way
            uint16_t stop = (b & BAD_STOP) ? 0 : 1;
            h_frame = (uint16_t)(((b & 0xff) << 1) | (stop << 9));
            for (int i = 0; i < 10; ++i)
                if (fault(ber_ppm)) { h_frame ^= (uint16_t)(1u << i); ++flips; }
            h_left = 10;
            if (gap_pct && rng.percent(gap_pct)) h_gap = rng.next() % (20 * CPB);
            // After a low stop bit, idle for two bit times so the receiver can find the next
            // start bit (back to back, the low stop bit would run into it).
            if (!stop) h_gap += 2 * CPB;
        }
        h_line = h_frame & 1;
        h_acc += 1u << 16;
        if (h_acc >= period) {   // back to back, the fraction carries into the next bit
            h_acc -= period;
            h_frame = (uint16_t)((h_frame >> 1) | 0x200);
            if (--h_left == 0) last_event = cycles;
        }
    }

    void device_line(bool tx) {
        if (d_state == 0) {
            if (!tx) { d_state = 1; d_t = 0; d_next = period / 2; }
            return;
        }
        d_t += 1u << 16;
        if (d_t < d_next) return;
        d_next += period;
        bool bit = tx ^ fault(ber_ppm && d_state != 1 ? ber_ppm : 0);
        if (bit != tx) ++flips;
        switch (d_state) {
        case 1:
            if (bit) d_state = 0;
            else { d_state = 2; d_bit = 0; d_shift = 0; }
            break;
        case 2:
            d_shift = (uint8_t)((d_shift >> 1) | (bit ? 0x80 : 0));
            if (++d_bit == 8) d_state = 3;
            break;
        case 3:
            if (!bit) ++framing_errors;
            if (fault(drop_ppm)) ++drops;
            else recv_q.push_back(d_shift);
            last_event = cycles;
            d_state = 0;
            break;
        }
    }

    void tick() {
        if (reset_at && cycles == reset_at) { rst_left = 4; reset_at = 0; ++resets; }
        host_line();
        m->rx = link ? h_line : 1;  // a pulled cable: the line idles high
        m->rst = rst_left > 0;
        if (rst_left) --rst_left;
        m->clk = 0;
        m->eval();
        device_line(m->tx);
        m->clk = 1;
        m->eval();
        ++cycles;
    }

    bool quiet() const { return host_q.empty() && h_left == 0 && h_gap == 0 && d_state == 0; }

    void reset() {
        m->rst = 1;
        m->rx = 1;
        for (int i = 0; i < 4; ++i) { m->clk = 0; m->eval(); m->clk = 1; m->eval(); }
        m->rst = 0;
        m->clk = 0;
        m->eval();
        host_q.clear(); recv_q.clear();
        h_left = h_gap = 0; h_acc = 0; h_line = true; d_state = 0;
        rst_left = 0; reset_at = 0;
        last_event = cycles;
    }
};
}  // namespace

extern "C" {

int us_lanes() { return LANES; }
int us_width() { return WIDTH; }
int us_clocks_per_bit() { return CLOCKS_PER_BIT; }
int64_t us_timeout() { return TIMEOUT; }

void* us_create() { auto* s = new Sim(); s->reset(); return s; }
void us_destroy(void* h) { delete static_cast<Sim*>(h); }
void us_reset(void* h) { static_cast<Sim*>(h)->reset(); }
void us_set_link(void* h, int up) { static_cast<Sim*>(h)->link = up != 0; }
void us_set_gaps(void* h, uint32_t pct, uint32_t seed) {
    auto* s = static_cast<Sim*>(h);
    s->gap_pct = pct;
    s->rng = Lcg(seed);
}
// The host's clock off by `ppm` parts per million (positive: the host's bits are longer).
void us_set_skew(void* h, int32_t ppm) {
    auto* s = static_cast<Sim*>(h);
    s->period = (uint64_t)(((double)CPB * 65536.0) * (1.0 + ppm / 1e6) + 0.5);
}
// Line faults: bit flips per bit and lost bytes per byte (parts per million, both directions).
void us_set_faults(void* h, uint32_t ber_ppm, uint32_t drop_ppm, uint32_t seed) {
    auto* s = static_cast<Sim*>(h);
    s->ber_ppm = ber_ppm;
    s->drop_ppm = drop_ppm;
    s->fault_rng = Lcg(seed);
}
// Reset the device (not the host's line) `after` cycles from now (0: cancel).
void us_reset_device_after(void* h, uint64_t after) {
    auto* s = static_cast<Sim*>(h);
    s->reset_at = after ? s->cycles + after : 0;
}
// Faults injected so far: flipped bits, lost bytes, device resets.
void us_faults(void* h, uint64_t* out) {
    auto* s = static_cast<Sim*>(h);
    out[0] = s->flips; out[1] = s->drops; out[2] = s->resets;
}
uint64_t us_cycles(void* h) { return static_cast<Sim*>(h)->cycles; }
uint64_t us_framing_errors(void* h) { return static_cast<Sim*>(h)->framing_errors; }
int us_leds(void* h) { auto* s = static_cast<Sim*>(h); return s->m->busy | (s->m->error << 1); }

// Queue bytes for the host's transmitter (flags: 1 = send every byte with a low stop bit).
void us_send(void* h, const uint8_t* data, int64_t n, int flags) {
    auto* s = static_cast<Sim*>(h);
    for (int64_t i = 0; i < n; ++i) s->host_q.push_back(data[i] | ((flags & 1) ? BAD_STOP : 0));
    s->last_event = s->cycles;
}

// Run the clock until `want` received bytes are waiting, or until `idle_cycles` pass with no byte
// finished on either line, or `max_cycles` pass. Moves up to `want` bytes into `out`; returns
// their count.
int64_t us_recv(void* h, uint8_t* out, int64_t want, int64_t idle_cycles, int64_t max_cycles) {
    auto* s = static_cast<Sim*>(h);
    const uint64_t start = s->cycles;
    s->last_event = s->cycles;
    while ((int64_t)s->recv_q.size() < want) {
        s->tick();
        if ((int64_t)(s->cycles - s->last_event) > idle_cycles && s->quiet()) break;
        if (max_cycles > 0 && (int64_t)(s->cycles - start) >= max_cycles) break;
    }
    int64_t n = 0;
    while (n < want && !s->recv_q.empty()) { out[n++] = s->recv_q.front(); s->recv_q.pop_front(); }
    return n;
}

// Run until both lines have been quiet for `idle_cycles` (or `max_cycles` pass) and drop what
// the device sent. Returns the number of bytes dropped, or -1 on hitting max_cycles.
int64_t us_drain(void* h, int64_t idle_cycles, int64_t max_cycles) {
    auto* s = static_cast<Sim*>(h);
    const uint64_t start = s->cycles;
    s->last_event = s->cycles;
    int64_t dropped = 0;
    for (;;) {
        s->tick();
        dropped += (int64_t)s->recv_q.size();
        s->recv_q.clear();
        if ((int64_t)(s->cycles - s->last_event) > idle_cycles && s->quiet()) return dropped;
        if (max_cycles > 0 && (int64_t)(s->cycles - start) >= max_cycles) return -1;
    }
}

}  // extern "C"
