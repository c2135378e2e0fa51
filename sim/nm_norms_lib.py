"""ctypes bindings of the verilated N:M selector and channel-norm accumulator (registered in
:data:`.verilator_lib.LIBRARIES`)."""

import abc
import ctypes

import numpy as np

from .build import shared_library

__all__ = ["NMSelectorLib", "ChannelNormsLib"]

_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")
_i64p = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")


class _Lib(abc.ABC):
    """One verilated block in ``lib<block>.so`` (functions ``<prefix>_*``), one instance each."""

    block = shim = prefix = None

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.path = shared_library(self.block, self.shim, lanes=lanes, width=width)
        lib = ctypes.CDLL(str(self.path))
        self._fn = lambda name: getattr(lib, f"{self.prefix}_{name}")
        self._fn("create").restype = ctypes.c_void_p
        self._fn("destroy").argtypes = [ctypes.c_void_p]
        self._fn("reset").argtypes = [ctypes.c_void_p]
        self._declare(lib)
        assert (self._fn("lanes")(), self._fn("width")()) == (lanes, width), "stale library"
        self._lib = lib
        self._handle = self._fn("create")()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._fn("destroy")(self._handle)
            self._handle = None

    def reset(self):
        self._fn("reset")(self._handle)

    @abc.abstractmethod
    def _declare(self, lib):
        """Set the ctypes signatures of the block's own functions."""


def _stall_args(stall_seed, in_stall, out_stall):
    return int(stall_seed), int(round(in_stall * 100)), int(round(out_stall * 100))


class NMSelectorLib(_Lib):
    """The N:M selector verilated into ``libnm_selector.so``."""

    block, shim, prefix = "nm_selector", "nm_selector.cpp", "nm"

    def _declare(self, lib):
        lib.nm_run.restype = ctypes.c_int64
        lib.nm_run.argtypes = [ctypes.c_void_p, _i16p, _u64p, ctypes.c_int64, ctypes.c_uint32,
                               ctypes.c_uint32, _i16p, _u8p, _i16p, _u8p, _u32p,
                               ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]

    def run_job(self, job, *, stall_seed=0, in_stall=0.0, out_stall=0.0):
        """Run a :class:`hwprune.golden.NMJob`; return a :class:`~hwprune.golden.NMResult`."""
        from hwprune.golden import NMResult
        from .verilator_lib import lane_bitmaps
        from hwprune.golden.nm_selector import check_job
        check_job(job)  # the golden model's checks of m, n and the shapes hold on every backend
        tiles = np.ascontiguousarray(job.data, dtype=np.int16)
        beats = tiles.shape[0]
        bitmaps = np.ascontiguousarray(lane_bitmaps(job.lane_valid))
        data, values = np.empty_like(tiles), np.empty_like(tiles)
        mask = np.empty(tiles.shape, dtype=np.uint8)
        index = np.empty(tiles.shape, dtype=np.uint8)
        counters = np.zeros(2, dtype=np.uint32)
        cycles = self._lib.nm_run(self._handle, tiles, bitmaps, beats, int(job.m) == 8,
                                  int(job.n), data, mask, values, index, counters,
                                  *_stall_args(stall_seed, in_stall, out_stall))
        if cycles < 0:
            raise RuntimeError("verilated N:M selector stopped making progress")
        return NMResult(data=data, mask=mask.view(bool), values=values, index=index,
                        beats=int(counters[0]), kept=int(counters[1]), cycles=int(cycles))


class ChannelNormsLib(_Lib):
    """The channel-norm accumulator verilated into ``libchannel_norms.so``."""

    block, shim, prefix = "channel_norms", "channel_norms.cpp", "cn"

    def _declare(self, lib):
        lib.cn_run.restype = ctypes.c_int64
        lib.cn_run.argtypes = [ctypes.c_void_p, _i16p, _u64p, _u8p, ctypes.c_int64,
                               ctypes.c_int64, _i64p, _i64p, _u32p, ctypes.c_uint32,
                               ctypes.c_uint32, ctypes.c_uint32]

    def run_job(self, job, *, stall_seed=0, in_stall=0.0, out_stall=0.0):
        """Run a :class:`hwprune.golden.ChannelJob`; return a
        :class:`~hwprune.golden.ChannelResult`."""
        from hwprune.golden import ChannelResult
        from .verilator_lib import lane_bitmaps
        tiles = np.ascontiguousarray(job.data, dtype=np.int16)
        last = np.ascontiguousarray(job.last, dtype=bool).view(np.uint8)
        beats = tiles.shape[0]
        if last.shape != (beats,) or (beats and not last[-1]):
            raise ValueError("the final beat must have last set (channels occupy whole beats)")
        channels = int(last.sum())
        bitmaps = np.ascontiguousarray(lane_bitmaps(job.lane_valid))
        l1 = np.zeros(channels, dtype=np.int64)
        l2 = np.zeros(channels, dtype=np.int64)
        counters = np.zeros(2, dtype=np.uint32)
        cycles = self._lib.cn_run(self._handle, tiles, bitmaps, last, beats, channels, l1, l2,
                                  counters, *_stall_args(stall_seed, in_stall, out_stall))
        if cycles < 0:
            raise RuntimeError("verilated channel-norm accumulator stopped making progress")
        assert counters[1] == channels
        return ChannelResult(l1=l1, l2=l2, beats=int(counters[0]), cycles=int(cycles))
