"""cocotb 2.x tests of the channel-norm accumulator on Verilator, run from pytest by the cocotb
runner."""

import pytest

from hwprune.sim.cocotb_run import cocotb_test

TB = "hwprune.sim.cocotb_tb.channel_norms_tb"
CHECKS = ["random_channels_with_stalls", "corner_values_and_long_channels",
          "full_throughput_without_stalls", "reset_mid_stream"]


@pytest.mark.parametrize("lanes,width", [(16, 8), (8, 16)])
def test_channel_norms_cocotb(lanes, width):
    # The full 8,000-beat run on the main configuration, a shorter one on the other.
    beats = 8000 if (lanes, width) == (16, 8) else 2000
    tests, failed = cocotb_test("channel_norms", TB, testcase=CHECKS,
                                extra_env={"HWPRUNE_TB_BEATS": str(beats)},
                                lanes=lanes, width=width)
    assert tests == len(CHECKS)
    assert failed == 0
