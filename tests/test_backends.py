"""Every backend gives bit-identical results for the same jobs."""

import numpy as np
import pytest

from hwprune import get_backend
from hwprune.contract import ALL_TIES, ThresholdJob, threshold_mask
from hwprune.sim.stimulus import random_tiles

CONFIGS = [(16, 8), (4, 16), (7, 4)]


def make_jobs(rng, lanes, width, n=3):
    jobs = []
    hi = 2 ** (width - 1)
    for beats, threshold, budget in [(300, 3, ALL_TIES), (257, hi // 2, 5), (1, hi, 0),
                                     (64, 0, ALL_TIES), (90, 1, 12)][:n + 2]:
        tiles, valid = random_tiles(rng, beats, lanes, width)
        jobs.append(ThresholdJob(tiles, valid, threshold, budget))
    return jobs


def assert_same(a, b, *, cycles=True):
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.beats, a.kept, a.ties_left) == (b.beats, b.kept, b.ties_left)
    if cycles:
        assert a.cycles == b.cycles


@pytest.mark.parametrize("lanes,width", CONFIGS)
def test_golden_verilator_cocotb_bit_identical(lanes, width, simulators_agree):
    jobs = make_jobs(np.random.default_rng(lanes * 31 + width), lanes, width)
    simulators_agree("threshold_engine", jobs, assert_same, lanes=lanes, width=width)


def test_verilator_backpressure_changes_only_cycles():
    lanes, width = 16, 8
    rng = np.random.default_rng(11)
    jobs = make_jobs(rng, lanes, width)
    golden = get_backend("golden", lanes=lanes, width=width).threshold_passes(jobs)
    stalled = get_backend("verilator", lanes=lanes, width=width, in_stall=0.4, out_stall=0.4,
                          stall_seed=5).threshold_passes(jobs)
    for want, got in zip(golden, stalled):
        assert_same(want, got, cycles=False)
        assert got.cycles > want.cycles


def test_verilator_large_tensor_matches_golden():
    # A whole layer's worth of beats in one call: nothing lost or duplicated.
    lanes, width = 16, 8
    rng = np.random.default_rng(12)
    tiles, valid = random_tiles(rng, 70000, lanes, width, pad_fraction=0.0)
    job = ThresholdJob(tiles, valid, 40, 1000)
    got, = get_backend("verilator", lanes=lanes, width=width).threshold_passes([job])
    assert_same(threshold_mask(tiles, valid, 40, 1000), got)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"^backend must be one of \['cocotb', 'golden', "):
        get_backend("fpga", lanes=16, width=8)
