"""Amaranth HDL designs of hwprune (installed as ``hwprune.hw``).

Each hardware block is a ``wiring.Component`` whose description (parameter domain, payload
layouts, ports) is in the contract layer, :mod:`hwprune.contract`; :func:`to_verilog` turns one
into Verilog with the signature as the port list. :data:`BLOCKS` (name -> component class) is
derived from :data:`hwprune.contract.blocks.BLOCKS`.
"""

from amaranth.back import verilog

from ..contract.blocks import BLOCKS as _DESCRIPTIONS
from ..contract.blocks import block as _block
from .bridge import CommandBridge, UARTCore
from .channel_norms import ChannelNorms
from .magnitude_histogram import MagnitudeHistogram
from .net_engine import NetEngine
from .nm_selector import NMSelector
from .row_mask import RowMask
from .row_select import RowSelect
from .score_unit import ScoreUnit
from .sparse_mac import SparseMac
from .threshold_engine import ThresholdEngine

__all__ = ["BLOCKS", "component", "to_verilog", "ThresholdEngine", "MagnitudeHistogram",
           "SparseMac", "NetEngine", "NMSelector", "ChannelNorms", "ScoreUnit", "RowSelect", "RowMask",
           "UARTCore", "CommandBridge"]

#: Block name (also the Verilog module name) -> component class taking keyword parameters.
BLOCKS = {b.name: b.resolve("component") for b in _DESCRIPTIONS}


def component(block, **params):
    """The component of hardware block ``block`` built with ``params`` (its domain checked,
    defaults filled in)."""
    desc = _block(block)
    return BLOCKS[desc.name](**desc.check(**params))


def to_verilog(block, *, platform=None, **params):
    """Return the Verilog text of hardware block ``block`` built with ``params``.

    The module is named after the block; its ports are the component's flattened signature
    (``clk``, ``rst``, ``i_stream__payload``, ...). ``platform`` (an object with a ``family``,
    e.g. ``"ice40"``) elaborates the block for that FPGA family (its SPRAMs instantiated).
    """
    return verilog.convert(component(block, **params), name=_block(block).name, emit_src=False,
                           platform=platform)
