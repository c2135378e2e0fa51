"""cocotb 2.x tests of the sparse MAC unit on Verilator, run from pytest by the cocotb runner."""

from hwprune.sim.cocotb_run import cocotb_test

TB = "hwprune.sim.cocotb_tb.sparse_mac_tb"
CHECKS = ["random_layers_with_stalls", "accumulator_bound", "full_throughput_without_stalls",
          "reset_mid_stream"]


def test_sparse_mac_cocotb():
    # 8 lanes x 8 bits (max_k 4096), the build the cocotb backend's test shares: a 16-lane
    # unit takes ~220 s to compile; the verilated 16-lane unit is tested in
    # test_sparse_mac_sim.py and test_sparse_mac_host.py.
    tests, failed = cocotb_test("sparse_mac", TB, testcase=CHECKS, lanes=8, width=8)
    assert tests == len(CHECKS)
    assert failed == 0
