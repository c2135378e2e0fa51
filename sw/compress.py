"""The compressed weight formats of the sparse MAC unit: the one definition, encoder and decoder.

A layer is a matrix ``W`` of integer codes, one row per output and one column per input, in the
unit's *reduction order* (:func:`reduction_matrix`): a Linear's ``in_features``; for a Conv2d,
kernel row, kernel column, then input channel fastest -- the layout of NVIDIA ASP's ``m4n2_1d``
and of the N:M selector's rows (:func:`hwprune.patterns.nm_rows`), so that every N:M group holds
``M`` input channels at one kernel position. For N:M the input channels of each kernel position are
zero-padded to a multiple of ``M`` (padding is never a real weight; its activations are 0).
Every format streams beats of ``lanes`` slots.

Every slot has an ``end`` bit: the row ends with that slot (results leave the unit in that order).

Unstructured (``fmt="unstructured"``, EIE-style relative indices)
    The kept (non-zero) weights of a row in ascending position; each slot stores its value and the
    number of zero weights skipped since the previous slot of the row (the first slot: since
    position 0), in :data:`INDEX_WIDTH` bits. A run of more than ``MAX_SKIP`` zeros is bridged by
    *padding slots* (value 0, index ``MAX_SKIP``, each covering ``MAX_SKIP + 1`` positions); a row
    without any non-zero is one padding slot (value 0, index 0). Rows follow each other slot after
    slot, so a beat may end one row and start the next: the stream takes ``ceil(slots / lanes)``
    beats, every beat full but the last (``count`` live slots, a prefix of the beat).

N:M (``fmt="n:m"``, as :mod:`hwprune` 's N:M selector emits it)
    The row is padded with zeros to a multiple of ``M`` and cut into groups of ``M`` consecutive
    weights. Each group keeps exactly ``N`` slots: the ``N`` largest magnitudes, the lower index
    winning ties (so a group with fewer than ``N`` non-zeros is filled with its first zeros), stored
    in ascending index order as (value, index within the group, ``log2(M)`` bits used of the
    index field). Rows follow each other group after group; a beat holds ``lanes // N`` whole
    groups (the last beat fewer). A weight matrix that is not N:M sparse is rejected, never
    silently changed.

Whoever streams the beats sets ``final`` on the matrix's last one (it frees the activation bank).
Activations are streamed as ``act_beats = ceil(padded_k / lanes)`` beats of ``lanes`` values, zero
padded, where ``padded_k`` is ``K`` rounded up to a multiple of ``M`` for N:M and ``K`` otherwise.
"""

import re
from dataclasses import dataclass

import numpy as np

from .contract.sparse_mac import FMT_NM, FMT_UNSTRUCTURED, INDEX_WIDTH, MAX_N, NM_M, decode_stream

__all__ = ["INDEX_WIDTH", "MAX_SKIP", "CompressedWeights", "parse_format",
           "compress", "compress_unstructured", "compress_nm", "nm_select", "nm_mask",
           "reduction_matrix", "reduction_vectors", "decode_stream"]

#: Longest run of zeros one slot can skip.
MAX_SKIP = 2 ** INDEX_WIDTH - 1


@dataclass
class CompressedWeights:
    """A weight matrix in one of the unit's compressed formats (see the module docstring)."""

    fmt: str                # "unstructured" or "n:m"
    n: int                  # N:M pattern; 0, 0 for unstructured
    m: int
    lanes: int
    shape: tuple            # (rows, K) of the dense matrix
    value: np.ndarray       # int16, (beats, lanes); dead slots are 0
    index: np.ndarray       # uint8, (beats, lanes); dead slots are 0
    count: np.ndarray       # uint8, (beats,): live slots, a prefix of the beat
    end: np.ndarray         # bool, (beats, lanes): the slot ends its row
    row_nnz: np.ndarray     # int64, (rows,): non-zero weights per row

    @property
    def beats(self):
        return int(self.value.shape[0])

    @property
    def rows(self):
        return int(self.shape[0])

    @property
    def nnz(self):
        return int(self.row_nnz.sum())

    @property
    def padded_k(self):
        k = self.shape[1]
        return -(-k // self.m) * self.m if self.fmt == "n:m" else k

    @property
    def act_beats(self):
        """Activation beats per vector."""
        return max(1, -(-self.padded_k // self.lanes))

    @property
    def fmt_code(self):
        return FMT_NM if self.fmt == "n:m" else FMT_UNSTRUCTURED

    @property
    def dense_beats(self):
        """Beats the same unit takes for the uncompressed matrix, rows packed like unstructured
        ones: ``ceil(rows * K / lanes)``."""
        return max(1, -(-self.rows * self.shape[1] // self.lanes))

    @property
    def ideal_beats(self):
        """``ceil(nnz / lanes)`` per row: the beats of a unit limited by non-zeros alone."""
        return int((-(-self.row_nnz // self.lanes)).sum())

    def decode(self):
        """The dense matrix (int64, ``rows x padded_k``) this stream stands for."""
        return decode_stream(self.value, self.index, self.count, self.end, fmt=self.fmt_code,
                             n=self.n, m=self.m, k=self.act_beats * self.lanes)[:, :self.padded_k]


def parse_format(fmt):
    """``"unstructured"`` or ``"N:M"`` -> (name, n, m); raise listing the valid forms."""
    if fmt == "unstructured":
        return "unstructured", 0, 0
    match = re.fullmatch(r"(\d+):(\d+)", fmt) if isinstance(fmt, str) else None
    if match:
        n, m = int(match[1]), int(match[2])
        if m in NM_M and 1 <= n < m and n <= MAX_N:
            return "n:m", n, m
    raise ValueError(f"format must be 'unstructured' or 'N:M' with M in {NM_M} and "
                     f"1 <= N < M (e.g. '2:4'), not {fmt!r}")


def _check_codes(codes, lanes):
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"weights must be a 2-D (rows, K) matrix, not shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"weights must be integer codes, not {codes.dtype}")
    if codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"weights must have at least one row and one column, not {codes.shape}")
    return codes             # read only: no int64 copy of a large matrix


def _pack_slots(entry_value, entry_index, entry_end, lanes):
    """Cut a slot sequence into beats of ``lanes`` (every beat full but the last)."""
    total = entry_value.size
    beats = max(1, -(-total // lanes))
    value = np.zeros(beats * lanes, dtype=np.int16)
    index = np.zeros(beats * lanes, dtype=np.uint8)
    end = np.zeros(beats * lanes, dtype=bool)
    value[:total], index[:total], end[:total] = entry_value, entry_index, entry_end
    count = np.full(beats, lanes, dtype=np.uint8)
    count[-1] = total - (beats - 1) * lanes
    return value.reshape(beats, lanes), index.reshape(beats, lanes), count, end.reshape(beats, lanes)


def compress_unstructured(codes, lanes):
    """Encode an integer matrix in the unstructured (relative index) format."""
    codes = _check_codes(codes, lanes)
    rows = codes.shape[0]
    nz_row, nz_col = np.nonzero(codes)         # row-major: ascending position within each row
    prev = np.empty_like(nz_col)
    prev[1:] = nz_col[:-1]
    first = np.ones(nz_col.size, dtype=bool)
    first[1:] = nz_row[1:] != nz_row[:-1]
    prev[first] = -1
    skip = nz_col - prev - 1
    pads = skip // (MAX_SKIP + 1)
    per_nz = pads + 1
    ends = np.cumsum(per_nz) - 1               # the slot of each non-zero, after its padding
    total = int(per_nz.sum())
    entry_value = np.zeros(total, dtype=np.int64)
    entry_index = np.full(total, MAX_SKIP, dtype=np.int64)
    entry_value[ends] = codes[nz_row, nz_col]
    entry_index[ends] = skip - pads * (MAX_SKIP + 1)
    entry_row = np.repeat(nz_row, per_nz)
    # An empty row is one padding slot; insert those in row order.
    empty = np.flatnonzero(np.bincount(entry_row, minlength=rows) == 0)
    if empty.size:
        at = np.searchsorted(entry_row, empty)
        entry_row = np.insert(entry_row, at, empty)
        entry_value = np.insert(entry_value, at, 0)
        entry_index = np.insert(entry_index, at, 0)
    entry_end = np.ones(entry_row.size, dtype=bool)
    entry_end[:-1] = entry_row[1:] != entry_row[:-1]
    value, index, count, end = _pack_slots(entry_value, entry_index, entry_end, lanes)
    return CompressedWeights("unstructured", 0, 0, lanes, tuple(codes.shape), value, index,
                             count, end, np.bincount(nz_row, minlength=rows).astype(np.int64))


def nm_select(groups, n):
    """Indices (ascending) of the ``n`` largest magnitudes in each group (last axis), lower wins.

    ``groups`` has shape ``(..., m)``; returns int64 ``(..., n)``.
    """
    mag = np.abs(np.asarray(groups, dtype=np.float64))
    order = np.argsort(-mag, axis=-1, kind="stable")[..., :n]
    return np.sort(order, axis=-1)


def reduction_matrix(weight, m=0):
    """A weight tensor as the unit's ``(out, K)`` matrix (see the module docstring).

    ``weight`` is ``(out, in)`` or ``(out, in, *kernel)``; with ``m`` the input channels of each
    kernel position are zero-padded to a multiple of ``m`` (a 2-D weight is left as it is: its
    single group run is padded at the end by :func:`compress_nm`).
    """
    w = np.asarray(weight)
    if w.ndim <= 2:
        return w.reshape(w.shape[0], -1)
    w = np.moveaxis(w, 1, -1)                          # (out, *kernel, in)
    c = w.shape[-1]
    if m and c % m:
        pad = np.zeros(w.shape[:-1] + (-(-c // m) * m - c,), dtype=w.dtype)
        w = np.concatenate([w, pad], axis=-1)
    return w.reshape(w.shape[0], -1)


def reduction_vectors(columns, channels, m=0):
    """im2col columns ``(vectors, in * kh * kw)`` in ``F.unfold`` order -> reduction order."""
    cols = np.asarray(columns)
    v = np.moveaxis(cols.reshape(cols.shape[0], channels, -1), 1, -1)   # (vectors, P, in)
    if m and channels % m:
        pad = np.zeros(v.shape[:-1] + (-(-channels // m) * m - channels,), dtype=v.dtype)
        v = np.concatenate([v, pad], axis=-1)
    return v.reshape(cols.shape[0], -1)


def nm_mask(weights, n, m):
    """N:M keep mask of a weight tensor: in each group of ``m`` consecutive weights along the
    input dimension (per kernel position for convolutions) keep the ``n`` largest ``|w|``, the
    lower index winning ties. Padding of a short group is never kept."""
    w = np.asarray(weights, dtype=np.float64)
    mat = reduction_matrix(w, m)
    k = mat.shape[1]
    groups = -(-k // m)
    padded = np.full((mat.shape[0], groups * m), -1.0)   # padding: below every real magnitude
    padded[:, :k] = np.abs(reduction_matrix(w, 0) if w.ndim <= 2 else mat)
    if w.ndim > 2 and w.shape[1] % m:                    # padded channels inside the matrix
        valid = reduction_matrix(np.ones(w.shape, dtype=bool), m)
        padded[:, :k][~valid] = -1.0
    order = np.argsort(-padded.reshape(mat.shape[0], groups, m), axis=-1, kind="stable")
    mask = np.zeros((mat.shape[0], groups, m), dtype=bool)
    np.put_along_axis(mask, order[..., :n], True, axis=2)
    mask = mask.reshape(mat.shape[0], -1)[:, :k] & (padded[:, :k] >= 0)
    if w.ndim <= 2:
        return mask.reshape(w.shape)
    valid = reduction_matrix(np.ones(w.shape, dtype=bool), m)
    back = mask[valid].reshape((w.shape[0],) + w.shape[2:] + (w.shape[1],))
    return np.moveaxis(back, -1, 1)


def compress_nm(codes, n, m, lanes):
    """Encode an N:M-sparse integer matrix in the N:M format; raise if it is not N:M sparse."""
    codes = _check_codes(codes, lanes)
    name, n, m = parse_format(f"{n}:{m}")
    if n > lanes:
        raise ValueError(f"an N:M group of N={n} does not fit a beat of {lanes} lanes")
    rows, k = codes.shape
    groups = -(-k // m)
    padded = np.zeros((rows, groups * m), dtype=np.int64)
    padded[:, :k] = codes
    grouped = padded.reshape(rows, groups, m)
    sel = nm_select(grouped, n)
    vals = np.take_along_axis(grouped, sel, axis=2)
    kept = np.count_nonzero(vals, axis=2)
    have = np.count_nonzero(grouped, axis=2)
    if (kept != have).any():
        r, g = np.argwhere(kept != have)[0]
        raise ValueError(f"weights are not {n}:{m} sparse: row {r}, inputs {g * m}..{g * m + m - 1}"
                         f" hold {have[r, g]} non-zeros (at most {n} allowed)")
    per_beat = lanes // n
    total = rows * groups
    beats = -(-total // per_beat)
    slots = np.zeros((beats * per_beat, n), dtype=np.int64)
    idx = np.zeros_like(slots)
    slots[:total] = vals.reshape(total, n)
    idx[:total] = sel.reshape(total, n)
    ends = np.zeros((beats * per_beat, n), dtype=bool)
    ends[groups - 1:total:groups, n - 1] = True          # the last slot of each row's last group
    value = np.zeros((beats, lanes), dtype=np.int16)
    index = np.zeros((beats, lanes), dtype=np.uint8)
    end = np.zeros((beats, lanes), dtype=bool)
    value[:, :per_beat * n] = slots.reshape(beats, per_beat * n)
    index[:, :per_beat * n] = idx.reshape(beats, per_beat * n)
    end[:, :per_beat * n] = ends.reshape(beats, per_beat * n)
    count = np.full(beats, per_beat * n, dtype=np.uint8)
    count[-1] = (total - (beats - 1) * per_beat) * n
    return CompressedWeights("n:m", n, m, lanes, (rows, k), value, index, count, end,
                             np.count_nonzero(codes, axis=1).astype(np.int64))


def compress(codes, lanes, fmt="unstructured"):
    """Encode ``codes`` (rows x K integers) in ``fmt``: ``"unstructured"`` or ``"N:M"``."""
    name, n, m = parse_format(fmt)
    if name == "unstructured":
        return compress_unstructured(codes, lanes)
    return compress_nm(codes, n, m, lanes)
