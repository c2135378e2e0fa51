"""Channel-norm accumulator: its description and golden model (RTL:
:mod:`hwprune.hw.channel_norms`).

The golden model is written transaction by transaction (a pass of beats in, one result per
channel out), not cycle by cycle.
"""

from dataclasses import dataclass

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream
from .layout import Field, Layout
from .params import Domain
from .threshold_engine import LANES, WIDTH, magnitude

__all__ = ["MAX_CHANNEL_WEIGHTS", "PIPELINE_LATENCY", "DOMAIN", "l1_width", "l2_width",
           "channel_tile_layout", "norm_layout", "ChannelJob", "ChannelResult", "check_job",
           "channel_norms",
           "run", "BLOCK"]

#: Weights per channel that the sums hold without overflow.
MAX_CHANNEL_WEIGHTS = 2**24
#: Register stages between a channel's last input beat and its output beat.
PIPELINE_LATENCY = 5
_WEIGHT_BITS = (MAX_CHANNEL_WEIGHTS - 1).bit_length()  # 24

DOMAIN = Domain("channel_norms", (LANES, WIDTH))


def l1_width(width):
    """Bits of the L1 sum: ``2**24 * 2**(width-1)`` must fit."""
    return width + _WEIGHT_BITS


def l2_width(width):
    """Bits of the L2 sum: ``2**24 * 2**(2*width-2)`` must fit."""
    return 2 * width - 1 + _WEIGHT_BITS


def channel_tile_layout(*, lanes, width):
    """One input beat: a tile, its lane bitmap, and ``last`` on a channel's final beat."""
    return Layout("channel_tile", [Field("data", width, lanes, signed=True),
                                   Field("lane_valid", 1, lanes), Field("last", 1)])


def norm_layout(*, lanes, width):
    """One output beat: the L1 and L2 norms of one channel."""
    return Layout("norm", [Field("l1", l1_width(width)), Field("l2", l2_width(width))])


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


def _check(tiles, valid, last):
    """The job's shapes, its final ``last``, and each channel's size; returns the channels'
    first beats."""
    if tiles.shape != valid.shape or tiles.ndim != 2 or last.shape != tiles.shape[:1]:
        raise ValueError(f"tiles and lane_valid must have shape (beats, lanes) and last "
                         f"(beats,), not {tiles.shape}, {valid.shape} and {last.shape}")
    beats = tiles.shape[0]
    if beats and not last[-1]:
        raise ValueError("the final beat must have last set (channels occupy whole beats)")
    if not beats:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    counts = np.add.reduceat(valid.sum(axis=1), starts)
    if counts.max() > MAX_CHANNEL_WEIGHTS:
        raise ValueError(f"a channel may hold at most {MAX_CHANNEL_WEIGHTS} weights, "
                         f"not {int(counts.max())}")
    return starts


def check_job(job):
    """Raise ValueError unless ``job`` is a valid :class:`ChannelJob` (every backend checks
    this)."""
    _check(np.asarray(job.data), np.asarray(job.lane_valid, dtype=bool),
           np.asarray(job.last, dtype=bool))


def channel_norms(tiles, lane_valid, last, *, latency=PIPELINE_LATENCY):
    """Model one pass of :class:`hwprune.hw.ChannelNorms`; return a :class:`ChannelResult`."""
    tiles = np.asarray(tiles)
    valid = np.asarray(lane_valid, dtype=bool)
    last = np.asarray(last, dtype=bool)
    starts = _check(tiles, valid, last)
    beats = tiles.shape[0]
    mag = np.where(valid, magnitude(tiles), 0).astype(np.int64)
    if not beats:
        empty = np.zeros(0, dtype=np.int64)
        return ChannelResult(l1=empty, l2=empty.copy(), beats=0, cycles=0)
    l1 = np.add.reduceat(mag.sum(axis=1), starts)
    l2 = np.add.reduceat((mag * mag).sum(axis=1), starts)
    return ChannelResult(l1=l1.astype(np.int64), l2=l2.astype(np.int64), beats=beats,
                         cycles=beats + latency)


def run(job, *, latency=PIPELINE_LATENCY):
    """Run one :class:`ChannelJob` through the model."""
    return channel_norms(job.data, job.lane_valid, job.last, latency=latency)


def encode(job, **params):
    last = np.asarray(job.last, dtype=bool)
    beats = np.asarray(job.data).shape[0]
    if last.shape != (beats,) or (beats and not last[-1]):
        raise ValueError("the final beat must have last set (channels occupy whole beats)")
    return PassSpec(inputs={"i_stream": ({"data": job.data, "lane_valid": job.lane_valid,
                                          "last": last}, beats, 1)},
                    config={}, items=int(last.sum()))


def decode(job, outputs, counters, cycles, **params):
    channels = int(np.asarray(job.last, dtype=bool).sum())
    if counters["channels"] != channels:
        raise RuntimeError(f"the channel-norm unit counted {counters['channels']} channels, "
                           f"the job has {channels}")
    return ChannelResult(l1=outputs["l1"][:, 0].astype(np.int64),
                         l2=outputs["l2"][:, 0].astype(np.int64), beats=counters["beats"],
                         cycles=cycles)


BLOCK = Block(
    name="channel_norms",
    doc="L1 and L2 norms per output channel (channel-pruning importance)",
    domain=DOMAIN,
    streams=(Stream("i_stream", channel_tile_layout), Stream("o_stream", norm_layout, "out")),
    job=ChannelJob, result=ChannelResult, golden=run,
    component="hwprune.hw.channel_norms:ChannelNorms",
    encode=encode, decode=decode,
    counters=(Port("beats", COUNTER_WIDTH), Port("channels", COUNTER_WIDTH)),
    clear="clear",
    bench="hwprune.sim.cocotb_tb.channel_norms_tb",
    bridge_bit=3,
)
