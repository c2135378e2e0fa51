"""The blocks of activation-aware and per-row pruning: the score unit (Wanda's |w|*s in fixed
point), the row-select unit (per-group exact-k digit select) and the row-mask unit.

Golden models against references written here from the definitions (Python integers; a stable
sort for top-k with ties in stream order), then every backend against the golden models, with
corner values (0, -2**(w-1), ties, keep 0 and keep past the count, one-beat groups, padding)
and random stalls on every stream.
"""

import numpy as np
import pytest

from hwprune import get_backend
from hwprune.contract import row_mask as rm
from hwprune.contract import row_select as rs
from hwprune.contract import score_unit as su


def groups_of(rng, lanes, width, beats_per_group, *, ties=True):
    """Random groups with corner values; returns data, lane_valid, last, per-group beat counts."""
    sizes = np.asarray(beats_per_group)
    beats = int(sizes.sum())
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    data = rng.integers(lo, hi, (beats, lanes)).astype(np.int16)
    if ties:
        pick = rng.random(data.shape)
        data[pick < 0.15] = rng.integers(-2, 3)       # many ties at a small magnitude
        data[(pick >= 0.15) & (pick < 0.2)] = lo       # -2**(w-1): the largest magnitude
        data[(pick >= 0.2) & (pick < 0.25)] = 0
    valid = rng.random(data.shape) < 0.85
    last = np.zeros(beats, dtype=bool)
    last[np.cumsum(sizes) - 1] = True
    return data, valid, last, sizes


def reference_top_k(data, valid, last, keep):
    """Per group: the ``keep`` largest magnitudes of its valid lanes, ties to the earlier
    position in stream order (a stable sort), as a mask."""
    mag = np.abs(data.astype(np.int64)).ravel()
    flat_valid = valid.ravel()
    mask = np.zeros(mag.size, dtype=bool)
    lanes = data.shape[1]
    start = 0
    for g, end in enumerate(np.flatnonzero(last)):
        idx = np.arange(start * lanes, (end + 1) * lanes)
        idx = idx[flat_valid[idx]]
        order = idx[np.argsort(-mag[idx], kind="stable")]
        mask[order[:keep[g]]] = True
        start = end + 1
    return mask.reshape(data.shape)


def prune_rows(backend, data, valid, last, width, keep):
    thresholds, budgets, passes = rs.select_row_thresholds(
        lambda job: backend.run("row_select", [job])[0], data, valid, last, width, keep)
    res, = backend.run("row_mask", [rm.RowMaskJob(data, valid, last, thresholds, budgets)])
    return thresholds, budgets, passes, res


@pytest.mark.parametrize("lanes,width", [(4, 4), (8, 8), (16, 16), (5, 16)])
def test_golden_rows_keep_exactly_the_top_k(rng, lanes, width):
    data, valid, last, sizes = groups_of(rng, lanes, width, rng.integers(1, 5, 60))
    counts = np.add.reduceat(valid.sum(1), np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    keep = rng.integers(0, counts + 3)          # keep 0, keep past the count included
    keep[:3] = [0, counts[1], counts[2] + 5]
    golden = get_backend("golden", lanes=lanes, width=width)
    thresholds, budgets, passes, res = prune_rows(golden, data, valid, last, width, keep)
    assert len(passes) == width // 4
    np.testing.assert_array_equal(res.mask, reference_top_k(data, valid, last, keep))
    assert res.kept == int(np.minimum(keep, counts).sum())
    assert (passes[0].counted == counts).all()


def test_select_matches_the_histograms_select_walk(rng):
    """Per group, the one-clock select equals the select walk of the magnitude histogram."""
    from hwprune.contract.magnitude_histogram import select_walk
    counts = rng.integers(0, 6, (200, 16))
    counts[:20] = 0
    keep = rng.integers(0, 40, 200)
    found, above, ties = rs.select_rows(counts, keep)
    for g in range(200):
        assert (found[g], above[g], ties[g]) == select_walk(counts[g], keep[g])


@pytest.mark.parametrize("width", [4, 8, 16])
def test_golden_scores_are_the_fixed_point_definition(rng, width):
    data, valid, _, _ = groups_of(rng, 8, width, [40])
    scale = rng.integers(0, 1 << width, data.shape)
    scale[0] = (1 << width) - 1                 # the largest scale with -2**(w-1) weights
    data[0] = -(1 << (width - 1))
    res = su.run(su.ScoreJob(data, scale, valid, width))
    want = [[(abs(int(w)) * int(s)) >> width if v else 0 for w, s, v in zip(*row)]
            for row in zip(data, scale, valid)]
    np.testing.assert_array_equal(res.data, want)
    assert res.data.max() <= (1 << (width - 1)) - 1 and res.data.min() >= 0


def test_scale_codes_round_against_the_top():
    codes = su.scale_codes([0.0, 0.5, 1.0, 2.0], 8)
    np.testing.assert_array_equal(codes, [0, 64, 128, 255])
    np.testing.assert_array_equal(su.scale_codes([1.0, 2.0], 8, top=4.0), [64, 128])
    np.testing.assert_array_equal(su.scale_codes([0.0, 0.0], 16), [0, 0])
    with pytest.raises(ValueError, match="finite and non-negative"):
        su.scale_codes([1.0, float("nan")], 8)
    with pytest.raises(ValueError, match="exceeds the top"):
        su.scale_codes([3.0], 8, top=2.0)


@pytest.mark.parametrize("lanes,width", [(8, 8), (16, 16)])
def test_every_backend_is_bit_identical(rng, lanes, width, simulators_agree):
    data, valid, last, sizes = groups_of(rng, lanes, width, rng.integers(1, 4, 25))
    scale = rng.integers(0, 1 << width, data.shape)
    simulators_agree("score_unit", [su.ScoreJob(data, scale, valid, width)],
                     lambda w, g: (np.testing.assert_array_equal(w.data, g.data),
                                   np.testing.assert_array_equal(w.lane_valid, g.lane_valid),
                                   _same_counts(w, g, "beats", "cycles")),
                     lanes=lanes, width=width)
    groups = int(last.sum())
    keep = rng.integers(0, lanes * 3, groups)
    prefix = np.zeros(groups, dtype=np.int64)
    jobs = [rs.RowSelectJob(data, valid, last, width, width - 4, prefix, keep)]
    simulators_agree("row_select", jobs,
                     lambda w, g: [np.testing.assert_array_equal(getattr(w, f), getattr(g, f))
                                   for f in ("found", "above", "ties", "counted")]
                     and _same_counts(w, g, "groups", "cycles"),
                     lanes=lanes, width=width)
    thresholds = rng.integers(0, 1 << (width - 1), groups)
    budgets = rng.integers(0, lanes, groups)
    simulators_agree("row_mask", [rm.RowMaskJob(data, valid, last, thresholds, budgets)],
                     lambda w, g: (np.testing.assert_array_equal(w.mask, g.mask),
                                   _same_counts(w, g, "beats", "kept", "cycles")),
                     lanes=lanes, width=width)


def _same_counts(want, got, *names):
    for name in names:
        assert getattr(want, name) == getattr(got, name), name
    return True


@pytest.mark.parametrize("stall", [0.3, 0.7])
def test_verilator_with_stalls_changes_only_cycles(rng, stall):
    lanes, width = 16, 16
    data, valid, last, sizes = groups_of(rng, lanes, width, rng.integers(1, 4, 40))
    keep = rng.integers(0, lanes * 2, int(last.sum()))
    golden = get_backend("golden", lanes=lanes, width=width)
    stalled = get_backend("verilator", lanes=lanes, width=width, in_stall=stall,
                          out_stall=stall, stall_seed=int(stall * 10))
    want = prune_rows(golden, data, valid, last, width, keep)
    got = prune_rows(stalled, data, valid, last, width, keep)
    np.testing.assert_array_equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])
    np.testing.assert_array_equal(want[3].mask, got[3].mask)
    assert got[3].cycles > want[3].cycles and all(
        g.cycles > w.cycles for w, g in zip(want[2], got[2]))
    scale = rng.integers(0, 1 << width, data.shape)
    job = su.ScoreJob(data, scale, valid, width)
    w, = golden.run("score_unit", [job])
    g, = stalled.run("score_unit", [job])
    np.testing.assert_array_equal(w.data, g.data)
    assert g.cycles > w.cycles


def test_a_group_costs_its_beats(rng):
    """Back-to-back one-beat groups stream at one beat per clock in the RTL: the cycles of a
    pass are its beats plus the pipeline, with no walk or clearing per group."""
    lanes, width = 16, 16
    data, valid, last, _ = groups_of(rng, lanes, width, np.ones(300, dtype=int))
    verilator = get_backend("verilator", lanes=lanes, width=width)
    keep = np.full(300, 5)
    _, _, passes, res = prune_rows(verilator, data, valid, last, width, keep)
    assert all(p.cycles <= 300 + 8 for p in passes) and res.cycles <= 300 + 8


def test_bad_jobs_are_refused_alike():
    data = np.zeros((2, 4), dtype=np.int16)
    valid = np.ones((2, 4), dtype=bool)
    for name in ("golden", "verilator", "torch"):
        backend = get_backend(name, lanes=4, width=8)
        with pytest.raises(ValueError, match="final beat must have last set"):
            backend.run("row_select", [rs.RowSelectJob(data, valid, np.array([True, False]), 8,
                                                       4, np.zeros(1), np.zeros(1))])
        with pytest.raises(ValueError, match="scale codes must be 8-bit"):
            backend.run("score_unit", [su.ScoreJob(data, np.full((2, 4), 256), valid, 8)])
