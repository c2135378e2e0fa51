"""Threshold engine: its description and golden model (RTL: :mod:`hwprune.hw.threshold_engine`).

The golden model is written transaction by transaction (a pass of beats in, a pass of beats out,
the counters after), not cycle by cycle.
"""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream, decoder
from .layout import Field, Layout
from .params import Domain, Param

__all__ = ["ALL_TIES", "SUPPORTED_WIDTHS", "MIN_LANES", "MAX_LANES", "PIPELINE_LATENCY",
           "DOMAIN", "tile_layout", "masked_tile_layout", "ThresholdJob", "MaskResult",
           "threshold_mask", "magnitude", "run", "BLOCK"]

SUPPORTED_WIDTHS = (4, 8, 16)
MIN_LANES, MAX_LANES = 4, 64
#: Register stages between an accepted input beat and its output beat.
PIPELINE_LATENCY = 4

#: Lanes and width: shared by every block that takes the engine's tiles.
LANES = Param("lanes", lo=MIN_LANES, hi=MAX_LANES, doc="weights per beat")
WIDTH = Param("width", choices=SUPPORTED_WIDTHS, doc="two's complement bits per weight")
DOMAIN = Domain("threshold_engine", (LANES, WIDTH))


def tile_layout(*, lanes, width, **_):
    """One input beat: ``lanes`` signed weights and a bitmap of the lanes that hold real data
    (a block's other parameters do not change it)."""
    return Layout("tile", [Field("data", width, lanes, signed=True),
                           Field("lane_valid", 1, lanes)])


def masked_tile_layout(*, lanes, width):
    """One output beat: the pruned weights and the keep mask (bit i set: lane i kept)."""
    return Layout("masked_tile", [Field("data", width, lanes, signed=True),
                                  Field("mask", 1, lanes)])

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


def tile_inputs(job):
    """The input stream of a job of tiles (``data``, ``lane_valid``), sent once."""
    return {"i_stream": ({"data": job.data, "lane_valid": job.lane_valid},
                         np.asarray(job.data).shape[0], 1)}


def encode(job, **params):
    return PassSpec(inputs=tile_inputs(job),
                    config={"threshold": int(job.threshold), "tie_budget": int(job.tie_budget)},
                    items=np.asarray(job.data).shape[0])


BLOCK = Block(
    name="threshold_engine",
    doc="streaming magnitude-threshold masking with an exact tie budget",
    domain=DOMAIN,
    streams=(Stream("i_stream", tile_layout), Stream("o_stream", masked_tile_layout, "out")),
    job=ThresholdJob, result=MaskResult, golden=run,
    component="hwprune.hw.threshold_engine:ThresholdEngine",
    encode=encode, decode=decoder(MaskResult, data=np.int16, mask=bool),
    config=(Port("threshold", lambda p: p["width"]), Port("tie_budget", COUNTER_WIDTH)),
    counters=(Port("beats", COUNTER_WIDTH), Port("kept", COUNTER_WIDTH),
              Port("ties_left", COUNTER_WIDTH)),
    clear="clear",
    bench="hwprune.sim.cocotb_tb.threshold_engine_tb",
    bridge_bit=0,
)
