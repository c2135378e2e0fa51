"""N:M selector: its description and golden model (RTL: :mod:`hwprune.hw.nm_selector`).

The golden model is written transaction by transaction (a pass of beats in, a pass of beats out,
the counters after), not cycle by cycle.
"""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream, decoder
from .layout import Field, Layout
from .params import Domain, Param
from .threshold_engine import WIDTH, magnitude, tile_inputs, tile_layout

__all__ = ["GROUP_SIZES", "INDEX_BITS", "PIPELINE_LATENCY", "DOMAIN", "nm_tile_layout", "NMJob",
           "NMResult", "check_job", "nm_mask", "nm_compact", "nm_select", "run", "BLOCK"]

#: Group sizes M the selector supports (runtime choice).
GROUP_SIZES = (4, 8)
#: Bits of each slot's index field.
INDEX_BITS = 3
#: Register stages between an accepted input beat and its output beat.
PIPELINE_LATENCY = 5
MIN_LANES, MAX_LANES = 8, 64

#: Groups of up to 8 lanes never straddle beats: lanes is a multiple of 8.
DOMAIN = Domain("nm_selector", (Param("lanes", lo=MIN_LANES, hi=MAX_LANES, multiple_of=8,
                                      doc="weights per beat (groups never straddle beats)"),
                                WIDTH))


def nm_tile_layout(*, lanes, width):
    """One output beat: dense pruned tile, keep mask, compacted values, their in-group index."""
    return Layout("nm_tile", [Field("data", width, lanes, signed=True), Field("mask", 1, lanes),
                              Field("values", width, lanes, signed=True),
                              Field("index", INDEX_BITS, lanes)])


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

    ``data``, ``mask``, ``beats``, ``kept`` and ``cycles`` mean what they mean in the threshold
    engine's :class:`~hwprune.contract.threshold_engine.MaskResult`; besides them:

    values : ndarray of int16, shape (beats, lanes)
        Group ``g``'s kept values in ascending lane order at slots ``g*m ..``, other slots 0.
    index : ndarray of uint8, shape (beats, lanes)
        Lane index within the group of the value in each slot (``0 .. m-1``), 0 for unused slots.
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


def nm_compact(tiles, keep, m):
    """The selector's compacted form of kept lanes: group ``g``'s kept values in ascending lane
    order at slots ``g*m ..`` and their in-group lane indices (``values``, ``index``, both
    (beats, lanes), unused slots 0)."""
    tiles = np.asarray(tiles)
    keep = np.asarray(keep, dtype=bool)
    beats, lanes = tiles.shape
    groups = keep.reshape(beats, lanes // m, m)
    # Slot of each kept lane: kept lanes before it in its group.
    slot = np.cumsum(groups, axis=-1) - groups
    b, g, i = np.nonzero(groups)
    values = np.zeros((beats, lanes // m, m), dtype=np.int16)
    index = np.zeros((beats, lanes // m, m), dtype=np.uint8)
    values[b, g, slot[b, g, i]] = tiles.reshape(beats, lanes // m, m)[b, g, i]
    index[b, g, slot[b, g, i]] = i
    return values.reshape(beats, lanes), index.reshape(beats, lanes)


def nm_select(tiles, lane_valid, m, n, *, latency=PIPELINE_LATENCY):
    """Model one pass of :class:`hwprune.hw.NMSelector`; return an :class:`NMResult`."""
    tiles = np.asarray(tiles)
    keep = nm_mask(tiles, lane_valid, m, n)
    beats = tiles.shape[0]
    values, index = nm_compact(tiles, keep, m)
    return NMResult(
        data=np.where(keep, tiles, 0).astype(np.int16),
        mask=keep,
        values=values,
        index=index,
        beats=beats,
        kept=int(keep.sum()),
        cycles=beats + latency if beats else 0,
    )


def run(job, *, latency=PIPELINE_LATENCY):
    """Run one :class:`NMJob` through the model."""
    return nm_select(job.data, job.lane_valid, int(job.m), int(job.n), latency=latency)


def encode(job, **params):
    check_job(job)  # the golden model's checks of m, n and the shapes hold on every backend
    return PassSpec(inputs=tile_inputs(job), config={"m8": int(int(job.m) == 8), "n": int(job.n)},
                    items=np.asarray(job.data).shape[0])


BLOCK = Block(
    name="nm_selector",
    doc="N:M structured-sparsity selection (M = 4 or 8 at run time), values + indices",
    domain=DOMAIN,
    streams=(Stream("i_stream", tile_layout), Stream("o_stream", nm_tile_layout, "out")),
    job=NMJob, result=NMResult, golden=run,
    component="hwprune.hw.nm_selector:NMSelector",
    encode=encode,
    decode=decoder(NMResult, data=np.int16, mask=bool, values=np.int16, index=np.uint8),
    config=(Port("m8", 1), Port("n", 4)),
    counters=(Port("beats", COUNTER_WIDTH), Port("kept", COUNTER_WIDTH)),
    clear="clear",
    bench="hwprune.sim.cocotb_tb.nm_selector_tb",
    bridge_bit=2,
)
