"""Unit tests of the N:M selector in Amaranth's own simulator, against the golden model."""

import numpy as np
import pytest

from hwprune.contract import NMJob, MODELS
from hwprune.hw import NMSelector
from hwprune.contract.nm_selector import PIPELINE_LATENCY
from hwprune.sim.amaranth_bench import stream_pass, tile_payload
from hwprune.sim.stimulus import corner_values, random_tiles

nm_select = MODELS["nm_selector"]


def run_selector(lanes, width, job, *, rng=None, in_stall=0.0, out_stall=0.0, reset_after=None,
                 patterns=None):
    """Stream ``job`` through the selector; return an NMResult-like dict.

    ``patterns`` (a list of (m, n), one per beat) drives a different pattern with each beat, to
    check that the configuration travels with its beat. With ``reset_after=k`` the domain is reset
    after ``k`` input beats and the pass restarts from the first beat.
    """
    dut = NMSelector(lanes=lanes, width=width)
    rng = rng or np.random.default_rng(0)
    beats = len(job.data)

    def drive(ctx, b):
        m, n = patterns[b] if patterns else (job.m, job.n)
        ctx.set(dut.i_stream.payload, tile_payload(job.data, job.lane_valid, b))
        ctx.set(dut.m8, m == 8)
        ctx.set(dut.n, n)

    rows = {"data": [], "mask": [], "values": [], "index": []}

    def take(pl):
        rows["data"].append([pl.data[i] for i in range(lanes)])
        rows["mask"].append([(pl.mask >> i) & 1 for i in range(lanes)])
        rows["values"].append([pl.values[i] for i in range(lanes)])
        rows["index"].append([pl.index[i] for i in range(lanes)])

    cycles, counters = stream_pass(dut, beats, drive, take, lambda: len(rows["data"]) == beats,
                                   counters=("beats", "kept"), rng=rng, in_stall=in_stall,
                                   out_stall=out_stall, reset_after=reset_after)
    return {**{k: np.array(v).reshape(beats, lanes) for k, v in rows.items()},
            **counters, "cycles": cycles}


def check(job, got, *, cycles=False):
    want = nm_select(job)
    np.testing.assert_array_equal(got["data"], want.data)
    np.testing.assert_array_equal(got["mask"].astype(bool), want.mask)
    np.testing.assert_array_equal(got["values"], want.values)
    np.testing.assert_array_equal(got["index"], want.index)
    assert (got["beats"], got["kept"]) == (want.beats, want.kept)
    if cycles:
        assert got["cycles"] == want.cycles


@pytest.mark.parametrize("lanes,width,m,n", [(8, 4, 4, 2), (16, 8, 8, 3), (8, 16, 4, 1),
                                             (8, 8, 8, 7)])
def test_random_tiles_with_stalls(lanes, width, m, n):
    rng = np.random.default_rng(lanes * 100 + width + m * 10 + n)
    tiles, valid = random_tiles(rng, 80, lanes, width)
    got = run_selector(lanes, width, NMJob(tiles, valid, m, n), rng=rng, in_stall=0.3,
                       out_stall=0.3)
    check(NMJob(tiles, valid, m, n), got)


@pytest.mark.parametrize("width", [4, 8, 16])
def test_corner_values_ties_and_padding(width):
    lanes = 8
    corners = corner_values(width)
    rows = [np.resize(corners, lanes), np.resize(corners[::-1], lanes)]
    rows += [np.full(lanes, v) for v in corners]  # all-ties groups
    tiles = np.array(rows, dtype=np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    valid[1, 5:] = False
    valid[2, ::3] = False
    for m, n in [(4, 2), (8, 4), (4, 3), (8, 1)]:
        job = NMJob(tiles, valid, m, n)
        check(job, run_selector(lanes, width, job))


def test_one_beat_per_clock_without_stalls():
    rng = np.random.default_rng(1)
    tiles, valid = random_tiles(rng, 48, 16, 8)
    job = NMJob(tiles, valid, 4, 2)
    got = run_selector(16, 8, job)
    check(job, got, cycles=True)
    assert got["cycles"] == 48 + PIPELINE_LATENCY


def test_pattern_travels_with_its_beat():
    # A different (m, n) on every beat: each output beat must follow its own beat's pattern.
    rng = np.random.default_rng(3)
    tiles, valid = random_tiles(rng, 30, 8, 8)
    patterns = [((4, 8)[b % 2], int(rng.integers(0, (4, 8)[b % 2] + 1))) for b in range(30)]
    got = run_selector(8, 8, NMJob(tiles, valid, 4, 2), rng=rng, in_stall=0.3, out_stall=0.3,
                       patterns=patterns)
    for b, (m, n) in enumerate(patterns):
        want = nm_select(NMJob(tiles[b:b + 1], valid[b:b + 1], m, n))
        for field in ("data", "values", "index"):
            np.testing.assert_array_equal(got[field][b:b + 1], getattr(want, field))


def test_reset_mid_stream_loses_and_duplicates_nothing():
    rng = np.random.default_rng(2)
    tiles, valid = random_tiles(rng, 40, 8, 8)
    job = NMJob(tiles, valid, 8, 2)
    check(job, run_selector(8, 8, job, rng=rng, in_stall=0.2, out_stall=0.2, reset_after=15))




@pytest.mark.parametrize("m,n,message", [(2, 1, r"^m must be one of \(4, 8\), not 2$"),
                                         (4, 5, r"^n must be an integer from 0 to m=4, not 5$"),
                                         (8, -1, r"^n must be an integer from 0 to m=8, not -1$")])
def test_golden_rejects_bad_patterns(m, n, message):
    tiles = np.zeros((1, 8), dtype=np.int16)
    with pytest.raises(ValueError, match=message):
        nm_select(NMJob(tiles, np.ones_like(tiles, dtype=bool), m, n))
