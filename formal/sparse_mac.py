"""Formal properties of the sparse multiply-accumulate unit (4 lanes x 4 bits, max_k 16).

The environment: the format held for the pass (``AnyConst``); both input streams obey the
stream rules.
"""

from hwprune.hw.sparse_mac import SparseMac

from . import Property

PARAMS = {"lanes": 4, "width": 4, "act_width": 4, "max_k": 16}


def stream_rules(m, dut, env):
    for port in (dut.fmt, dut.nm_n, dut.nm_m_log2):
        env.const(port)
    env.assume_source(dut.w_stream)
    env.assume_source(dut.a_stream)
    env.assert_sink(dut.o_stream)


PROPERTIES = [
    Property("sparse_mac", "stream_rules", "o_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=8, params=PARAMS,
             factory=lambda **p: SparseMac(**p)),
]
