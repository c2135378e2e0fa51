"""The base of every stream block's component: its signature comes from its description.

:class:`BlockComponent` builds the ``wiring.Component`` signature of a block from its
:class:`hwprune.contract.block.Block`: each stream with the Amaranth form of its contract
layout, the configuration inputs and counter outputs at their widths, and the ``clear``,
``finish`` / ``done`` and ``busy`` handshakes. The RTL, the generated C++ port header and the
cocotb bench therefore read the same port list; a block's ``elaborate`` only adds behaviour.
"""

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import amaranth_layout

__all__ = ["BlockComponent", "NO_RW_CHECK"]

#: ``attrs`` of a ``Memory`` that is never read and written at the same address in one clock
#: (each use says why). Yosys then maps it to block RAM as it is: without it, it builds
#: read-first logic around every iCE40 block RAM (~40 flip-flops and ~27 LUTs each); the board
#: flow passes the mark on to yosys (:func:`hwprune.hw.boards.no_rw_check`). Simulation keeps
#: Amaranth's read-first semantics either way.
NO_RW_CHECK = {"no_rw_check": 1}


class BlockComponent(wiring.Component):
    """A hardware block whose ports are those of its ``description`` (set by the subclass)."""

    description = None

    def __init__(self, **params):
        desc = self.description
        self.params = p = desc.check(**params)
        layouts = desc.layouts(**p)
        members = {}
        for s in desc.streams:
            direction = In if s.direction == "in" else Out
            members[s.name] = direction(stream.Signature(amaranth_layout(layouts[s.name])))
        for port in desc.config:
            members[port.name] = In(port.bits(p))
        if desc.clear:
            members[desc.clear] = In(1)
        if desc.finish:
            strobe, done = desc.finish
            members[strobe] = In(1)
            members[done] = Out(1)
        if desc.busy:
            members[desc.busy] = Out(1)
        for port in desc.counters:
            members[port.name] = Out(port.bits(p))
        super().__init__(members)

    @property
    def lanes(self):
        return self.params["lanes"]

    @property
    def width(self):
        return self.params["width"]
