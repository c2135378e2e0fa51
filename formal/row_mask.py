"""Formal properties of the row-mask unit (4 lanes x 4 bits).

The environment: ``clear`` once after reset with no input before it; both input streams obey
the stream rules.
"""

from amaranth import *
from amaranth.hdl import Assert

from . import Property

PARAMS = {"lanes": 4, "width": 4}


def stream_rules(m, dut, env):
    env.one_pass(dut)
    env.assert_sink(dut.o_stream)


def one_mask_per_beat(m, dut, env):
    """One mask per input beat, in order, and a group's beats only with its threshold loaded."""
    env.one_pass(dut)
    i, g, o = dut.i_stream, dut.g_stream, dut.o_stream
    beats_in = env.counter(env.fire(i), 5)
    ends = env.counter(env.fire(i) & i.payload.last, 5)
    targets = env.counter(env.fire(g), 5)
    beats_out = env.counter(env.fire(o), 5)
    m.d.comb += [Assert(beats_out <= beats_in), Assert(ends <= targets)]
    with m.If(env.fire(i)):
        m.d.comb += Assert(targets > ends)
    env.reach(env.fire(o) & (beats_out == 3) & (ends == 2))


PROPERTIES = [
    Property("row_mask", "stream_rules", "o_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=6, params=PARAMS),
    Property("row_mask", "one_mask_per_beat",
             "one mask per input beat; a group's beats are taken only with its threshold loaded",
             one_mask_per_beat, depth=10, params=PARAMS),
]
