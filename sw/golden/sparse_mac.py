"""Golden model of the sparse MAC unit (:class:`hwprune.hw.SparseMac`).

Transaction level: a compressed weight stream and a batch of activation vectors in, one integer
per row and vector out, plus the stall-free cycle count of the RTL's handshakes.
"""

from dataclasses import dataclass

import numpy as np

from ..compress import decode_stream
from ..hw.sparse_mac import PIPELINE_LATENCY

__all__ = ["SparseMacJob", "SparseMacResult", "stall_free_cycles", "make_job", "run"]


@dataclass
class SparseMacJob:
    """One pass of the unit: a weight stream, replayed for every activation vector."""

    value: np.ndarray   # int16, (beats, lanes)
    index: np.ndarray   # uint8, (beats, lanes)
    count: np.ndarray   # uint8, (beats,)
    end: np.ndarray     # bool, (beats, lanes): the slot ends its row
    acts: np.ndarray    # int16, (vectors, act_beats * lanes), zero padded
    fmt: int            # 0: unstructured, 1: N:M
    nm_n: int = 0
    nm_m: int = 0


@dataclass
class SparseMacResult:
    """What one pass returns.

    Attributes
    ----------
    out : ndarray of int64, shape (vectors, rows)
        The accumulators, exact.
    cycles : int
        Clock cycles from the first beat offered to the last result taken (the golden model gives
        the stall-free figure of :func:`stall_free_cycles`).
    """

    out: np.ndarray
    cycles: int


def make_job(compressed, acts):
    """A :class:`SparseMacJob` for ``compressed`` weights and activation codes ``(vectors, K)``."""
    acts = np.asarray(acts)
    vectors, k = acts.shape
    if k != compressed.shape[1]:
        raise ValueError(f"activations have {k} inputs per vector, the weights {compressed.shape[1]}")
    padded = np.zeros((vectors, compressed.act_beats * compressed.lanes), dtype=np.int16)
    padded[:, :k] = acts
    return SparseMacJob(value=compressed.value, index=compressed.index, count=compressed.count,
                        end=compressed.end, acts=padded, fmt=compressed.fmt_code,
                        nm_n=compressed.n, nm_m=compressed.m)


def stall_free_cycles(beats, act_beats, vectors, *, latency=PIPELINE_LATENCY):
    """Cycles of a pass without stalls: the RTL's two-bank handshake, vector by vector.

    Vector ``c`` loads into bank ``c % 2`` once that bank's previous vector has left S1; its
    weight beats start when its bank is full and the previous vector's beats are done.
    """
    if vectors == 0:
        return 0
    load_end = [act_beats - 1]       # edge of each vector's last activation beat
    first = [act_beats]              # edge of each vector's first weight beat leaving S1
    for c in range(1, vectors):
        start = load_end[-1] + 1
        if c >= 2:
            start = max(start, first[c - 2] + beats)
        load_end.append(start + act_beats - 1)
        first.append(max(first[-1] + beats, load_end[-1] + 1))
    return first[-1] + beats + latency - 1


def run(job, *, latency=PIPELINE_LATENCY):
    """Run one :class:`SparseMacJob` through the model."""
    acts = np.asarray(job.acts, dtype=np.int64)
    lanes = job.value.shape[1]
    if acts.ndim != 2 or acts.shape[1] % lanes:
        raise ValueError(f"acts must be (vectors, act_beats * {lanes}), not {acts.shape}")
    dense = decode_stream(job.value, job.index, job.count, job.end, fmt=int(job.fmt),
                          n=int(job.nm_n), m=int(job.nm_m), k=acts.shape[1])
    out = acts @ dense.T
    cycles = stall_free_cycles(job.value.shape[0], acts.shape[1] // lanes, acts.shape[0],
                               latency=latency)
    return SparseMacResult(out=out.astype(np.int64), cycles=cycles)
