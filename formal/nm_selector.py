"""Formal properties of the N:M selector (8 lanes x 4 bits: groups of 4 and of 8, every n).

The environment: ``clear`` once after reset with no input before it; ``m8`` and ``n`` held for
the pass (``AnyConst``, any value of ``n`` including 0 and n >= M); the input stream obeys the
stream rules.
"""

from amaranth import *
from amaranth.hdl import Assert, Assume
from amaranth.lib import data

from hwprune.contract.nm_selector import PIPELINE_LATENCY, nm_tile_layout
from hwprune.contract.threshold_engine import tile_layout
from hwprune.hw.layouts import amaranth_layout

from . import Property

PARAMS = {"lanes": 8, "width": 4}
LANES = PARAMS["lanes"]


def environment(m, dut, env):
    env.one_pass(dut)
    return env.const(dut.m8), env.const(dut.n)


def stream_rules(m, dut, env):
    environment(m, dut, env)
    env.assert_sink(dut.o_stream)


def _popcount(bits):
    return sum(bits) if bits else C(0)


def exactly_n_per_group(m, dut, env, group_sizes=(4, 8)):
    m8, n = environment(m, dut, env)
    if group_sizes == (4,):
        m.d.comb += Assume(~m8)
    elif group_sizes == (8,):
        m.d.comb += Assume(m8)
    i, o = dut.i_stream, dut.o_stream
    n_in, n_out = env.counter(env.fire(i), 6), env.counter(env.fire(o), 6)
    m.d.comb += [Assert(n_out <= n_in), Assert(n_in - n_out <= PIPELINE_LATENCY)]
    beat, seen, raw = env.track(i, n_in)
    tile = data.View(amaranth_layout(tile_layout(**PARAMS)), raw)
    out = data.View(amaranth_layout(nm_tile_layout(**PARAMS)), o.payload)
    w = [tile.data[k].as_signed() for k in range(LANES)]
    mag = [Mux(x < 0, -x, x) for x in w]
    valid = [tile.lane_valid[k] for k in range(LANES)]
    kept = [out.mask[k] for k in range(LANES)]
    env.reach(env.fire(o) & (n_out == beat) & (n > 0) & ~out.mask.all())
    with m.If(env.fire(o) & (n_out == beat)):
        m.d.comb += Assert(seen)
        for group_size, on in ((4, ~m8), (8, m8)):
            if group_size not in group_sizes:
                continue
            with m.If(on):
                for g in range(LANES // group_size):
                    lanes = range(g * group_size, (g + 1) * group_size)
                    count = _popcount([kept[k] for k in lanes])
                    live = _popcount([valid[k] for k in lanes])
                    # Exactly min(n, valid lanes) kept in every group ...
                    m.d.comb += Assert(count == Mux(n < live, n, live))
                    for k in lanes:
                        m.d.comb += [Assert((~kept[k] | valid[k])),
                                     Assert(out.data[k].as_signed() == Mux(kept[k], w[k], 0))]
                        # ... and each kept lane beats every dropped valid lane of its group
                        # (larger magnitude, or equal with the lower index).
                        for j in lanes:
                            if j != k:
                                wins = (mag[k] > mag[j]) | ((mag[k] == mag[j]) & (k < j))
                                m.d.comb += Assert((~(kept[k] & valid[j] & ~kept[j]) | wins))
                    # Compaction: the s-th kept lane's value and index in slot g*M + s.
                    for k in lanes:
                        slot = _popcount([kept[j] for j in range(lanes.start, k)])
                        for s in range(group_size):
                            with m.If(kept[k] & (slot == s)):
                                pos = g * group_size + s
                                m.d.comb += [Assert(out.values[pos].as_signed() == w[k]),
                                             Assert(out.index[pos] == k - lanes.start)]
                    for s in range(group_size):
                        with m.If(count <= s):
                            pos = g * group_size + s
                            m.d.comb += [Assert(out.values[pos] == 0),
                                         Assert(out.index[pos] == 0)]


def counters(m, dut, env):
    environment(m, dut, env)
    o = dut.o_stream
    n_out = env.counter(env.fire(o), 6)
    kept = Signal(8)
    with m.If(env.fire(o)):
        out = data.View(amaranth_layout(nm_tile_layout(**PARAMS)), o.payload)
        m.d.sync += kept.eq(kept + _popcount([out.mask[k] for k in range(LANES)]))
    fired = env.fire(o)
    quiet = ~env.past(fired) & ~env.past(env.past(fired))
    env.reach(env.live & (env.cycle > 3) & quiet & (n_out > 1) & (kept > 0))
    with m.If(env.live & (env.cycle > 3) & quiet):
        m.d.comb += [Assert(dut.beats == n_out), Assert(dut.kept == kept)]


PROPERTIES = [
    Property("nm_selector", "stream_rules", "o_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=8, params=PARAMS),
    *[Property("nm_selector", f"exactly_n_per_group_of_{size}",
               f"M={size}: every beat once, in order; exactly min(n, valid) kept per group, each "
               "beating every dropped lane (ties: lower index); values/index compacted",
               lambda m, dut, env, size=size: exactly_n_per_group(m, dut, env, (size,)),
               depth=depth, params=PARAMS, fast=fast)
      for size, depth, fast in ((4, 10, True), (8, 9, False))],
    Property("nm_selector", "counters", "beats and kept equal what was delivered",
             counters, depth=14, params=PARAMS),
]
