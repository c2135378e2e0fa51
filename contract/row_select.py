"""Row select: exact-k threshold search in every group of a stream at once (RTL:
:mod:`hwprune.hw.row_select`).

Wanda compares scores within each output row; a transformer has tens of thousands of rows, each
a small exact-k problem. The magnitude histogram (256 bins in block RAM, a walk of one bin per
clock) would spend more clocks walking than counting a 384-weight row. This unit is built for
many small groups: a stream of groups (runs of beats, ``last`` on each group's final beat), a
16-bin histogram per group in registers (a beat's digits counted in packed fields, summed),
and a select that finds the group's bin in one clock (suffix sums of the 16 bins compared with
the group's ``keep`` at once), while the next group is already streaming. A group costs its beats.

One pass reads one 4-bit *digit* of every magnitude, ``(|w| >> shift) & 15``, and counts a
weight only when the digits above it, ``|w| >> (shift + 4)``, equal its group's ``prefix``.
Radix select from the top digit down (:func:`select_row_thresholds`: ``width / 4`` passes, the
group's found digit appended to its prefix and its ``ties`` becoming the next ``keep``) gives
every group's exact threshold and tie budget, for :mod:`~hwprune.contract.row_mask` to apply.
Per group the unit takes one ``g_stream`` beat ``{prefix, keep}`` (before the group's first beat)
and returns one ``o_stream`` beat ``{found, above, ties, counted}``, with the select walk's
meaning (:func:`hwprune.contract.magnitude_histogram.select_walk`).
"""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream
from .channel_norms import channel_tile_layout
from .layout import Field, Layout
from .params import Domain
from .threshold_engine import LANES, WIDTH, magnitude

__all__ = ["DIGIT_BITS", "PIPELINE_LATENCY", "DOMAIN", "digit_shifts", "target_layout",
           "pick_layout", "RowSelectJob", "RowSelectResult", "group_index", "select_rows",
           "run", "select_row_thresholds", "BLOCK"]

DIGIT_BITS = 4
DIGITS = 1 << DIGIT_BITS
#: Cycles beyond one per beat, from the first input beat offered to the last result taken.
PIPELINE_LATENCY = 5

DOMAIN = Domain("row_select", (LANES, WIDTH))


def digit_shifts(width):
    """The passes' digit positions, top digit first: 12, 8, 4, 0 at width 16 (magnitudes of
    ``width``-bit codes reach ``2**(width-1)``, which needs ``width`` bits)."""
    return tuple(range(width - DIGIT_BITS, -1, -DIGIT_BITS))


def target_layout(*, lanes, width):
    """One beat per group, before it: the digits found so far and how many to keep."""
    return Layout("row_target", [Field("prefix", width), Field("keep", COUNTER_WIDTH)])


def pick_layout(*, lanes, width):
    """One beat per group, after it: the select's verdict on this pass's digit."""
    return Layout("row_pick", [Field("found", DIGIT_BITS), Field("above", COUNTER_WIDTH),
                               Field("ties", COUNTER_WIDTH), Field("counted", COUNTER_WIDTH)])


@dataclass
class RowSelectJob:
    """One digit pass over groups: tiles with ``last`` per group, per-group prefix and keep."""

    data: np.ndarray        # int16 (beats, lanes)
    lane_valid: np.ndarray  # bool (beats, lanes)
    last: np.ndarray        # bool (beats,): the group's final beat
    width: int
    shift: int
    prefix: np.ndarray      # int64 (groups,)
    keep: np.ndarray        # int64 (groups,)


@dataclass
class RowSelectResult:
    found: np.ndarray       # int64 (groups,): digit of the keep-th largest counted magnitude
    above: np.ndarray       # int64 (groups,): counted weights in higher digits
    ties: np.ndarray        # int64 (groups,): keep - above
    counted: np.ndarray     # int64 (groups,): weights counted (prefix matched)
    groups: int
    cycles: int             # stall-free: beats + PIPELINE_LATENCY


def group_index(last):
    """Group number of every beat (groups end at ``last``)."""
    last = np.asarray(last, dtype=bool)
    return np.cumsum(last) - last


def check_groups(job):
    data, last = np.asarray(job.data), np.asarray(job.last, dtype=bool)
    if data.ndim != 2 or np.shape(job.lane_valid) != data.shape or last.shape != data.shape[:1]:
        raise ValueError(f"tiles and lane_valid must have shape (beats, lanes) and last "
                         f"(beats,), not {data.shape}, {np.shape(job.lane_valid)} and "
                         f"{last.shape}")
    if data.shape[0] and not last[-1]:
        raise ValueError("the final beat must have last set (groups occupy whole beats)")
    return int(last.sum())


def select_rows(counts, keep):
    """The select over every group's 16 digit counts at once: ``(found, above, ties)``, each
    as :func:`~hwprune.contract.magnitude_histogram.select_walk` defines it per group."""
    counts = np.asarray(counts, dtype=np.int64)
    keep = np.asarray(keep, dtype=np.int64)
    top = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=np.int64)
    top[:, :-1] = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]    # weights at digit >= b
    hits = (top[:, :-1] >= keep[:, None]).sum(axis=1)            # hits are digits 0..found
    found = np.maximum(hits - 1, 0)
    above = np.take_along_axis(top, (found + 1)[:, None], axis=1)[:, 0]
    return found, above, keep - above


def check_shift(job, width):
    if int(job.shift) not in digit_shifts(width):
        raise ValueError(f"shift must be one of the digit positions {digit_shifts(width)} at "
                         f"width {width}, not {job.shift!r}")


def check_job(job, width):
    """The job's shapes and shift (one prefix and keep per group); returns the group count."""
    groups = check_groups(job)
    check_shift(job, width)
    if np.shape(job.prefix) != (groups,) or np.shape(job.keep) != (groups,):
        raise ValueError(f"prefix and keep need one value per group ({groups}), not "
                         f"{np.shape(job.prefix)} and {np.shape(job.keep)}")
    return groups


def run(job):
    """Run one :class:`RowSelectJob` through the model."""
    groups = check_job(job, int(job.width))
    prefix = np.asarray(job.prefix, dtype=np.int64)
    keep = np.asarray(job.keep, dtype=np.int64)
    beats = np.asarray(job.data).shape[0]
    mag = magnitude(job.data).astype(np.int64)
    g = np.broadcast_to(group_index(job.last)[:, None], mag.shape)
    shift = int(job.shift)
    counted = np.asarray(job.lane_valid, dtype=bool) & ((mag >> (shift + DIGIT_BITS)) == prefix[g])
    digit = (mag >> shift) & (DIGITS - 1)
    counts = np.bincount((g * DIGITS + digit)[counted], minlength=groups * DIGITS)
    counts = counts.reshape(groups, DIGITS)
    found, above, ties = select_rows(counts, keep)
    return RowSelectResult(found=found, above=above, ties=ties, counted=counts.sum(axis=1),
                           groups=groups, cycles=beats + PIPELINE_LATENCY if beats else 0)


def select_row_thresholds(run_pass, data, lane_valid, last, width, keep):
    """Every group's ``(threshold, tie budget)`` that keeps exactly ``keep[g]`` of its
    magnitudes, and the passes' results; ``run_pass(job)`` runs one :class:`RowSelectJob` on
    any backend. ``width / 4`` passes, top digit first."""
    keep = np.asarray(keep, dtype=np.int64)
    prefix = np.zeros_like(keep)
    passes = []
    for shift in digit_shifts(width):
        r = run_pass(RowSelectJob(data, lane_valid, last, width, shift, prefix, keep))
        passes.append(r)
        prefix = (prefix << DIGIT_BITS) | np.asarray(r.found, dtype=np.int64)
        keep = np.asarray(r.ties, dtype=np.int64)
    return prefix, keep, passes


def encode(job, **params):
    if int(job.width) != params["width"]:
        raise ValueError(f"job is for width {job.width}, the unit has width {params['width']}")
    groups = check_job(job, params["width"])
    beats = np.asarray(job.data).shape[0]
    return PassSpec(inputs={"i_stream": ({"data": job.data, "lane_valid": job.lane_valid,
                                          "last": np.asarray(job.last, dtype=bool)}, beats, 1),
                            "g_stream": ({"prefix": np.asarray(job.prefix, dtype=np.int64),
                                          "keep": np.asarray(job.keep, dtype=np.int64)},
                                         groups, 1)},
                    config={"shift": int(job.shift)}, items=groups)


def decode(job, outputs, counters, cycles, **params):
    groups = int(np.asarray(job.last, dtype=bool).sum())
    if counters["groups"] != groups:
        raise RuntimeError(f"the row-select unit finished {counters['groups']} groups, the job "
                           f"has {groups}")
    col = {k: outputs[k][:, 0].astype(np.int64) for k in ("found", "above", "ties", "counted")}
    return RowSelectResult(**col, groups=groups, cycles=cycles)


BLOCK = Block(
    name="row_select",
    doc="exact-k digit select in every group (row) of a stream: per-row thresholds",
    domain=DOMAIN,
    streams=(Stream("i_stream", channel_tile_layout), Stream("g_stream", target_layout),
             Stream("o_stream", pick_layout, "out")),
    job=RowSelectJob, result=RowSelectResult, golden=run,
    component="hwprune.hw.row_select:RowSelect",
    encode=encode, decode=decode,
    config=(Port("shift", lambda p: p["width"].bit_length()),),
    counters=(Port("groups", COUNTER_WIDTH),),
    clear="clear",
)
