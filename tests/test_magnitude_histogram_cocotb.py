"""cocotb 2.x tests of the magnitude histogram on Verilator, and backend parity."""

import numpy as np
import pytest

from hwprune import get_backend
from hwprune.contract import HistogramJob
from hwprune.sim.cocotb_run import cocotb_test
from hwprune.sim.stimulus import random_tiles

TB = "hwprune.sim.cocotb_tb.magnitude_histogram_tb"
CHECKS = ["random_passes_with_stalls", "corner_values_only", "reset_mid_stream"]


@pytest.mark.parametrize("lanes,width,banks", [(16, 8, None), (4, 16, None), (6, 4, None),
                                               (8, 8, 1)])
def test_magnitude_histogram_cocotb(lanes, width, banks):
    params = {} if banks is None else {"banks": banks}
    tests, failed = cocotb_test("magnitude_histogram", TB, testcase=CHECKS,
                                extra_env={"HWPRUNE_TB_BEATS": "6000"}, lanes=lanes, width=width,
                                **params)
    assert (tests, failed) == (len(CHECKS), 0)


@pytest.mark.parametrize("lanes,width,banks", [(16, 8, None), (8, 16, None), (8, 8, 1),
                                               (8, 16, 2)])
def test_backends_bit_identical(lanes, width, banks):
    """Every backend's results, cycles included (a unit with fewer banks takes longer)."""
    rng = np.random.default_rng(lanes * 7 + width)
    jobs = []
    for beats, keep in [(200, 0), (333, 1000), (50, 10 ** 6), (1, 3)]:
        tiles, valid = random_tiles(rng, beats, lanes, width)
        jobs.append(HistogramJob(tiles, valid, width, 8 if width == 16 else 0, 0, 0,
                                 min(keep, int(valid.sum()))))
    if width == 16:
        jobs.append(HistogramJob(tiles, valid, width, 0, 1, 0, 2))
    results = {}
    for name in ("golden", "verilator", "torch", "cocotb"):
        backend = get_backend(name, lanes=lanes, width=width)
        if banks is not None:
            backend.configure("magnitude_histogram", banks=banks)
        results[name] = backend.run("magnitude_histogram", jobs)
    assert results["verilator"] == results["golden"]
    assert results["torch"] == results["golden"]
    assert results["cocotb"] == results["golden"]
    if banks is not None:                       # the golden model's cycles follow the banks
        assert results["golden"][0].cycles > jobs[0].data.shape[0] * (lanes // banks)
