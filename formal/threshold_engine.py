"""Formal properties of the threshold engine (4 lanes x 4 bits: every corner value, ties and
padding lanes are in reach of the solver).

The environment: ``clear`` once, in the first cycle after reset, with no input before it; the
threshold and the tie budget held for the pass (``AnyConst``: every value at once); the input
stream obeys the stream rules.
"""

from amaranth import *
from amaranth.hdl import Assert
from amaranth.lib import data

from hwprune.contract.threshold_engine import PIPELINE_LATENCY, masked_tile_layout, tile_layout
from hwprune.hw.layouts import amaranth_layout

from . import Property

PARAMS = {"lanes": 4, "width": 4}
LANES, WIDTH = PARAMS["lanes"], PARAMS["width"]


def environment(m, dut, env):
    """One pass; returns (threshold, tie budget)."""
    env.one_pass(dut)
    return env.const(dut.threshold), env.const(dut.tie_budget)


def lanes_of(raw_tile, threshold):
    """Per lane of an input tile: (weight, counted, |w| > T, |w| == T)."""
    tile = data.View(amaranth_layout(tile_layout(**PARAMS)), raw_tile)
    out = []
    for i in range(LANES):
        w = tile.data[i].as_signed()
        mag = Mux(w < 0, -w, w)
        valid = tile.lane_valid[i]
        out.append((w, valid, valid & (mag > threshold), valid & (mag == threshold)))
    return out


def stream_rules(m, dut, env):
    environment(m, dut, env)
    env.assert_sink(dut.o_stream)


def in_order_once(m, dut, env):
    threshold, _ = environment(m, dut, env)
    i, o = dut.i_stream, dut.o_stream
    n_in, n_out = env.counter(env.fire(i), 6), env.counter(env.fire(o), 6)
    # Conservation: never more out than in, never more in flight than the pipeline holds.
    m.d.comb += [Assert(n_out <= n_in), Assert(n_in - n_out <= PIPELINE_LATENCY)]
    # Beat n (any n) comes out as beat n, once, masked as the rule says.
    n, seen, raw = env.track(i, n_in)
    env.reach(env.fire(o) & (n_out == n) & (n > 1) & o.payload.mask.any())
    with m.If(env.fire(o) & (n_out == n)):
        m.d.comb += Assert(seen)
        out = data.View(amaranth_layout(masked_tile_layout(**PARAMS)), o.payload)
        for k, (w, valid, gt, eq) in enumerate(lanes_of(raw, threshold)):
            kept = out.mask[k]
            m.d.comb += [Assert((~kept | gt | eq)), Assert((~gt | kept)),
                         Assert(out.data[k].as_signed() == Mux(kept, w, 0))]


def tie_budget(m, dut, env):
    threshold, budget = environment(m, dut, env)
    i, o = dut.i_stream, dut.o_stream
    n_in, n_out = env.counter(env.fire(i), 6), env.counter(env.fire(o), 6)
    gt_in, eq_in = Signal(8), Signal(8)
    with m.If(env.fire(i)):
        lanes = lanes_of(Value.cast(i.payload), threshold)
        m.d.sync += [gt_in.eq(gt_in + sum(gt for _, _, gt, _ in lanes)),
                     eq_in.eq(eq_in + sum(eq for _, _, _, eq in lanes))]
    # Kept never exceeds the strictly-above count plus the budget ...
    m.d.comb += Assert(dut.kept <= gt_in + budget)
    # ... and at the end of the pass (all delivered, counters settled) equals the strictly-above
    # count plus the ties granted, min(ties, budget); the budget left is what was not granted.
    granted = Mux(eq_in < budget, eq_in, budget)
    fired = env.fire(o)
    quiet = ~env.past(fired) & ~env.past(env.past(fired)) & ~env.past(env.past(env.past(fired)))
    end = env.live & (env.cycle > 4) & (n_in == n_out) & quiet
    env.reach(end & (gt_in > 0) & (eq_in > budget) & (budget > 0))
    with m.If(end):
        m.d.comb += [Assert(dut.kept == gt_in + granted),
                     Assert(dut.ties_left == budget - granted),
                     Assert(dut.beats == n_out)]


PROPERTIES = [
    Property("threshold_engine", "stream_rules",
             "o_stream holds valid and payload while stalled", stream_rules,
             mode="prove", depth=8, params=PARAMS),
    Property("threshold_engine", "in_order_once",
             "every beat in comes out once, in order, masked by |w| > T (ties by budget); "
             f"at most {PIPELINE_LATENCY} in flight", in_order_once, depth=12, params=PARAMS),
    Property("threshold_engine", "tie_budget",
             "kept <= above + budget always; kept == above + min(ties, budget) and "
             "ties_left == budget - granted at the end of the pass", tie_budget, depth=12,
             params=PARAMS),
]
