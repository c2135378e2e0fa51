"""Sparse MAC unit: its description, its compressed formats' semantics and its golden model
(RTL: :mod:`hwprune.hw.sparse_mac`; the encoders are in :mod:`hwprune.compress`).

Transaction level: a compressed weight stream and a batch of activation vectors in, one integer
per row and vector out, plus the stall-free cycle count of the RTL's handshakes.
"""

from dataclasses import dataclass

import numpy as np

from .block import Block, PassSpec, Port, Stream
from .layout import Field, Layout
from .params import Domain, Param

__all__ = ["SUPPORTED_WIDTHS", "LANE_COUNTS", "INDEX_WIDTH", "DEFAULT_MAX_K", "MAX_K_RANGE",
           "NM_M", "MAX_N", "FMT_UNSTRUCTURED", "FMT_NM", "PIPELINE_LATENCY", "BANK_FREE_DELAY",
           "DOMAIN",
           "accumulator_width", "check_mac_params", "weight_beat_layout", "act_beat_layout",
           "result_layout", "decode_stream", "SparseMacJob", "SparseMacResult",
           "stall_free_cycles", "make_job", "run", "BLOCK", "BRIDGE_MACS", "bridge_mac",
           "program_beat_bytes", "program_bytes", "job_rows", "run_slot", "sm_config", "run_frame",
           "run_results"]

SUPPORTED_WIDTHS = (4, 8, 16)
#: Lane counts: a power of two, so that a position splits into bank row and lane by bit slicing.
LANE_COUNTS = (4, 8, 16, 32, 64)
#: Bits of each slot's index field.
INDEX_WIDTH = 8
#: Longest row (inputs per output) of the default build; the Fmax/area cost is the bank depth.
DEFAULT_MAX_K = 4096
MAX_K_RANGE = (16, 65536)
#: N:M patterns: M in NM_M, 1 <= N < M.
NM_M = (4, 8)
MAX_N = 7
FMT_UNSTRUCTURED, FMT_NM = 0, 1
#: Stall-free, a pass takes ``F + B + PIPELINE_LATENCY - 1`` cycles from the first beat offered to
#: the last result taken, where ``F`` is the cycle the last vector's first weight beat leaves S1
#: and ``B`` the weight beats per vector (:func:`stall_free_cycles`).
PIPELINE_LATENCY = 9
#: Clocks from a weight beat leaving S1 to its bank read (the scan's two stages): a bank takes
#: the next vector's activations only after its vector's last read.
BANK_FREE_DELAY = 2

DOMAIN = Domain("sparse_mac", (
    Param("lanes", choices=LANE_COUNTS, doc="weight slots (multipliers) per beat"),
    Param("width", choices=SUPPORTED_WIDTHS, doc="bits per weight"),
    Param("act_width", choices=SUPPORTED_WIDTHS, default_from="width",
          doc="bits per activation (default: width)"),
    Param("max_k", lo=MAX_K_RANGE[0], hi=MAX_K_RANGE[1], power_of_two=True,
          default=DEFAULT_MAX_K, doc="longest row (activation bank depth)"),
), rules=((lambda p: p["max_k"] >= 2 * p["lanes"], "max_k must be at least 2 * lanes"),))


def _log2(n):
    return n.bit_length() - 1


def _bits_for(n):
    return max(1, int(n).bit_length())


def accumulator_width(width, act_width, max_k):
    """Signed bits of the accumulator and of each output: ``width + act_width + log2(max_k)``."""
    return width + act_width + _log2(max_k)


def check_mac_params(*, lanes, width, act_width=None, max_k=None):
    """The unit's domain check (:data:`DOMAIN`); returns the resolved parameters."""
    return DOMAIN.check(lanes=lanes, width=width, act_width=act_width, max_k=max_k)


def weight_beat_layout(*, lanes, width, act_width=None, max_k=None):
    """One compressed weight beat: ``lanes`` (value, index) slots, the live-slot count, a row-end
    bit per slot and ``final`` on the matrix's last beat."""
    return Layout("weight_beat", [Field("value", width, lanes, signed=True),
                                  Field("index", INDEX_WIDTH, lanes),
                                  Field("count", _bits_for(lanes)), Field("end", 1, lanes),
                                  Field("final", 1)])


def act_beat_layout(*, lanes, width, act_width, max_k=None):
    """``lanes`` consecutive activations of one vector; ``last`` on the vector's final beat."""
    return Layout("act_beat", [Field("data", act_width, lanes, signed=True), Field("last", 1)])


def result_layout(*, lanes, width, act_width, max_k):
    """One output beat: the results of the rows that end in one weight beat, in slot order."""
    return Layout("result", [Field("value", accumulator_width(width, act_width, max_k), lanes,
                                   signed=True), Field("valid", 1, lanes)])


def decode_stream(value, index, count, end, *, fmt, n=0, m=0, k):
    """Decode a beat stream back to the dense matrix it encodes (int64, ``rows x k``).

    This is the format's semantics, used by the golden model: raises if a slot lands at or beyond
    position ``k`` (the activations streamed per vector), the stream does not end a row on its
    last slot, or N:M beats or rows do not hold whole groups.
    """
    value = np.asarray(value, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    end = np.asarray(end, dtype=bool)
    beats, lanes = value.shape
    if (count > lanes).any():
        raise ValueError(f"a beat has more than {lanes} live slots")
    live = np.arange(lanes) < count[:, None]
    slot_beat, slot_lane = np.nonzero(live)
    slot_end = end[slot_beat, slot_lane]
    if slot_end.size == 0 or not slot_end[-1]:
        raise ValueError("a weight stream must hold at least one slot and end a row on its last")
    rows = int(slot_end.sum())
    row = np.concatenate([[0], np.cumsum(slot_end)[:-1]]).astype(np.int64)
    if fmt == FMT_UNSTRUCTURED:
        steps = index[slot_beat, slot_lane] + 1
        ends = np.concatenate([[0], np.cumsum(steps)])   # ends[i]: steps before slot i
        row_first = np.searchsorted(row, np.arange(rows))
        pos = ends[1:] - 1 - ends[row_first][row]
    else:
        slot = np.arange(row.size)
        row_first = np.searchsorted(row, np.arange(rows))
        rank = slot - row_first[row]
        if (count % n).any() or (np.bincount(row, minlength=rows) % n).any() or (end & ~live).any():
            raise ValueError(f"N:M beats and rows must hold whole groups of N = {n} slots")
        if (index[slot_beat, slot_lane] >= m).any():
            raise ValueError(f"an N:M index is not below M = {m}")
        pos = (rank // n) * m + index[slot_beat, slot_lane]
    if pos.size and pos.max() >= k:
        raise ValueError(f"a slot lands at position {int(pos.max())}, beyond the {k} "
                         f"activations of a vector")
    dense = np.zeros((rows, k), dtype=np.int64)
    np.add.at(dense, (row, pos), value[slot_beat, slot_lane])
    return dense



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

    Vector ``c`` loads into bank ``c % 2`` once that bank's previous vector's last beat made
    its bank read (:data:`BANK_FREE_DELAY` clocks after it left S1); its weight beats start
    when its bank is full and the previous vector's beats are done.
    """
    if vectors == 0:
        return 0
    load_end = [act_beats - 1]       # edge of each vector's last activation beat
    first = [act_beats]              # edge of each vector's first weight beat leaving S1
    for c in range(1, vectors):
        start = load_end[-1] + 1
        if c >= 2:
            start = max(start, first[c - 2] + beats + BANK_FREE_DELAY)
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


def encode(job, **params):
    lanes, max_k = params["lanes"], params["max_k"]
    value = np.asarray(job.value)
    beats, job_lanes = value.shape
    if job_lanes != lanes:
        raise ValueError(f"job has {job_lanes} lanes, the unit {lanes}")
    acts = np.asarray(job.acts)
    vectors, k = acts.shape
    if k % lanes or k > max_k:
        raise ValueError(f"activation vectors of {k} values do not fit the unit "
                         f"(a multiple of {lanes}, at most max_k = {max_k})")
    end = np.asarray(job.end, dtype=bool)
    act_beats = k // lanes
    final = np.zeros(beats, dtype=bool)
    if beats:
        final[-1] = True
    last = np.zeros((vectors, act_beats), dtype=bool)
    if act_beats:
        last[:, -1] = True
    fmt = int(job.fmt)
    return PassSpec(
        inputs={"w_stream": ({"value": value, "index": job.index, "count": job.count,
                              "end": end, "final": final}, beats, vectors),
                "a_stream": ({"data": acts.reshape(vectors * act_beats, lanes),
                              "last": last.reshape(-1)}, vectors * act_beats, 1)},
        config={"fmt": fmt, "nm_n": int(job.nm_n),
                "nm_m_log2": _log2(int(job.nm_m)) if fmt else 0},
        items=vectors * int(end.sum()))


def decode(job, outputs, counters, cycles, **params):
    vectors = np.asarray(job.acts).shape[0]
    rows = job_rows(job)
    results = outputs["value"][outputs["valid"].astype(bool)].astype(np.int64)
    return SparseMacResult(out=results[:vectors * rows].reshape(vectors, rows), cycles=cycles)


# --- behind the UART bridge (docs/uart_protocol.md: SM_CONFIG, SM_LOAD, SM_RUN, SM_STATUS) -----

#: The unit a bridge holds, per lane count: its longest row (``max_k``) and the weight beats its
#: program memory holds (``beats``). A job with more beats, or more results a vector than a
#: frame carries, runs in groups of whole rows (the host splits it).
BRIDGE_MACS = {4: {"max_k": 1024, "beats": 2048},
               8: {"max_k": 1024, "beats": 2048},
               16: {"max_k": 1024, "beats": 1024}}
#: Bytes of a result in an SM_RUN answer (a signed little-endian 32-bit value).
RESULT_BYTES = 4


def bridge_mac(lanes, width):
    """``(params, beats)``: the parameters of the unit a bridge of ``lanes`` x ``width`` holds
    and the weight beats it stores. ValueError where the bridge holds none."""
    if lanes not in BRIDGE_MACS or width > 8:
        raise ValueError(f"no sparse MAC behind a bridge of lanes={lanes}, width={width} "
                         f"(lanes {sorted(BRIDGE_MACS)}, width at most 8: results travel as "
                         f"32-bit values)")
    spec = BRIDGE_MACS[lanes]
    params = check_mac_params(lanes=lanes, width=width, max_k=spec["max_k"])
    assert accumulator_width(params["width"], params["act_width"], params["max_k"]) <= 32
    return params, spec["beats"]


def program_beat_bytes(lanes, width):
    """Bytes of one weight beat in an SM_LOAD frame: the weight beat layout packed, cut to
    whole bytes."""
    return -(-weight_beat_layout(lanes=lanes, width=width).size // 8)


def program_bytes(job, *, lanes, width):
    """The job's weight stream as SM_LOAD wire bytes: ``(beats, bytes a beat)`` uint8."""
    value = np.asarray(job.value)
    beats = value.shape[0]
    final = np.zeros(beats, dtype=bool)
    final[-1] = True
    layout = weight_beat_layout(lanes=lanes, width=width)
    words = layout.pack({"value": value, "index": job.index, "count": job.count,
                         "end": np.asarray(job.end, dtype=bool), "final": final}, beats)
    return np.ascontiguousarray(words.view(np.uint8).reshape(beats, -1)
                                [:, :program_beat_bytes(lanes, width)])


def job_rows(job):
    """Rows (results a vector) of a :class:`SparseMacJob`: the slots that end a row."""
    return int(np.asarray(job.end, dtype=bool).sum())


def run_slot(job):
    """32-bit values a vector's slot takes in an SM_RUN frame: room for its activations (a
    byte each) and for its results."""
    return max(job_rows(job), -(-np.asarray(job.acts).shape[1] // RESULT_BYTES))


def sm_config(job, *, lanes, new_program=False):
    """The SM_CONFIG payload that runs ``job`` (or, ``new_program``, that starts its load)."""
    import struct
    fmt = int(job.fmt)
    form = fmt | (int(job.nm_n) if fmt else 0) << 1 | (_log2(int(job.nm_m)) if fmt else 0) << 4
    return struct.pack("<HHHBB", np.asarray(job.acts).shape[1] // lanes, job_rows(job),
                       run_slot(job), int(bool(new_program)), form)


def run_frame(job):
    """The SM_RUN payload of the job's activation vectors: a slot each, the activations first
    (a signed byte each), zeros after."""
    acts = np.asarray(job.acts)
    frame = np.zeros((acts.shape[0], run_slot(job) * RESULT_BYTES), dtype=np.uint8)
    frame[:, :acts.shape[1]] = acts.astype(np.int8).view(np.uint8)
    return frame


def run_results(job, answer, vectors):
    """The results (vectors x rows, int64) in an SM_RUN answer's bytes (status byte left off)."""
    values = np.frombuffer(bytes(answer), dtype="<i4").reshape(vectors, run_slot(job))
    return values[:, :job_rows(job)].astype(np.int64)


def _defines(p):
    return {"ACT_WIDTH": p["act_width"], "MAX_K": p["max_k"]}


BLOCK = Block(
    name="sparse_mac",
    doc="matrix-vector products over a compressed weight stream (unstructured or N:M)",
    domain=DOMAIN,
    streams=(Stream("w_stream", weight_beat_layout), Stream("a_stream", act_beat_layout),
             Stream("o_stream", result_layout, "out", items="valid")),
    job=SparseMacJob, result=SparseMacResult, golden=run,
    component="hwprune.hw.sparse_mac:SparseMac",
    encode=encode, decode=decode,
    config=(Port("fmt", 1), Port("nm_n", 3), Port("nm_m_log2", 2)),
    bench="hwprune.sim.cocotb_tb.sparse_mac_tb",
    defines=_defines,
    bridge_bit=4,
)
