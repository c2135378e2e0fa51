"""Formal properties of the score unit (4 lanes x 4 bits).

The environment: ``clear`` once after reset with no input before it; the input stream obeys
the stream rules.
"""

from amaranth import *
from amaranth.hdl import Assert
from amaranth.lib import data

from hwprune.contract.score_unit import score_tile_layout
from hwprune.contract.threshold_engine import tile_layout
from hwprune.hw.layouts import amaranth_layout

from . import Property

PARAMS = {"lanes": 4, "width": 4}
LANES, WIDTH = PARAMS["lanes"], PARAMS["width"]


def stream_rules(m, dut, env):
    env.one_pass(dut)
    env.assert_sink(dut.o_stream)


def scores_in_order(m, dut, env):
    """Output beat n (any n) is input beat n's scores: ``(|w| * s) >> width`` on valid lanes,
    0 on padding lanes, the lane bitmap as sent."""
    env.one_pass(dut)
    i, o = dut.i_stream, dut.o_stream
    n_in, n_out = env.counter(env.fire(i), 5), env.counter(env.fire(o), 5)
    m.d.comb += Assert(n_out <= n_in)
    n, seen, raw = env.track(i, n_in)
    tile = data.View(amaranth_layout(score_tile_layout(**PARAMS)), raw)
    out = data.View(amaranth_layout(tile_layout(**PARAMS)), o.payload)
    env.reach(env.fire(o) & (n_out == n) & (n > 0) & (out.data[0] != 0))
    with m.If(env.fire(o) & (n_out == n)):
        m.d.comb += [Assert(seen), Assert(out.lane_valid == tile.lane_valid)]
        for k in range(LANES):
            w = tile.data[k].as_signed()
            product = Mux(w < 0, -w, w).as_unsigned() * tile.scale[k]
            want = Mux(tile.lane_valid[k], product >> WIDTH, 0)
            m.d.comb += Assert(out.data[k].as_unsigned() == want[:WIDTH])


PROPERTIES = [
    Property("score_unit", "stream_rules", "o_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=6, params=PARAMS),
    Property("score_unit", "scores_in_order",
             "every input beat comes out once, in order, as (|w|*s) >> width per valid lane",
             scores_in_order, depth=10, params=PARAMS),
]
