"""Row mask: the threshold engine's exact tie-budgeted masking, with a threshold and budget per
group (RTL: :mod:`hwprune.hw.row_mask`).

The stream of groups of :mod:`~hwprune.contract.row_select` (``last`` on each group's final
beat); per group one ``g_stream`` beat ``{threshold, tie_budget}`` before its first beat. A
valid weight is kept when ``|w| > threshold``, or when ``|w| == threshold`` and fewer than
``tie_budget`` ties of its group came before it in stream order; each beat returns its keep
mask only (one bit per weight: the weights stay where they are).
"""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream
from .channel_norms import channel_tile_layout
from .layout import Field, Layout
from .params import Domain
from .row_select import check_groups, group_index
from .threshold_engine import LANES, WIDTH, magnitude

__all__ = ["PIPELINE_LATENCY", "DOMAIN", "threshold_layout", "mask_layout", "RowMaskJob",
           "RowMaskResult", "row_mask", "run", "BLOCK"]

#: Cycles beyond one per beat, from the first input beat offered to the last mask taken.
PIPELINE_LATENCY = 3

DOMAIN = Domain("row_mask", (LANES, WIDTH))


def threshold_layout(*, lanes, width):
    return Layout("row_threshold", [Field("threshold", width),
                                    Field("tie_budget", COUNTER_WIDTH)])


def mask_layout(*, lanes, width):
    return Layout("row_mask", [Field("mask", 1, lanes)])


@dataclass
class RowMaskJob:
    data: np.ndarray        # int16 (beats, lanes)
    lane_valid: np.ndarray  # bool (beats, lanes)
    last: np.ndarray        # bool (beats,)
    threshold: np.ndarray   # int64 (groups,)
    tie_budget: np.ndarray  # int64 (groups,)


@dataclass
class RowMaskResult:
    mask: np.ndarray        # bool (beats, lanes)
    beats: int
    kept: int
    cycles: int             # stall-free: beats + PIPELINE_LATENCY


def row_mask(data, lane_valid, last, threshold, tie_budget):
    """The keep mask: per group, ``|w| > T`` or a tie within the group's budget."""
    mag = magnitude(data)
    valid = np.asarray(lane_valid, dtype=bool)
    g = np.broadcast_to(group_index(last)[:, None], mag.shape)
    t = np.asarray(threshold, dtype=np.int64)[g]
    gt = valid & (mag > t)
    eq = (valid & (mag == t)).ravel()
    order = np.cumsum(eq, dtype=np.int64)
    # Ties before each group's start (stream order), subtracted to rank within the group.
    starts = np.flatnonzero(np.concatenate([[True], np.asarray(last, dtype=bool)[:-1]]))
    before = np.concatenate([[0], order])[starts * mag.shape[1]]
    rank = order - before[g.ravel()]
    budget = np.asarray(tie_budget, dtype=np.int64)[g].ravel()
    return gt | (eq & (rank <= budget)).reshape(mag.shape)


def check_job(job):
    """The job's shapes (one threshold and budget per group); returns the group count."""
    groups = check_groups(job)
    for name in ("threshold", "tie_budget"):
        if np.shape(getattr(job, name)) != (groups,):
            raise ValueError(f"{name} needs one value per group ({groups}), not "
                             f"{np.shape(getattr(job, name))}")
    return groups


def run(job):
    """Run one :class:`RowMaskJob` through the model."""
    check_job(job)
    beats = np.asarray(job.data).shape[0]
    if not beats:
        return RowMaskResult(mask=np.zeros(np.shape(job.data), dtype=bool), beats=0, kept=0,
                             cycles=0)
    mask = row_mask(job.data, job.lane_valid, job.last, job.threshold, job.tie_budget)
    return RowMaskResult(mask=mask, beats=beats, kept=int(np.count_nonzero(mask)),
                         cycles=beats + PIPELINE_LATENCY)


def encode(job, **params):
    groups = check_groups(job)
    beats = np.asarray(job.data).shape[0]
    return PassSpec(inputs={"i_stream": ({"data": job.data, "lane_valid": job.lane_valid,
                                          "last": np.asarray(job.last, dtype=bool)}, beats, 1),
                            "g_stream": ({"threshold": np.asarray(job.threshold, np.int64),
                                          "tie_budget": np.asarray(job.tie_budget, np.int64)},
                                         groups, 1)},
                    config={}, items=beats)


def decode(job, outputs, counters, cycles, **params):
    return RowMaskResult(mask=outputs["mask"].astype(bool), beats=counters["beats"],
                         kept=counters["kept"], cycles=cycles)


BLOCK = Block(
    name="row_mask",
    doc="tie-budgeted masking with a threshold and budget per group (row); mask bits out",
    domain=DOMAIN,
    streams=(Stream("i_stream", channel_tile_layout), Stream("g_stream", threshold_layout),
             Stream("o_stream", mask_layout, "out")),
    job=RowMaskJob, result=RowMaskResult, golden=run,
    component="hwprune.hw.row_mask:RowMask",
    encode=encode, decode=decode,
    counters=(Port("beats", COUNTER_WIDTH), Port("kept", COUNTER_WIDTH)),
    clear="clear",
)
