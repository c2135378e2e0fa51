"""Golden model of the threshold engine (:class:`hwprune.hw.ThresholdEngine`).

Written transaction by transaction (a pass of beats in, a pass of beats out, the counters after),
not cycle by cycle.
"""

from dataclasses import dataclass

import numpy as np

from ..hw.threshold_engine import PIPELINE_LATENCY

__all__ = ["ALL_TIES", "ThresholdJob", "MaskResult", "threshold_mask", "magnitude", "run"]

#: A tie budget that keeps every weight whose magnitude equals the threshold.
ALL_TIES = 2**32 - 1


@dataclass
class ThresholdJob:
    """One pass of the threshold engine: tiles plus the configuration to run them with."""

    data: np.ndarray        # int16, (beats, lanes)
    lane_valid: np.ndarray  # bool, (beats, lanes)
    threshold: int
    tie_budget: int = ALL_TIES


@dataclass
class MaskResult:
    """What one pass of the threshold engine returns.

    Attributes
    ----------
    data : ndarray of int16, shape (beats, lanes)
        The pruned tiles (pruned and padding lanes are 0).
    mask : ndarray of bool, shape (beats, lanes)
        True where the weight was kept.
    beats, kept : int
        Counter values at the end of the pass.
    ties_left : int
        Tie budget left at the end of the pass.
    cycles : int
        Clock cycles from the first input beat offered to the last output beat taken
        (the golden model reports the stall-free figure, ``beats + PIPELINE_LATENCY``).
    """

    data: np.ndarray
    mask: np.ndarray
    beats: int
    kept: int
    ties_left: int
    cycles: int


def magnitude(tiles):
    """Two's complement magnitude as int32 (``|-2**(w-1)| = 2**(w-1)`` does not overflow)."""
    return np.abs(np.asarray(tiles, dtype=np.int32))


def threshold_mask(tiles, lane_valid, threshold, tie_budget=ALL_TIES, *, latency=PIPELINE_LATENCY):
    """Model one pass of :class:`hwprune.hw.ThresholdEngine`.

    Parameters
    ----------
    tiles : array of int, shape (beats, lanes)
        Signed weights, already in the engine's ``width``-bit range.
    lane_valid : array of bool, shape (beats, lanes)
        False for padding lanes: never kept, never counted, never a tie.
    threshold : int
        Magnitude threshold ``T``: ``|w| > T`` is kept.
    tie_budget : int
        How many weights with ``|w| == T`` to keep, granted in stream order (beat-major,
        lane 0 first).
    latency : int
        Pipeline latency used for the stall-free cycle count.
    """
    tiles = np.asarray(tiles)
    valid = np.asarray(lane_valid, dtype=bool)
    if tiles.shape != valid.shape or tiles.ndim != 2:
        raise ValueError(f"tiles and lane_valid must both have shape (beats, lanes), "
                         f"not {tiles.shape} and {valid.shape}")
    mag = magnitude(tiles)
    gt = valid & (mag > threshold)
    eq = valid & (mag == threshold)
    # Inclusive running count of ties in stream order; a tie is kept while the count <= budget.
    order = np.cumsum(eq.ravel(), dtype=np.int64).reshape(eq.shape)
    keep = gt | (eq & (order <= tie_budget))
    ties = int(eq.sum())
    beats = tiles.shape[0]
    return MaskResult(
        data=np.where(keep, tiles, 0).astype(np.int16),
        mask=keep,
        beats=beats,
        kept=int(keep.sum()),
        ties_left=int(tie_budget) - min(ties, int(tie_budget)),
        cycles=beats + latency if beats else 0,
    )


def run(job, *, latency=PIPELINE_LATENCY):
    """Run one :class:`ThresholdJob` through the model."""
    return threshold_mask(job.data, job.lane_valid, job.threshold, job.tie_budget,
                          latency=latency)
