"""cocotb 2.x tests of the magnitude histogram on Verilator, and backend parity."""

import numpy as np
import pytest

from hwprune import get_backend
from hwprune.contract import HistogramJob
from hwprune.sim.cocotb_run import cocotb_test
from hwprune.sim.stimulus import random_tiles

TB = "hwprune.sim.cocotb_tb.magnitude_histogram_tb"
CHECKS = ["random_passes_with_stalls", "corner_values_only", "reset_mid_stream"]


@pytest.mark.parametrize("lanes,width", [(16, 8), (4, 16), (6, 4)])
def test_magnitude_histogram_cocotb(lanes, width):
    tests, failed = cocotb_test("magnitude_histogram", TB, testcase=CHECKS,
                                extra_env={"HWPRUNE_TB_BEATS": "6000"}, lanes=lanes, width=width)
    assert (tests, failed) == (len(CHECKS), 0)


@pytest.mark.parametrize("lanes,width", [(16, 8), (8, 16)])
def test_backends_bit_identical(lanes, width):
    rng = np.random.default_rng(lanes * 7 + width)
    jobs = []
    for beats, keep in [(200, 0), (333, 1000), (50, 10 ** 6), (1, 3)]:
        tiles, valid = random_tiles(rng, beats, lanes, width)
        jobs.append(HistogramJob(tiles, valid, width, 8 if width == 16 else 0, 0, 0,
                                 min(keep, int(valid.sum()))))
    if width == 16:
        jobs.append(HistogramJob(tiles, valid, width, 0, 1, 0, 2))
    results = {name: get_backend(name, lanes=lanes, width=width).run("magnitude_histogram", jobs)
               for name in ("golden", "verilator", "torch", "cocotb")}
    assert results["verilator"] == results["golden"]
    assert results["torch"] == results["golden"]
    assert results["cocotb"] == results["golden"]
