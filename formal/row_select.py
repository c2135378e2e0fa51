"""Formal properties of the row-select unit (4 lanes x 4 bits).

The environment: ``clear`` once after reset with no input before it; ``shift`` held (any
value); both input streams obey the stream rules.
"""

from amaranth import *
from amaranth.hdl import Assert

from . import Property

PARAMS = {"lanes": 4, "width": 4}


def environment(m, dut, env):
    env.one_pass(dut)
    env.const(dut.shift)


def stream_rules(m, dut, env):
    environment(m, dut, env)
    env.assert_sink(dut.o_stream)


def one_result_per_group(m, dut, env):
    """Results come out no sooner than their group's last beat and its target went in: never
    more results than groups ended, never more groups started than targets taken."""
    environment(m, dut, env)
    i, g, o = dut.i_stream, dut.g_stream, dut.o_stream
    ends = env.counter(env.fire(i) & i.payload.last, 5)
    targets = env.counter(env.fire(g), 5)
    results = env.counter(env.fire(o), 5)
    m.d.comb += [Assert(results <= ends), Assert(ends <= targets)]
    env.reach(env.fire(o) & (results == 2))
    with m.If(env.fire(i)):
        m.d.comb += Assert(targets > ends)


PROPERTIES = [
    Property("row_select", "stream_rules", "o_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=8, params=PARAMS),
    Property("row_select", "one_result_per_group",
             "a group's beats are taken only with its target loaded; one result per ended group",
             one_result_per_group, depth=12, params=PARAMS),
]
