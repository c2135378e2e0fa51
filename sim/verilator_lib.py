"""ctypes bindings of the verilated blocks (the host driver's fast path).

:class:`BlockLib` is the one ctypes lifecycle (load the shared library that
:func:`hwprune.sim.build.shared_library` built, check it is the one asked for, create, reset and
destroy its model). :class:`StreamLib` runs any stream block through the one C++ stream-pass
template (``sim/shim/stream_pass.cpp``): the block's description (:mod:`hwprune.contract`) gives
the generated port header, the payload layouts the host packs whole buffers with, and the
adapter between jobs and streams. :data:`LIBRARIES` is derived from the list of blocks.
"""

import copy
import ctypes
import time

import numpy as np

from ..contract.blocks import STREAM_BLOCKS
from ..contract.blocks import block as _block
from .build import load_library, shared_library
from .shim_gen import stream_header

__all__ = ["BlockLib", "StreamLib", "LIBRARIES", "library"]

_i64p = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")


class BlockLib:
    """One verilated block in a shared library exporting ``<prefix>_create`` / ``_destroy`` /
    ``_reset``; one model instance per object. Subclasses declare their own functions in
    :meth:`_declare` and call :meth:`_load` from ``__init__``."""

    prefix = None

    def _load(self, build):
        """Load the library ``build()`` returns (rebuilt once if it fails to load)."""
        self.path = build()
        lib = load_library(self.path, build)
        self._fn = lambda name: getattr(lib, f"{self.prefix}_{name}")
        self._fn("create").restype = ctypes.c_void_p
        self._fn("destroy").argtypes = [ctypes.c_void_p]
        self._fn("reset").argtypes = [ctypes.c_void_p]
        self._declare(lib)
        self._lib = lib
        self._handle = self._fn("create")()

    def _declare(self, lib):
        """Set the ctypes signatures of the block's own functions."""

    def __del__(self):
        if getattr(self, "_handle", None):
            self._fn("destroy")(self._handle)
            self._handle = None

    def reset(self):
        self._fn("reset")(self._handle)

    def twin(self):
        """Another model instance of the same loaded library (one per worker thread: each has
        its own Verilator context, so instances run in parallel)."""
        twin = copy.copy(self)
        twin._handle = self._fn("create")()
        return twin


def _stall_args(stall_seed, in_stall, out_stall):
    return int(stall_seed), int(round(in_stall * 100)), int(round(out_stall * 100))


class StreamLib(BlockLib):
    """Stream block ``block`` verilated with the stream-pass template, built for ``params``."""

    prefix = "hw"

    def __init__(self, block, **params):
        self.desc = _block(block, jobs=True)
        self.params = self.desc.check(**params)
        self.lanes, self.width = self.params["lanes"], self.params["width"]
        self.layouts = self.desc.layouts(**self.params)
        header, self.signature = stream_header(self.desc, self.params)
        defines = self.desc.defines(self.params) if self.desc.defines else None
        self._load(lambda: shared_library(self.desc.name, self.desc.shim, defines=defines,
                                          generated={"block_ports.h": header}, **self.params))

    def _declare(self, lib):
        lib.hw_signature.restype = ctypes.c_char_p
        lib.hw_run.restype = ctypes.c_int64
        lib.hw_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, _i64p, _i64p, _u64p,
                               ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, _i64p, _u64p,
                               ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
        lib.hw_raw_loop.restype = ctypes.c_int64
        lib.hw_raw_loop.argtypes = [ctypes.c_void_p, _u32p, ctypes.c_int64, _u64p]
        if lib.hw_signature().decode() != self.signature:
            raise RuntimeError(f"stale library {self.path}: built for another description")

    def _pack_inputs(self, spec, memo=None):
        """The input streams as packed words. ``memo`` (a dict the caller keeps while the
        arrays do not change) reuses the words of the same arrays under the same layout, e.g.
        a tensor's tiles in its histogram pass and then its masking pass."""
        packed, beats, repeat = [], [], []
        for s in self.desc.inputs:
            fields, n, rep = spec.inputs[s.name]
            layout = self.layouts[s.name]
            key = (tuple(layout.fields), int(n),
                   tuple((k, id(v)) for k, v in sorted(fields.items())))
            if n and memo is not None and key in memo:
                packed.append(memo[key][0])
            elif n:
                packed.append(np.ascontiguousarray(layout.pack(fields, n)))
                if memo is not None:     # the arrays are held, so their ids stay theirs
                    memo[key] = (packed[-1], fields)
            else:  # an empty stream: one dummy beat, sent zero times
                packed.append(np.zeros((1, self.layouts[s.name].words), dtype=np.uint32))
            beats.append(max(int(n), 1))
            repeat.append(int(rep) if n else 0)
        return packed, np.array(beats, dtype=np.int64), np.array(repeat, dtype=np.int64)

    def _config(self, spec):
        unknown = set(spec.config) - {p.name for p in self.desc.config}
        if unknown:
            raise ValueError(f"{self.desc.name} has no configuration port(s) {sorted(unknown)}")
        return np.array([int(spec.config.get(p.name, 0)) for p in self.desc.config] or [0],
                        dtype=np.uint64)

    def run_job(self, job, *, stall_seed=0, in_stall=0.0, out_stall=0.0, memo=None):
        """Run one job (the block's golden-model Job); return its Result."""
        spec = self.desc.encode(job, **self.params)
        packed, beats, repeat = self._pack_inputs(spec, memo)
        pointers = (ctypes.c_void_p * len(packed))(*[p.ctypes.data for p in packed])
        out = self.desc.output
        capacity = spec.items + 1
        out_words = self.layouts[out.name].words if out else 1
        buf = np.zeros((capacity if out else 1, out_words), dtype=np.uint32)
        out_beats = np.zeros(1, dtype=np.int64)
        counters = np.zeros(max(len(self.desc.counters), 1), dtype=np.uint64)
        cycles = self._lib.hw_run(self._handle, pointers, beats, repeat, self._config(spec),
                                  buf.ctypes.data, int(spec.items), capacity, out_beats,
                                  counters, *_stall_args(stall_seed, in_stall, out_stall))
        if cycles < 0:
            self.reset()
            what = ("stopped making progress" if cycles == -1
                    else f"sent more output beats than the {spec.items} results expected")
            raise RuntimeError(f"verilated {self.desc.name} {what}")
        outputs = self.layouts[out.name].unpack(buf[:int(out_beats[0])]) if out else {}
        named = {p.name: int(c) for p, c in zip(self.desc.counters, counters)}
        return self.desc.decode(job, outputs, named, int(cycles), **self.params)

    def raw_loop(self, job):
        """Time a bare C++ loop streaming ``job``'s first input stream through the model (the
        benchmark's ceiling). Packing happens before the clock starts; returns (cycles, seconds)."""
        spec = self.desc.encode(job, **self.params)
        packed, beats, _ = self._pack_inputs(spec)
        started = time.perf_counter()
        cycles = self._lib.hw_raw_loop(self._handle, packed[0], int(beats[0]), self._config(spec))
        return cycles, time.perf_counter() - started


def library(block, **params):
    """The ctypes wrapper of ``block`` (its description's ``library``) built for ``params``."""
    desc = _block(block, jobs=True)
    cls = desc.resolve("library")
    return cls(desc.name, **params)


#: block name -> function(**params) -> wrapper (derived from the list of blocks)
LIBRARIES = {b.name: (lambda name: lambda **params: library(name, **params))(b.name)
             for b in STREAM_BLOCKS}
