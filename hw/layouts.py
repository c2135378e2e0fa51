"""Amaranth forms of the contract layer's plain-data payload layouts.

:func:`amaranth_layout` turns a :class:`hwprune.contract.layout.Layout` into the
``data.StructLayout`` the RTL's streams carry: an array field becomes a ``data.ArrayLayout`` of
signed / unsigned elements, except an array of 1-bit elements, which becomes a plain bitmap
(``unsigned(count)``, bit ``i`` for element ``i``); both pack the same bits. Because the RTL
takes its layouts from here, a change of a layout reaches the RTL, the C++ shims, the cocotb
benches and the wire format together.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = ["amaranth_layout", "stream_layouts"]


def _shape(field):
    element = signed(field.width) if field.signed else unsigned(field.width)
    if field.count == 1:
        return element
    if field.width == 1 and not field.signed:
        return unsigned(field.count)
    return data.ArrayLayout(element, field.count)


def amaranth_layout(layout):
    """The ``data.StructLayout`` of a contract :class:`~hwprune.contract.layout.Layout`."""
    return data.StructLayout({f.name: _shape(f) for f in layout.fields})


def stream_layouts(block, **params):
    """Stream name -> Amaranth payload layout of ``block`` (a contract Block) for ``params``."""
    return {name: amaranth_layout(layout) for name, layout in block.layouts(**params).items()}
