"""Golden model of the channel-norm accumulator (:class:`hwprune.hw.ChannelNorms`).

Written transaction by transaction (a pass of beats in, one result per channel out), not cycle by
cycle.
"""

from dataclasses import dataclass

import numpy as np

from ..hw.channel_norms import MAX_CHANNEL_WEIGHTS, PIPELINE_LATENCY
from .threshold_engine import magnitude

__all__ = ["ChannelJob", "ChannelResult", "channel_norms", "run"]


@dataclass
class ChannelJob:
    """One pass of the channel-norm accumulator: whole channels, one after another.

    ``last`` marks the final beat of each channel; the final beat of the job must have it. Each
    channel holds at most ``MAX_CHANNEL_WEIGHTS`` (``2**24``) valid weights.
    """

    data: np.ndarray        # int16, (beats, lanes)
    lane_valid: np.ndarray  # bool, (beats, lanes)
    last: np.ndarray        # bool, (beats,)


@dataclass
class ChannelResult:
    """What one pass of the channel-norm accumulator returns.

    Attributes
    ----------
    l1, l2 : ndarray of int64, shape (channels,)
        ``sum |w|`` and ``sum w**2`` over each channel's valid lanes.
    beats : int
        Input beats accumulated (the ``beats`` counter at the end of the pass).
    cycles : int
        Clock cycles from the first input beat offered to the last output beat taken (the golden
        model reports the stall-free figure, ``beats + PIPELINE_LATENCY``).
    """

    l1: np.ndarray
    l2: np.ndarray
    beats: int
    cycles: int


def channel_norms(tiles, lane_valid, last, *, latency=PIPELINE_LATENCY):
    """Model one pass of :class:`hwprune.hw.ChannelNorms`; return a :class:`ChannelResult`."""
    tiles = np.asarray(tiles)
    valid = np.asarray(lane_valid, dtype=bool)
    last = np.asarray(last, dtype=bool)
    if tiles.shape != valid.shape or tiles.ndim != 2 or last.shape != tiles.shape[:1]:
        raise ValueError(f"tiles and lane_valid must have shape (beats, lanes) and last "
                         f"(beats,), not {tiles.shape}, {valid.shape} and {last.shape}")
    beats = tiles.shape[0]
    if beats and not last[-1]:
        raise ValueError("the final beat must have last set (channels occupy whole beats)")
    mag = np.where(valid, magnitude(tiles), 0).astype(np.int64)
    if not beats:
        empty = np.zeros(0, dtype=np.int64)
        return ChannelResult(l1=empty, l2=empty.copy(), beats=0, cycles=0)
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    counts = np.add.reduceat(valid.sum(axis=1), starts)
    if counts.max() > MAX_CHANNEL_WEIGHTS:
        raise ValueError(f"a channel may hold at most {MAX_CHANNEL_WEIGHTS} weights, "
                         f"not {int(counts.max())}")
    l1 = np.add.reduceat(mag.sum(axis=1), starts)
    l2 = np.add.reduceat((mag * mag).sum(axis=1), starts)
    return ChannelResult(l1=l1.astype(np.int64), l2=l2.astype(np.int64), beats=beats,
                         cycles=beats + latency)


def run(job, *, latency=PIPELINE_LATENCY):
    """Run one :class:`ChannelJob` through the model."""
    return channel_norms(job.data, job.lane_valid, job.last, latency=latency)
