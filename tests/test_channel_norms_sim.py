"""Unit tests of the channel-norm accumulator in Amaranth's own simulator, against the golden
model."""

import numpy as np
import pytest

from hwprune.contract import MODELS, ChannelJob
from hwprune.hw import ChannelNorms
from hwprune.contract.channel_norms import PIPELINE_LATENCY, l1_width, l2_width
from hwprune.hw.channel_norms import NormLayout
from hwprune.sim.amaranth_bench import stream_pass, tile_payload
from hwprune.sim.stimulus import corner_values, random_tiles

channel_norms = MODELS["channel_norms"]


def random_channels(rng, beats, lanes, width):
    """A ChannelJob of random channels of 1 to 6 beats, the last beat of each padded at random."""
    tiles, valid = random_tiles(rng, beats, lanes, width, pad_fraction=0.0)
    last = rng.random(beats) < 0.3
    last[-1] = True
    for b in np.flatnonzero(last):
        if rng.random() < 0.5:
            valid[b, rng.integers(1, lanes + 1):] = False
    return ChannelJob(tiles, valid, last)


def run_norms(lanes, width, job, *, rng=None, in_stall=0.0, out_stall=0.0, reset_after=None):
    """Stream ``job`` through the block; return (l1, l2, beats counter, channels counter, cycles)."""
    dut = ChannelNorms(lanes=lanes, width=width)
    rng = rng or np.random.default_rng(0)
    beats = len(job.data)
    channels = int(job.last.sum())
    l1, l2 = [], []

    def drive(ctx, b):
        ctx.set(dut.i_stream.payload,
                tile_payload(job.data, job.lane_valid, b, last=int(job.last[b])))

    def take(pl):
        l1.append(pl.l1)
        l2.append(pl.l2)

    cycles, counters = stream_pass(dut, beats, drive, take, lambda: len(l1) == channels,
                                   counters=("beats", "channels"), rng=rng, in_stall=in_stall,
                                   out_stall=out_stall, reset_after=reset_after)
    return {"l1": np.array(l1, dtype=np.int64), "l2": np.array(l2, dtype=np.int64), **counters,
            "cycles": cycles}


def check(job, got, *, cycles=False):
    want = channel_norms(job)
    np.testing.assert_array_equal(got["l1"], want.l1)
    np.testing.assert_array_equal(got["l2"], want.l2)
    assert (got["beats"], got["channels"]) == (want.beats, len(want.l1))
    if cycles:
        assert got["cycles"] == want.cycles


@pytest.mark.parametrize("lanes,width", [(4, 4), (8, 8), (5, 16), (16, 8)])
def test_random_channels_with_stalls(lanes, width):
    rng = np.random.default_rng(lanes * 100 + width)
    job = random_channels(rng, 100, lanes, width)
    check(job, run_norms(lanes, width, job, rng=rng, in_stall=0.3, out_stall=0.3))


@pytest.mark.parametrize("width", [4, 8, 16])
def test_corner_values_and_single_beat_channels(width):
    lanes = 8
    corners = corner_values(width)
    tiles = np.array([np.full(lanes, v) for v in corners] + [np.resize(corners, lanes)],
                     dtype=np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    valid[-1, 3:] = False
    for last in (np.ones(len(tiles), dtype=bool), np.arange(len(tiles)) % 3 == 2):
        last[-1] = True
        job = ChannelJob(tiles, valid, last)
        check(job, run_norms(lanes, width, job))


def test_one_beat_per_clock_without_stalls():
    rng = np.random.default_rng(1)
    job = random_channels(rng, 60, 8, 8)
    got = run_norms(8, 8, job)
    check(job, got, cycles=True)
    assert got["cycles"] == 60 + PIPELINE_LATENCY


def test_reset_mid_stream_loses_and_duplicates_nothing():
    rng = np.random.default_rng(2)
    job = random_channels(rng, 50, 8, 8)
    check(job, run_norms(8, 8, job, rng=rng, in_stall=0.2, out_stall=0.2, reset_after=20))


@pytest.mark.parametrize("width", [4, 8, 16])
def test_sum_widths_hold_two_to_the_24_extreme_weights(width):
    # The bound the widths are chosen for: 2**24 weights of -2**(width-1).
    assert l1_width(width) == (2**24 * 2**(width - 1)).bit_length()
    assert l2_width(width) == (2**24 * 2**(2 * width - 2)).bit_length()
    assert NormLayout(width).size == l1_width(width) + l2_width(width)


def test_golden_rejects_unterminated_channel_and_overflow():
    tiles = np.zeros((2, 8), dtype=np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    with pytest.raises(ValueError, match=r"^the final beat must have last set"):
        channel_norms(ChannelJob(tiles, valid, np.array([True, False])))
    big = np.ones((2**21 + 1, 8), dtype=np.int16)
    last = np.zeros(len(big), dtype=bool)
    last[-1] = True
    with pytest.raises(ValueError, match=r"^a channel may hold at most 16777216 weights, not "):
        channel_norms(ChannelJob(big, np.ones_like(big, dtype=bool), last))
