"""The description of one hardware block: everything every layer needs to know about it.

A :class:`Block` is plain data. It names the parts of the block that live in other layers by
dotted path (``"hwprune.hw.threshold_engine:ThresholdEngine"``), so this layer imports neither
Amaranth nor torch; :meth:`Block.resolve` loads them on demand. Every registry of hwprune (the
RTL blocks, the golden models, the shared libraries, the cocotb benches, the blocks a bitstream
can hold) is derived from :data:`hwprune.contract.blocks.BLOCKS`, a list of these records.

A *stream block* moves one pass per job: it is configured through plain input ports, optionally
strobed with ``clear``, fed one or more input streams, drained of one output stream, optionally
finished with a strobe / done handshake, and its counters are read at the end. Its description
says which ports those are; the one C++ stream-pass template (``sim/shim/stream_pass.cpp``), the
one ctypes wrapper and the one cocotb bench run every such block from it; the block's ``encode``
turns a job into stream fields and configuration (a :class:`PassSpec`), and its ``decode`` turns
the output stream's fields and the counters back into a result.
"""

import importlib
from dataclasses import dataclass, fields

__all__ = ["Block", "Stream", "Port", "PassSpec", "resolve", "decoder"]

COUNTER_WIDTH = 32


def resolve(path):
    """Load ``"package.module:attr"``."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


@dataclass(frozen=True)
class Port:
    """A plain (non-stream) port of the block's top: a configuration input or a counter.
    ``width`` is a number of bits, or a function of the block's parameters giving one."""

    name: str
    width: object

    def bits(self, params):
        return self.width(params) if callable(self.width) else self.width


@dataclass(frozen=True)
class Stream:
    """A valid/ready stream port of the block's top (Amaranth names it ``<name>__payload``...).

    ``layout(**params)`` gives its payload :class:`~hwprune.contract.layout.Layout`. An output
    stream may carry several results per beat: ``items`` names the 1-bit array field whose set
    bits count them (None: one result per beat).
    """

    name: str
    layout: object
    direction: str = "in"     # "in" or "out"
    items: str = None


@dataclass
class PassSpec:
    """One pass of a stream block, as the generic drivers see it.

    ``inputs``: stream name -> (fields dict for its layout, beats, repeat); the beats are sent
    ``repeat`` times in order. ``config``: configuration port -> value. ``items``: results
    expected on the output stream (the pass ends when they are all taken).
    """

    inputs: dict
    config: dict
    items: int = 0


def decoder(result, **casts):
    """A block's ``decode`` for the common case: ``result`` built from the output fields named in
    ``casts`` (each cast to its dtype), the counters whose names are fields of ``result``, and
    the cycle count."""
    names = {f.name for f in fields(result)}

    def decode(job, outputs, counters, cycles, **params):
        values = {name: outputs[name].astype(dtype) for name, dtype in casts.items()}
        values.update((name, value) for name, value in counters.items() if name in names)
        return result(**values, cycles=cycles)

    decode.__qualname__ = f"decoder({result.__qualname__})"
    return decode


@dataclass(frozen=True)
class Block:
    """One hardware block, described once."""

    name: str
    doc: str
    domain: object                       # hwprune.contract.params.Domain
    streams: tuple                       # Stream records, inputs first
    job: type = None                     # golden-model job dataclass
    result: type = None                  # golden-model result dataclass
    golden: object = None                # function(job, **params) -> result
    component: str = None                # "module:Class" of the Amaranth component
    encode: object = None                # function(job, **params) -> PassSpec
    decode: object = None                # function(job, outputs, counters, cycles, **params)
    config: tuple = ()                   # configuration Ports, set before each pass
    counters: tuple = ()                 # counter Ports, read after each pass
    clear: str = None                    # strobe before each pass (zero counters, load config)
    finish: tuple = None                 # (strobe, done): after the inputs, strobe and wait
    busy: str = None                     # after reset, wait while this is high
    shim: str = "stream_pass.cpp"        # C++ shim in sim/shim/
    library: str = "hwprune.sim.verilator_lib:StreamLib"   # ctypes wrapper class
    bench: str = None                    # cocotb module of the block's own tests
    #: extra C++ macros for the shim, from the resolved parameters
    defines: object = None
    #: blocks a board bitstream can hold behind the UART bridge (INFO bitmap bit), None: none
    bridge_bit: int = None
    internal: bool = False               # a part of another block (UART core), not a job block

    # --- derived ----------------------------------------------------------------------------
    def check(self, **params):
        """The one parameter check (returns the resolved parameters)."""
        return self.domain.check(**params)

    def layouts(self, **params):
        """Stream name -> payload Layout for ``params``."""
        p = self.check(**params)
        return {s.name: s.layout(**p) for s in self.streams}

    @property
    def inputs(self):
        return tuple(s for s in self.streams if s.direction == "in")

    @property
    def output(self):
        outs = [s for s in self.streams if s.direction == "out"]
        return outs[0] if outs else None

    def resolve(self, what):
        """Load the part named by attribute ``what`` (``"component"``, ``"library"``, ...)."""
        path = getattr(self, what)
        if path is None:
            raise ValueError(f"block {self.name} has no {what}")
        return resolve(path)

    def to_json(self):
        d = {"name": self.name, "doc": self.doc, "domain": self.domain.to_json(),
             "component": self.component, "golden": _qualname(self.golden),
             "job": _qualname(self.job), "result": _qualname(self.result),
             "shim": self.shim, "library": self.library, "bench": self.bench,
             "config": [p.name for p in self.config], "counters": [p.name for p in self.counters],
             "streams": [{"name": s.name, "direction": s.direction} for s in self.streams]}
        if self.bridge_bit is not None:
            d["bridge_bit"] = self.bridge_bit
        return d


def _qualname(obj):
    if obj is None:
        return None
    return f"{obj.__module__}:{obj.__qualname__}"
