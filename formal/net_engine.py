"""Formal properties of the network engine (4 lanes x 4 bits, 16 rows, 64 beats, 16 columns;
and a build with convolutions, 64 rows).

The environment: ``skip_zero`` held for the pass (``AnyConst``); both input streams obey the
stream rules; the program's contents are whatever the solver writes.
"""

from hwprune.hw.net_engine import NetEngine

from . import Property

PARAMS = {"lanes": 4, "width": 4, "max_rows": 16, "max_beats": 64, "max_cols": 16}
CONV_PARAMS = {**PARAMS, "max_rows": 64, "conv": 1}


def stream_rules(m, dut, env):
    env.const(dut.skip_zero)
    env.assume_source(dut.p_stream)
    env.assume_source(dut.x_stream)
    env.assert_sink(dut.y_stream)


PROPERTIES = [
    Property("net_engine", "stream_rules", "y_stream holds valid and payload while stalled",
             stream_rules, mode="prove", depth=8, params=PARAMS,
             factory=lambda **p: NetEngine(**p)),
    Property("net_engine", "stream_rules_conv",
             "y_stream holds valid and payload while stalled (a conv build: pooling's four "
             "reads a word)", stream_rules, mode="prove", depth=8, params=CONV_PARAMS,
             factory=lambda **p: NetEngine(**p)),
]
