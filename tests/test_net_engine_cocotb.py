"""cocotb 2.x tests of the network engine on Verilator, run from pytest by the cocotb runner."""

from hwprune.sim.cocotb_run import cocotb_test

TB = "hwprune.sim.cocotb_tb.net_engine_tb"
CHECKS = ["random_networks_with_stalls", "zero_inputs_skip_every_column", "reset_mid_stream"]


def test_net_engine_cocotb():
    # A small build (8 lanes x 8 bits, 128 rows, 1024 beats, 256 columns).
    tests, failed = cocotb_test("net_engine", TB, testcase=CHECKS, lanes=8, width=8,
                                max_rows=128, max_beats=1024, max_cols=256)
    assert tests == len(CHECKS)
    assert failed == 0
