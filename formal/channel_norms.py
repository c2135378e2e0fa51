"""Formal properties of the channel-norm accumulator (4 lanes x 4 bits).

The environment: ``clear`` once after reset with no input before it; the input stream obeys
the stream rules.
"""

from amaranth import *
from amaranth.asserts import AnyConst
from amaranth.hdl import Assert
from amaranth.lib import data

from hwprune.contract.channel_norms import channel_tile_layout, l1_width, l2_width, norm_layout
from hwprune.hw.layouts import amaranth_layout

from . import Property

PARAMS = {"lanes": 4, "width": 4}
LANES, WIDTH = PARAMS["lanes"], PARAMS["width"]


def environment(m, dut, env):
    env.one_pass(dut)


def stream_rules(m, dut, env):
    environment(m, dut, env)
    env.assert_sink(dut.o_stream)


def norms_of_each_channel(m, dut, env):
    """Channel c (any c): one output beat, in order, holding the L1 and L2 sums of its beats."""
    environment(m, dut, env)
    i, o = dut.i_stream, dut.o_stream
    tile = data.View(amaranth_layout(channel_tile_layout(**PARAMS)), i.payload)
    out = data.View(amaranth_layout(norm_layout(**PARAMS)), o.payload)
    ends = env.fire(i) & tile.last
    c_in, c_out = env.counter(ends, 5), env.counter(env.fire(o), 5)
    m.d.comb += Assert(c_out <= c_in)
    c = AnyConst(len(c_in))
    l1, l2 = Signal(l1_width(WIDTH)), Signal(l2_width(WIDTH))
    with m.If(env.fire(i) & (c_in == c)):
        terms = []
        for k in range(LANES):
            w = tile.data[k].as_signed()
            mag = Mux(tile.lane_valid[k], Mux(w < 0, -w, w), 0)
            terms.append(mag)
        m.d.sync += [l1.eq(l1 + sum(terms)), l2.eq(l2 + sum(t * t for t in terms))]
    env.reach(env.fire(o) & (c_out == c) & (c > 0) & (l2 > l1))
    with m.If(env.fire(o) & (c_out == c)):
        m.d.comb += [Assert(c_in > c), Assert(out.l1 == l1), Assert(out.l2 == l2)]


PROPERTIES = [
    Property("channel_norms", "stream_rules", "o_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=8, params=PARAMS),
    Property("channel_norms", "norms_of_each_channel",
             "every channel comes out once, in order, with the L1 and L2 sums of its valid lanes",
             norms_of_each_channel, depth=12, params=PARAMS),
]
