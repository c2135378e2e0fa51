"""ctypes bindings of the verilated engines (the host driver's fast path).

Each class loads the shared library that :func:`hwprune.sim.build.shared_library` built for its
parameters and moves whole numpy buffers per call: the C++ shim loops over the clock cycles.
"""

import ctypes
import time

import numpy as np

from .build import shared_library

__all__ = ["LIBRARIES", "ThresholdEngineLib", "SparseMacLib", "lane_bitmaps"]

_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")


def lane_bitmaps(lane_valid):
    """(beats, lanes) booleans -> one uint64 bitmap per beat (bit i: lane i)."""
    lane_valid = np.asarray(lane_valid, dtype=bool)
    beats, lanes = lane_valid.shape
    full = np.uint64((1 << lanes) - 1)
    bitmaps = np.full(beats, full, dtype=np.uint64)
    # Only padded beats (in practice the ragged tail) need the bit-by-bit conversion.
    partial = np.flatnonzero(~lane_valid.all(axis=1))
    if partial.size:
        weights = np.left_shift(np.uint64(1), np.arange(lanes, dtype=np.uint64))
        bitmaps[partial] = (lane_valid[partial].astype(np.uint64) * weights).sum(
            axis=1, dtype=np.uint64)
    return bitmaps


class ThresholdEngineLib:
    """The threshold engine verilated into ``libthreshold_engine.so``, one instance per object."""

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.path = shared_library("threshold_engine", "threshold_engine.cpp",
                                   lanes=lanes, width=width)
        lib = ctypes.CDLL(str(self.path))
        lib.te_create.restype = ctypes.c_void_p
        lib.te_destroy.argtypes = [ctypes.c_void_p]
        lib.te_reset.argtypes = [ctypes.c_void_p]
        lib.te_run.restype = ctypes.c_int64
        lib.te_run.argtypes = [ctypes.c_void_p, _i16p, _u64p, ctypes.c_int64, ctypes.c_uint32,
                               ctypes.c_uint32, _i16p, _u8p, _u32p, ctypes.c_uint32,
                               ctypes.c_uint32, ctypes.c_uint32]
        lib.te_raw_loop.restype = ctypes.c_int64
        lib.te_raw_loop.argtypes = [ctypes.c_void_p, _i16p, _u64p, ctypes.c_int64]
        assert (lib.te_lanes(), lib.te_width()) == (lanes, width), "stale library"
        self._lib = lib
        self._handle = lib.te_create()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.te_destroy(self._handle)
            self._handle = None

    def reset(self):
        self._lib.te_reset(self._handle)

    def run(self, tiles, lane_valid, threshold, tie_budget, *, stall_seed=0, in_stall=0.0,
            out_stall=0.0):
        """Stream one pass. Returns (data, mask, (beats, kept, ties_left), cycles)."""
        tiles = np.ascontiguousarray(tiles, dtype=np.int16)
        beats = tiles.shape[0]
        bitmaps = np.ascontiguousarray(lane_bitmaps(lane_valid))
        out = np.empty_like(tiles)
        keep = np.empty(tiles.shape, dtype=np.uint8)
        counters = np.zeros(3, dtype=np.uint32)
        cycles = self._lib.te_run(self._handle, tiles, bitmaps, beats, int(threshold),
                                  int(tie_budget), out, keep, counters, int(stall_seed),
                                  int(round(in_stall * 100)), int(round(out_stall * 100)))
        if cycles < 0:
            raise RuntimeError("verilated threshold engine stopped making progress")
        return out, keep.view(bool), tuple(int(c) for c in counters), cycles

    def run_job(self, job, **stalls):
        """Run a :class:`hwprune.golden.ThresholdJob`; return a :class:`~hwprune.golden.MaskResult`."""
        from hwprune.golden import MaskResult
        data, mask, (beats, kept, ties_left), cycles = self.run(
            job.data, job.lane_valid, job.threshold, job.tie_budget, **stalls)
        return MaskResult(data=data, mask=mask, beats=beats, kept=kept, ties_left=ties_left,
                          cycles=cycles)

    def raw_loop(self, tiles, lane_valid):
        """Time a bare C++ loop streaming ``tiles`` through the model (the benchmark's ceiling).

        Packing happens before the clock starts; returns (cycles, seconds).
        """
        tiles = np.ascontiguousarray(tiles, dtype=np.int16)
        bitmaps = np.ascontiguousarray(lane_bitmaps(lane_valid))
        packed = time.perf_counter()
        cycles = self._lib.te_raw_loop(self._handle, tiles, bitmaps, tiles.shape[0])
        return cycles, time.perf_counter() - packed


#: block name -> shared-library wrapper class (keyword parameters lanes, width)
LIBRARIES = {"threshold_engine": ThresholdEngineLib}

from .sparse_mac_lib import SparseMacLib  # noqa: E402  (registered here, defined in its module)

LIBRARIES["sparse_mac"] = SparseMacLib

from .histogram_lib import MagnitudeHistogramLib  # noqa: E402  (defined in its own module)

LIBRARIES["magnitude_histogram"] = MagnitudeHistogramLib

from .nm_norms_lib import ChannelNormsLib, NMSelectorLib  # noqa: E402  (own module)

LIBRARIES["nm_selector"] = NMSelectorLib
LIBRARIES["channel_norms"] = ChannelNormsLib
