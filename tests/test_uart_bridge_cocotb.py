"""cocotb 2.x tests of the UART command bridge (byte streams with random stalls) on Verilator."""

from hwprune.sim.uart_lib import bridge_cocotb_test

TB = "hwprune.sim.cocotb_tb.uart_bridge_tb"
CHECKS = ["passes_with_random_stalls", "errors_are_reported_and_the_bridge_resynchronises",
          "store_runs_with_random_stalls"]


def test_uart_bridge_cocotb():
    # 5 lanes x 16 bits: two bytes per weight and a one-byte lane bitmap with unused bits.
    lanes, width, timeout = 5, 16, 400
    tests, failed = bridge_cocotb_test(
        TB, testcase=CHECKS, lanes=lanes, width=width, timeout=timeout, fifo_depth=64,
        extra_env={"HWPRUNE_TB_LANES": str(lanes), "HWPRUNE_TB_WIDTH": str(width),
                   "HWPRUNE_TB_TIMEOUT": str(timeout)})
    assert tests == len(CHECKS)
    assert failed == 0


def test_net_engine_behind_the_bridge_cocotb():
    # A deploy bitstream's bridge: the network engine alone (INFO bit 5), 4 lanes x 8 bits.
    lanes, width, timeout = 4, 8, 400
    tests, failed = bridge_cocotb_test(
        TB, testcase=["net_engine_with_random_stalls"], lanes=lanes, width=width,
        timeout=timeout, fifo_depth=64, blocks=1 << 5,
        extra_env={"HWPRUNE_TB_LANES": str(lanes), "HWPRUNE_TB_WIDTH": str(width),
                   "HWPRUNE_TB_TIMEOUT": str(timeout)})
    assert (tests, failed) == (1, 0)
