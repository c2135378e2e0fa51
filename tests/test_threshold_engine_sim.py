"""Unit tests of the threshold engine in Amaranth's own simulator, against the golden model."""

import numpy as np
import pytest

from hwprune.contract import ALL_TIES, threshold_mask
from hwprune.contract.threshold_engine import PIPELINE_LATENCY
from hwprune.hw import ThresholdEngine
from hwprune.sim.amaranth_bench import stream_pass, tile_payload
from hwprune.sim.stimulus import corner_values, random_tiles


def run_engine(lanes, width, tiles, lane_valid, threshold, tie_budget, *, rng=None,
               in_stall=0.0, out_stall=0.0, reset_after=None):
    """Stream ``tiles`` through the engine; return (data, mask, counters, cycles).

    One testbench drives both streams, choosing random stalls on each side every cycle. With
    ``reset_after=n`` the domain is reset after ``n`` input beats (with beats still in the
    pipeline) and the pass restarts from the first beat, as a host does.
    """
    dut = ThresholdEngine(lanes=lanes, width=width)
    rng = rng or np.random.default_rng(0)
    beats = len(tiles)
    data, mask = [], []

    def drive(ctx, b):
        ctx.set(dut.i_stream.payload, tile_payload(tiles, lane_valid, b))

    def take(pl):
        data.append([pl.data[i] for i in range(lanes)])
        mask.append([(pl.mask >> i) & 1 for i in range(lanes)])

    def configure(ctx):
        ctx.set(dut.threshold, threshold)
        ctx.set(dut.tie_budget, tie_budget)

    cycles, counters = stream_pass(dut, beats, drive, take, lambda: len(data) == beats,
                                   configure=configure, counters=("beats", "kept", "ties_left"),
                                   rng=rng, in_stall=in_stall, out_stall=out_stall,
                                   reset_after=reset_after)
    return (np.array(data, dtype=np.int16).reshape(beats, lanes),
            np.array(mask, dtype=bool).reshape(beats, lanes), counters, cycles)


def check(lanes, width, tiles, lane_valid, threshold, tie_budget, got):
    data, mask, counters, _ = got
    want = threshold_mask(tiles, lane_valid, threshold, tie_budget)
    np.testing.assert_array_equal(data, want.data)
    np.testing.assert_array_equal(mask, want.mask)
    assert counters == {"beats": want.beats, "kept": want.kept, "ties_left": want.ties_left}


@pytest.mark.parametrize("lanes,width", [(4, 4), (8, 8), (5, 16), (16, 8)])
def test_random_tiles_with_stalls(lanes, width):
    rng = np.random.default_rng(lanes * 100 + width)
    tiles, valid = random_tiles(rng, 120, lanes, width)
    threshold = int(rng.integers(0, 2 ** (width - 1) + 1))
    for budget in (ALL_TIES, 0, 7):
        got = run_engine(lanes, width, tiles, valid, threshold, budget, rng=rng,
                         in_stall=0.3, out_stall=0.3)
        check(lanes, width, tiles, valid, threshold, budget, got)


@pytest.mark.parametrize("width", [4, 8, 16])
def test_corner_values_and_ties(width):
    lanes = 8
    corners = corner_values(width)
    tiles = np.resize(corners, (16, lanes)).astype(np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    hi = 2 ** (width - 1)
    # Threshold at the most negative value's magnitude: only -2**(w-1) survives, ties spend budget.
    for threshold, budget in [(hi, ALL_TIES), (hi, 3), (0, ALL_TIES), (1, 5), (hi - 1, 0)]:
        got = run_engine(lanes, width, tiles, valid, threshold, budget)
        check(lanes, width, tiles, valid, threshold, budget, got)


def test_one_beat_per_clock_without_stalls():
    lanes, width, beats = 8, 8, 64
    rng = np.random.default_rng(1)
    tiles, valid = random_tiles(rng, beats, lanes, width)
    got = run_engine(lanes, width, tiles, valid, 10, ALL_TIES)
    check(lanes, width, tiles, valid, 10, ALL_TIES, got)
    # The drain side counts clock edges until the last beat: full throughput plus the latency.
    assert got[3] == beats + PIPELINE_LATENCY


def test_reset_mid_stream_loses_and_duplicates_nothing():
    lanes, width = 8, 8
    rng = np.random.default_rng(2)
    tiles, valid = random_tiles(rng, 60, lanes, width)
    got = run_engine(lanes, width, tiles, valid, 20, 11, rng=rng, in_stall=0.2, out_stall=0.2,
                     reset_after=25)
    check(lanes, width, tiles, valid, 20, 11, got)
