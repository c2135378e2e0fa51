"""Magnitude histogram / radix select: its description and golden model (RTL:
:mod:`hwprune.hw.magnitude_histogram`)."""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream, decoder
from .params import Domain, Param
from .threshold_engine import LANES, WIDTH, tile_inputs, tile_layout

__all__ = ["SELECT_LATENCY", "UPDATE_LATENCY", "SPLIT_LATENCY", "stall_free_cycles", "BANKS",
           "ways", "DOMAIN", "histogram_bins", "HistogramJob", "HistogramResult", "run",
           "select_walk", "select_threshold_passes", "BLOCK"]

#: Cycles of the select walk beyond one per bin (from its start to ``done``): the read, the
#: three registered sums, the decision, and its results' registers.
SELECT_LATENCY = 6
#: Clocks after the last beat before the walk can start (its count is written back then).
UPDATE_LATENCY = 2
#: Clocks a unit with fewer counter banks than lanes adds: each part of a beat is registered.
SPLIT_LATENCY = 1


def stall_free_cycles(beats, width, ways=1):
    """The unit's cycles for a pass of ``beats`` with no stall: the beats (``ways`` clocks each:
    ``lanes / banks``), the update pipeline's drain (if any beat came), one clock per bin, the
    walk's pipeline."""
    drain = UPDATE_LATENCY + (SPLIT_LATENCY if ways > 1 else 0)
    return int(beats) * ways + (drain if beats else 0) + histogram_bins(width) + SELECT_LATENCY


#: Counter banks: one a lane counts a beat a clock; fewer take ``lanes / banks`` clocks a beat
#: for a fraction of the logic (a board whose line, not its unit, bounds the pass: the UP5K).
BANKS = Param("banks", lo=1, hi=64, default_from="lanes",
              doc="counter banks (block RAMs): lanes counted a clock; a beat takes "
                  "lanes / banks clocks")
DOMAIN = Domain("magnitude_histogram", (LANES, WIDTH, BANKS),
                rules=((lambda p: p["lanes"] % p["banks"] == 0,
                        "banks ({banks}) must divide lanes ({lanes})"),))


def ways(lanes, banks=None):
    """Clocks a beat of ``lanes`` takes on a unit with ``banks`` counter banks."""
    return 1 if banks is None else lanes // banks


def histogram_bins(width):
    """Number of bins: 16 for 4-bit weights (magnitudes 0..8), else 256 (one byte)."""
    return 16 if width == 4 else 256


@dataclass
class HistogramJob:
    """Count one stream of tiles, then select the bin of the ``keep``-th largest magnitude."""

    data: np.ndarray        # int16 (beats, lanes)
    lane_valid: np.ndarray  # bool (beats, lanes)
    width: int
    shift: int
    match_en: int
    match_value: int
    keep: int


@dataclass
class HistogramResult:
    found_bin: int   # bin of the keep-th largest magnitude
    above: int       # counted weights in higher bins
    ties: int        # keep - above: how many in found_bin to keep
    counted: int     # weights counted in the pass
    cycles: int      # stall-free: stall_free_cycles(beats, width, lanes / banks)


def run(job, *, banks=None, **params):
    """Run one :class:`HistogramJob` through the model of a unit with ``banks`` counter banks
    (default: one a lane; they change its cycles, not its results)."""
    bins = histogram_bins(job.width)
    mag = np.abs(np.asarray(job.data, dtype=np.int32))
    counted = np.asarray(job.lane_valid, dtype=bool).copy()
    if job.match_en:
        counted &= (mag >> 8) == job.match_value if job.width > 8 else False
    index = (mag[counted] >> job.shift) & (bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.int64)
    found, above, ties = select_walk(counts, job.keep)
    return HistogramResult(found_bin=found, above=above, ties=ties, counted=int(index.size),
                           cycles=stall_free_cycles(job.data.shape[0], job.width,
                                                    ways(job.data.shape[1], banks)))


def select_walk(counts, keep):
    """The select walk over bin ``counts``: ``(found_bin, above, ties)`` for ``keep``.

    Running totals from the top bin down; the first bin where they reach ``keep`` holds the
    threshold, ``above`` counts the higher bins and ``ties = keep - above``. A ``keep`` beyond
    the count keeps everything (bin 0).
    """
    counts = np.asarray(counts, dtype=np.int64)
    bins = counts.size
    from_top = np.cumsum(counts[::-1])
    hit = np.flatnonzero(from_top >= keep)
    if hit.size:
        found = bins - 1 - int(hit[0])
        above = int(from_top[hit[0]] - counts[found])
    else:                                   # keep exceeds the count: keep everything
        found, above = 0, int(from_top[-1] - counts[0])
    return found, above, int(keep) - above


def select_threshold_passes(run_pass, data, lane_valid, width, keep):
    """Find (threshold, tie budget, results) that keep exactly ``keep`` magnitudes.

    ``run_pass(job)`` runs one :class:`HistogramJob` (on any backend). Width 4 and 8 take one
    pass; width 16 takes two radix passes, high byte then low byte. This is the host's whole
    part in the search: configure passes, read the registers.
    """
    if width <= 8:
        r = run_pass(HistogramJob(data, lane_valid, width, 0, 0, 0, keep))
        return r.found_bin, r.ties, [r]
    hi = run_pass(HistogramJob(data, lane_valid, width, 8, 0, 0, keep))
    lo = run_pass(HistogramJob(data, lane_valid, width, 0, 1, hi.found_bin, hi.ties))
    return (hi.found_bin << 8) | lo.found_bin, lo.ties, [hi, lo]


def encode(job, **params):
    if int(job.width) != params["width"]:
        raise ValueError(f"job is for width {job.width}, the unit has width {params['width']}")
    return PassSpec(inputs=tile_inputs(job),
                    config={"shift": int(job.shift), "match_en": int(job.match_en),
                            "match_value": int(job.match_value), "keep": int(job.keep)})


BLOCK = Block(
    name="magnitude_histogram",
    doc="magnitude histogram and select walk: the k-th largest magnitude and its tie count",
    domain=DOMAIN,
    streams=(Stream("i_stream", tile_layout),),
    job=HistogramJob, result=HistogramResult, golden=run,
    component="hwprune.hw.magnitude_histogram:MagnitudeHistogram",
    encode=encode, decode=decoder(HistogramResult),
    config=(Port("shift", lambda p: (p["width"] - 1).bit_length()), Port("match_en", 1),
            Port("match_value", 8), Port("keep", COUNTER_WIDTH)),
    counters=(Port("found_bin", lambda p: histogram_bins(p["width"]).bit_length() - 1),
              Port("above", COUNTER_WIDTH), Port("ties", COUNTER_WIDTH),
              Port("counted", COUNTER_WIDTH)),
    finish=("select", "done"), busy="busy",
    bench="hwprune.sim.cocotb_tb.magnitude_histogram_tb",
    bridge_bit=1,
)
