"""ctypes binding of the verilated sparse MAC unit (registered in :data:`.verilator_lib.LIBRARIES`)."""

import ctypes

import numpy as np
from amaranth.utils import bits_for, exact_log2

from .build import shared_library

__all__ = ["SparseMacLib"]

_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_i64p = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")


class SparseMacLib:
    """The sparse MAC unit verilated into ``libsparse_mac.so``, one instance per object."""

    def __init__(self, *, lanes, width, act_width=None, max_k=None):
        from hwprune.hw.sparse_mac import (DEFAULT_MAX_K, INDEX_WIDTH, accumulator_width,
                                           check_mac_params)
        act_width = width if act_width is None else act_width
        max_k = DEFAULT_MAX_K if max_k is None else max_k
        check_mac_params(lanes=lanes, width=width, act_width=act_width, max_k=max_k)
        self.lanes, self.width, self.act_width, self.max_k = lanes, width, act_width, max_k
        self.acc_width = accumulator_width(width, act_width, max_k)
        params = {"lanes": lanes, "width": width}
        # Only non-default parameters go into the build key, so the default build is shared
        # with the generic backends (which pass lanes and width only).
        if act_width != width:
            params["act_width"] = act_width
        if max_k != DEFAULT_MAX_K:
            params["max_k"] = max_k
        defines = {"ACT_WIDTH": act_width, "MAX_K": max_k, "COUNT_BITS": bits_for(lanes),
                   "ACC_WIDTH": self.acc_width, "INDEX_WIDTH": INDEX_WIDTH}
        self.path = shared_library("sparse_mac", "sparse_mac.cpp", defines=defines, **params)
        lib = ctypes.CDLL(str(self.path))
        lib.sm_create.restype = ctypes.c_void_p
        lib.sm_destroy.argtypes = [ctypes.c_void_p]
        lib.sm_reset.argtypes = [ctypes.c_void_p]
        lib.sm_run.restype = ctypes.c_int64
        lib.sm_run.argtypes = [ctypes.c_void_p, _i16p, _u8p, _u8p, _u64p, ctypes.c_int64, _i16p,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint32,
                               ctypes.c_uint32, ctypes.c_int64, _i64p, ctypes.c_uint32,
                               ctypes.c_uint32, ctypes.c_uint32]
        got = (lib.sm_lanes(), lib.sm_width(), lib.sm_act_width(), lib.sm_max_k())
        assert got == (lanes, width, act_width, max_k), "stale library"
        self._lib = lib
        self._handle = lib.sm_create()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.sm_destroy(self._handle)
            self._handle = None

    def reset(self):
        self._lib.sm_reset(self._handle)

    def run_job(self, job, *, stall_seed=0, in_stall=0.0, out_stall=0.0):
        """Run a :class:`hwprune.golden.SparseMacJob`; return a :class:`~hwprune.golden.SparseMacResult`."""
        from hwprune.golden import SparseMacResult
        value = np.ascontiguousarray(job.value, dtype=np.int16)
        beats, lanes = value.shape
        if lanes != self.lanes:
            raise ValueError(f"job has {lanes} lanes, the unit {self.lanes}")
        acts = np.ascontiguousarray(job.acts, dtype=np.int16)
        vectors, k = acts.shape
        if k % lanes or k > self.max_k:
            raise ValueError(f"activation vectors of {k} values do not fit the unit "
                             f"(a multiple of {lanes}, at most max_k = {self.max_k})")
        end = np.asarray(job.end, dtype=bool)
        rows = int(end.sum())
        bitmaps = np.ascontiguousarray(
            (end.astype(np.uint64) << np.arange(lanes, dtype=np.uint64)).sum(axis=1,
                                                                             dtype=np.uint64))
        out = np.zeros(vectors * rows, dtype=np.int64)
        m_log2 = exact_log2(int(job.nm_m)) if int(job.fmt) else 0
        cycles = self._lib.sm_run(
            self._handle, value, np.ascontiguousarray(job.index, dtype=np.uint8),
            np.ascontiguousarray(job.count, dtype=np.uint8), bitmaps, beats, acts, k // lanes,
            vectors, int(job.fmt), int(job.nm_n), m_log2, rows, out, int(stall_seed),
            int(round(in_stall * 100)), int(round(out_stall * 100)))
        if cycles < 0:
            self.reset()
            raise RuntimeError("verilated sparse MAC unit stopped making progress")
        return SparseMacResult(out=out.reshape(vectors, rows), cycles=int(cycles))
