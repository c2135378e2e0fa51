"""Host-side compile kernels in C++ (``compile.cpp``): quantize and compress a whole weight
matrix in a pass or two over its buffer instead of numpy's many temporaries (a 4096 x 4096
Linear: tens of milliseconds, not a second).

They compute exactly :func:`hwprune.quant.quantize` (float32 weights, float32 arithmetic) and
:func:`hwprune.compress.compress_unstructured`; ``tests/test_native.py`` proves it. The library
is built once per machine with the C++ compiler (``$CXX``, else ``g++``) and cached like the
Verilator builds (:func:`hwprune.sim.build.native_library`).
"""

import ctypes
import functools
from pathlib import Path

import numpy as np

__all__ = ["quantize_compress", "NonFiniteWeights"]

SOURCE = Path(__file__).with_name("compile.cpp")


class NonFiniteWeights(ValueError):
    """The weights hold NaN or Inf (nothing was computed)."""


@functools.lru_cache(maxsize=None)
def _lib():
    from ..sim.build import load_library, native_library
    lib = load_library(native_library(SOURCE), lambda: native_library(SOURCE))
    p = ctypes.c_void_p
    i64 = ctypes.c_int64
    lib.hp_absmax_f32.argtypes = [p, i64, i64, p]
    lib.hp_absmax_f32.restype = ctypes.c_int
    lib.hp_quantize_f32.argtypes = [p, i64, i64, p, ctypes.c_int, ctypes.c_int, p, p, p]
    lib.hp_quantize_f32.restype = None
    lib.hp_slots.argtypes = [p, i64, p, i64, ctypes.c_int, ctypes.c_int, ctypes.c_int, p]
    lib.hp_slots.restype = i64
    lib.hp_emit_unstructured.argtypes = [p, i64, p, p, i64, ctypes.c_int, p, p, p]
    lib.hp_emit_unstructured.restype = None
    return lib


def _log2(n):
    if n < 1 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def quantize_compress(w, width, lanes, *, granularity="tensor", nm=(2, 4)):
    """Quantize a float32 matrix ``w`` (rows x K) to ``width``-bit codes and encode them in the
    unstructured format with ``lanes`` slots a beat.

    Returns ``(Quantized, CompressedWeights, nm_ok)``; ``nm_ok``: no aligned group of
    ``nm[1]`` inputs holds more than ``nm[0]`` non-zeros. :class:`NonFiniteWeights` (a
    ValueError) when ``w`` holds NaN or Inf (nothing is computed).
    """
    from ..compress import MAX_SKIP, CompressedWeights
    from ..quant import GRANULARITIES, Quantized
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim != 2 or not w.size:
        raise ValueError(f"weights must be a non-empty 2-D matrix, not shape {w.shape}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    lib = _lib()
    rows, k = w.shape
    qmax = 2 ** (width - 1) - 1
    amax = np.zeros(rows, dtype=np.float32)            # per row, in one pass over the cores
    bad = lib.hp_absmax_f32(_ptr(w), rows, k, _ptr(amax))
    if granularity == "tensor":
        top = amax.max()
        scale = np.asarray(float(top) / qmax if top > 0 else 1.0, dtype=np.float64)
    else:
        scale = np.where(amax > 0, amax.astype(np.float64) / qmax, 1.0).reshape(-1, 1)
    if bad:
        raise NonFiniteWeights("weights hold NaN or Inf")
    scale32 = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)   # 1 or rows values
    codes = np.empty((rows, k), dtype=np.int16)
    row_nnz = np.empty(rows, dtype=np.int64)
    pos = np.empty(rows * k, dtype=np.int32)     # only the pages the non-zeros need are touched
    lib.hp_quantize_f32(_ptr(w), rows, k, _ptr(scale32), int(granularity != "tensor"), qmax,
                        _ptr(codes), _ptr(pos), _ptr(row_nnz))
    skip_bits, nm_bits = _log2(MAX_SKIP + 1), _log2(nm[1])
    nm_ok = ctypes.c_int(0)
    total = lib.hp_slots(_ptr(pos), k, _ptr(row_nnz), rows, skip_bits, nm[0], nm_bits,
                         ctypes.byref(nm_ok))
    beats = max(1, -(-total // lanes))
    value = np.zeros(beats * lanes, dtype=np.int16)
    index = np.zeros(beats * lanes, dtype=np.uint8)
    end = np.zeros(beats * lanes, dtype=np.uint8)
    lib.hp_emit_unstructured(_ptr(codes), k, _ptr(pos), _ptr(row_nnz), rows, skip_bits,
                             _ptr(value), _ptr(index), _ptr(end))
    count = np.full(beats, lanes, dtype=np.uint8)
    count[-1] = total - (beats - 1) * lanes
    q = Quantized(codes=codes, scale=scale, width=width, granularity=granularity)
    cw = CompressedWeights("unstructured", 0, 0, lanes, (rows, k), value.reshape(beats, lanes),
                           index.reshape(beats, lanes), count,
                           end.view(bool).reshape(beats, lanes), row_nnz)
    return q, cw, bool(nm_ok.value)
