"""Golden model of the N:M selector (:class:`hwprune.hw.NMSelector`).

Written transaction by transaction (a pass of beats in, a pass of beats out, the counters after),
not cycle by cycle.
"""

from dataclasses import dataclass

import numpy as np

from ..hw.nm_selector import GROUP_SIZES, PIPELINE_LATENCY
from .threshold_engine import magnitude

__all__ = ["NMJob", "NMResult", "check_job", "nm_mask", "nm_select", "run"]


@dataclass
class NMJob:
    """One pass of the N:M selector: tiles plus the pattern to select with.

    ``m`` is 4 or 8 and ``lanes`` a multiple of it (groups never straddle beats); ``n`` from 0
    to ``m`` (0 keeps nothing, ``m`` every valid lane; N:M sparsity proper is ``1 <= n < m``).
    """

    data: np.ndarray        # int16, (beats, lanes)
    lane_valid: np.ndarray  # bool, (beats, lanes)
    m: int
    n: int


@dataclass
class NMResult:
    """What one pass of the N:M selector returns.

    Attributes
    ----------
    data : ndarray of int16, shape (beats, lanes)
        The pruned tiles (pruned and padding lanes are 0).
    mask : ndarray of bool, shape (beats, lanes)
        True where the weight was kept.
    values : ndarray of int16, shape (beats, lanes)
        Group ``g``'s kept values in ascending lane order at slots ``g*m ..``, other slots 0.
    index : ndarray of uint8, shape (beats, lanes)
        Lane index within the group of the value in each slot (``0 .. m-1``), 0 for unused slots.
    beats, kept : int
        Counter values at the end of the pass.
    cycles : int
        Clock cycles from the first input beat offered to the last output beat taken (the golden
        model reports the stall-free figure, ``beats + PIPELINE_LATENCY``).
    """

    data: np.ndarray
    mask: np.ndarray
    values: np.ndarray
    index: np.ndarray
    beats: int
    kept: int
    cycles: int


def check_job(job):
    """Raise ValueError unless ``job`` is a valid :class:`NMJob` (every backend checks this)."""
    _check(np.asarray(job.data), np.asarray(job.lane_valid, dtype=bool), job.m, job.n)


def _check(tiles, valid, m, n):
    if tiles.shape != valid.shape or tiles.ndim != 2:
        raise ValueError(f"tiles and lane_valid must both have shape (beats, lanes), "
                         f"not {tiles.shape} and {valid.shape}")
    if m not in GROUP_SIZES or isinstance(m, bool):
        raise ValueError(f"m must be one of {GROUP_SIZES}, not {m!r}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= m:
        raise ValueError(f"n must be an integer from 0 to m={m}, not {n!r}")
    if tiles.shape[1] % m:
        raise ValueError(f"lanes must be a multiple of m={m}, not {tiles.shape[1]}")


def nm_mask(tiles, lane_valid, m, n):
    """Keep mask of the ``n`` largest magnitudes in every group of ``m`` consecutive lanes.

    Lower lane index wins ties; padding lanes (``lane_valid`` False) rank below every valid lane
    and are never kept. Shape (beats, lanes), bool.
    """
    tiles = np.asarray(tiles)
    valid = np.asarray(lane_valid, dtype=bool)
    _check(tiles, valid, m, n)
    beats, lanes = tiles.shape
    # Sort key: lane_valid above the magnitude (|w| <= 2**15 < 2**17).
    key = (magnitude(tiles) + valid.astype(np.int32) * (1 << 17)).reshape(beats, lanes // m, m)
    # A stable sort of -key lists each group largest first, lower index first among equals.
    order = np.argsort(-key, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(m)[None, None, :], axis=-1)
    return (rank < n).reshape(beats, lanes) & valid


def nm_select(tiles, lane_valid, m, n, *, latency=PIPELINE_LATENCY):
    """Model one pass of :class:`hwprune.hw.NMSelector`; return an :class:`NMResult`."""
    tiles = np.asarray(tiles)
    keep = nm_mask(tiles, lane_valid, m, n)
    beats, lanes = tiles.shape
    groups = keep.reshape(beats, lanes // m, m)
    # Slot of each kept lane: kept lanes before it in its group.
    slot = np.cumsum(groups, axis=-1) - groups
    b, g, i = np.nonzero(groups)
    values = np.zeros((beats, lanes // m, m), dtype=np.int16)
    index = np.zeros((beats, lanes // m, m), dtype=np.uint8)
    values[b, g, slot[b, g, i]] = tiles.reshape(beats, lanes // m, m)[b, g, i]
    index[b, g, slot[b, g, i]] = i
    return NMResult(
        data=np.where(keep, tiles, 0).astype(np.int16),
        mask=keep,
        values=values.reshape(beats, lanes),
        index=index.reshape(beats, lanes),
        beats=beats,
        kept=int(keep.sum()),
        cycles=beats + latency if beats else 0,
    )


def run(job, *, latency=PIPELINE_LATENCY):
    """Run one :class:`NMJob` through the model."""
    return nm_select(job.data, job.lane_valid, int(job.m), int(job.n), latency=latency)
