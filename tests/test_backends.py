"""Every backend gives bit-identical results for the same jobs."""

import copy

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


def test_workers_give_the_results_of_one():
    """Verilated instances in parallel threads (workers=) change nothing but the wall time: the
    same masks, kept counts and cycle counts, for tensors spread over workers and for a batch
    of jobs spread over them."""
    import torch
    from torch import nn

    import hwprune
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3), nn.Flatten(),
                        nn.Linear(16 * 4 * 4, 32), nn.Linear(32, 10))
    got = {}
    for workers in (1, 2, 3):
        for kw in (dict(amount=0.7), dict(pattern="2:4")):
            model = copy.deepcopy(net)
            report = hwprune.prune(model, backend="verilator", lanes=8, workers=workers, **kw)
            got[(workers, str(kw))] = ([m.weight_mask.clone() for m in model if
                                        hasattr(m, "weight_mask")],
                                       [(l.kept, l.cycles) for l in report.layers])
    for (workers, kw), (masks, layers) in got.items():
        ref_masks, ref_layers = got[(1, kw)]
        assert layers == ref_layers, (workers, kw)
        assert all(torch.equal(a, b) for a, b in zip(masks, ref_masks)), (workers, kw)
    rng = np.random.default_rng(12)
    jobs = make_jobs(rng, 8, 8)
    want = get_backend("golden", lanes=8, width=8).threshold_passes(jobs)
    spread = get_backend("verilator", lanes=8, width=8, workers=2).threshold_passes(jobs)
    for w, g in zip(want, spread):
        assert_same(w, g)
    with pytest.raises(ValueError, match="^workers must be a positive integer"):
        get_backend("verilator", lanes=8, width=8, workers=0)
