"""cocotb 2.x tests of the threshold engine on Verilator, run from pytest by the cocotb runner."""

import pytest

from hwprune.sim.cocotb_run import cocotb_test

TB = "hwprune.sim.cocotb_tb.threshold_engine_tb"
CHECKS = ["random_tiles_with_stalls", "corner_values_and_ties", "full_throughput_without_stalls",
          "reset_mid_stream"]


@pytest.mark.parametrize("lanes,width", [(16, 8), (4, 16), (7, 4)])
def test_threshold_engine_cocotb(lanes, width):
    # The full 20,000-beat run on the main configuration, shorter runs on the others.
    beats = 20000 if (lanes, width) == (16, 8) else 4000
    tests, failed = cocotb_test("threshold_engine", TB, testcase=CHECKS,
                                extra_env={"HWPRUNE_TB_BEATS": str(beats)},
                                lanes=lanes, width=width)
    assert tests == len(CHECKS)
    assert failed == 0
