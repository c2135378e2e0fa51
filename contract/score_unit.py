"""Score unit: Wanda's ``|w| * s`` in fixed point, the engine's multiplier stage (RTL:
:mod:`hwprune.hw.score_unit`).

Activation-aware pruning (Wanda, Sun et al. 2023) ranks weight ``W[i, j]`` by
``|W[i, j]| * s[j]``, where ``s[j]`` is the calibrated L2 norm of input feature ``j``
(:func:`hwprune.calibrate`). The engine computes it per lane: every beat carries ``lanes`` signed
``width``-bit weight codes and, beside each, the unsigned ``width``-bit code of its column's
scale; the unit returns

    ``score = (|w| * s) >> width``     (``|w| <= 2**(width-1)``, ``s <= 2**width - 1``)

truncated (the rounding is a floor), so ``score <= 2**(width-1) - 1``: a non-negative
``width``-bit code that the magnitude histogram, the threshold engine, the N:M selector and the
row blocks rank exactly as they rank weight codes. Padding lanes score 0. Scale codes are
:func:`scale_codes` of the norms: ``round(s / top * (2**width - 1))`` with ``top`` the largest
norm of the comparison group's tensors (a layer's own, or every tensor's for global scope).
Every backend computes exactly this (the golden model below is the definition).
"""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream, decoder
from .layout import Field, Layout
from .params import Domain
from .threshold_engine import LANES, WIDTH, magnitude, tile_layout

__all__ = ["PIPELINE_LATENCY", "DOMAIN", "score_tile_layout", "ScoreJob", "ScoreResult",
           "scale_codes", "score_codes", "run", "BLOCK"]

#: Cycles beyond one per beat, from the first input beat offered to the last score taken.
PIPELINE_LATENCY = 2

DOMAIN = Domain("score_unit", (LANES, WIDTH))


def score_tile_layout(*, lanes, width):
    """One input beat: ``lanes`` weight codes, their columns' scale codes, the lane bitmap."""
    return Layout("score_tile", [Field("data", width, lanes, signed=True),
                                 Field("scale", width, lanes),
                                 Field("lane_valid", 1, lanes)])


def scale_codes(norms, width, top=None):
    """Unsigned ``width``-bit codes of non-negative ``norms``: ``round(s / top * (2**width-1))``
    (``top``: the largest norm by default; all-zero norms give all-zero codes)."""
    norms = np.asarray(norms, dtype=np.float64)
    if norms.size and (not np.isfinite(norms).all() or norms.min() < 0):
        raise ValueError("scales must be finite and non-negative")
    top = float(norms.max()) if top is None and norms.size else float(top or 0.0)
    if top <= 0:
        return np.zeros(norms.shape, dtype=np.int64)
    if norms.size and norms.max() > top * (1 + 1e-12):
        raise ValueError(f"a scale ({norms.max()}) exceeds the top it is coded against ({top})")
    full = (1 << width) - 1
    return np.minimum(np.rint(norms / top * full), full).astype(np.int64)


def score_codes(data, scale, lane_valid, width):
    """The definition: ``(|w| * s) >> width`` per valid lane, 0 on padding lanes (int16)."""
    product = magnitude(data).astype(np.int64) * np.asarray(scale, dtype=np.int64)
    return np.where(np.asarray(lane_valid, dtype=bool), product >> width, 0).astype(np.int16)


@dataclass
class ScoreJob:
    """One pass of the score unit: weight codes, scale codes, and the lane bitmap."""

    data: np.ndarray        # int16 (beats, lanes)
    scale: np.ndarray       # int64/uint (beats, lanes), 0 .. 2**width - 1
    lane_valid: np.ndarray  # bool (beats, lanes)
    width: int


@dataclass
class ScoreResult:
    data: np.ndarray        # int16 (beats, lanes): the scores, 0 .. 2**(width-1) - 1
    lane_valid: np.ndarray  # bool (beats, lanes), as sent
    beats: int
    cycles: int             # stall-free: beats + PIPELINE_LATENCY


def check_job(job, width=None):
    width = int(job.width) if width is None else width
    data, scale = np.asarray(job.data), np.asarray(job.scale)
    if data.shape != scale.shape or data.shape != np.shape(job.lane_valid) or data.ndim != 2:
        raise ValueError(f"data, scale and lane_valid must all have shape (beats, lanes), not "
                         f"{data.shape}, {scale.shape} and {np.shape(job.lane_valid)}")
    if scale.size and (scale.min() < 0 or scale.max() >= 1 << width):
        raise ValueError(f"scale codes must be {width}-bit unsigned (0 to {(1 << width) - 1})")


def run(job):
    """Run one :class:`ScoreJob` through the model."""
    check_job(job)
    beats = np.asarray(job.data).shape[0]
    return ScoreResult(data=score_codes(job.data, job.scale, job.lane_valid, int(job.width)),
                       lane_valid=np.asarray(job.lane_valid, dtype=bool).copy(), beats=beats,
                       cycles=beats + PIPELINE_LATENCY if beats else 0)


def encode(job, **params):
    if int(job.width) != params["width"]:
        raise ValueError(f"job is for width {job.width}, the unit has width {params['width']}")
    check_job(job)
    beats = np.asarray(job.data).shape[0]
    return PassSpec(inputs={"i_stream": ({"data": job.data, "scale": job.scale,
                                          "lane_valid": job.lane_valid}, beats, 1)},
                    config={}, items=beats)


BLOCK = Block(
    name="score_unit",
    doc="Wanda scores |w|*s per lane in fixed point (the engine's multiplier stage)",
    domain=DOMAIN,
    streams=(Stream("i_stream", score_tile_layout), Stream("o_stream", tile_layout, "out")),
    job=ScoreJob, result=ScoreResult, golden=run,
    component="hwprune.hw.score_unit:ScoreUnit",
    encode=encode, decode=decoder(ScoreResult, data=np.int16, lane_valid=bool),
    counters=(Port("beats", COUNTER_WIDTH),),
    clear="clear",
)
