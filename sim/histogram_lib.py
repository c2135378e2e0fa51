"""ctypes binding of the verilated magnitude histogram / radix select."""

import ctypes

import numpy as np

from .build import shared_library
from .verilator_lib import lane_bitmaps

__all__ = ["MagnitudeHistogramLib"]

_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")


class MagnitudeHistogramLib:
    """The histogram unit verilated into ``libmagnitude_histogram.so``; one pass per call."""

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.path = shared_library("magnitude_histogram", "magnitude_histogram.cpp",
                                   lanes=lanes, width=width)
        lib = ctypes.CDLL(str(self.path))
        lib.mh_create.restype = ctypes.c_void_p
        lib.mh_destroy.argtypes = [ctypes.c_void_p]
        lib.mh_run.restype = ctypes.c_int64
        u32 = ctypes.c_uint32
        lib.mh_run.argtypes = [ctypes.c_void_p, _i16p, _u64p, ctypes.c_int64, u32, u32, u32, u32,
                               _u32p, u32, u32]
        assert (lib.mh_lanes(), lib.mh_width()) == (lanes, width), "stale library"
        self._lib = lib
        self._handle = lib.mh_create()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.mh_destroy(self._handle)
            self._handle = None

    def run_job(self, job, *, stall_seed=0, in_stall=0.0, out_stall=0.0):
        """Run a :class:`hwprune.golden.HistogramJob` (the unit has no output stream, so
        ``out_stall`` does not apply)."""
        from hwprune.golden import HistogramResult
        data = np.ascontiguousarray(job.data, dtype=np.int16)
        bitmaps = np.ascontiguousarray(lane_bitmaps(job.lane_valid))
        out = np.zeros(4, dtype=np.uint32)
        cycles = self._lib.mh_run(self._handle, data, bitmaps, data.shape[0], job.shift,
                                  job.match_en, job.match_value, job.keep, out, int(stall_seed),
                                  int(round(in_stall * 100)))
        if cycles < 0:
            raise RuntimeError("verilated magnitude histogram stopped making progress")
        return HistogramResult(found_bin=int(out[0]), above=int(out[1]), ties=int(out[2]),
                               counted=int(out[3]), cycles=int(cycles))
