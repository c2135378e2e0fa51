"""Amaranth HDL designs of hwprune (installed as ``hwprune.hw``).

Each hardware block is a ``wiring.Component``; :func:`to_verilog` turns one into Verilog with the
signature as the port list. :data:`BLOCKS` names the blocks that ``sim/`` can build.
"""

from amaranth.back import verilog

from .magnitude_histogram import MagnitudeHistogram
from .threshold_engine import (COUNTER_WIDTH, MAX_LANES, MIN_LANES, PIPELINE_LATENCY,
                               SUPPORTED_WIDTHS, ThresholdEngine, check_params)
from .sparse_mac import SparseMac
from .nm_selector import NMSelector
from .channel_norms import ChannelNorms
from .bridge import CommandBridge, UARTCore

__all__ = ["BLOCKS", "to_verilog", "ThresholdEngine", "MagnitudeHistogram", "check_params", "SUPPORTED_WIDTHS",
           "MIN_LANES", "MAX_LANES", "PIPELINE_LATENCY", "COUNTER_WIDTH", "SparseMac",
           "NMSelector", "ChannelNorms", "UARTCore", "CommandBridge"]

#: Block name (also the Verilog module name) -> component class taking keyword parameters.
BLOCKS = {
    "threshold_engine": ThresholdEngine,
    "magnitude_histogram": MagnitudeHistogram,
    "sparse_mac": SparseMac,
    "nm_selector": NMSelector,
    "channel_norms": ChannelNorms,
    "uart_core": UARTCore,
    "command_bridge": CommandBridge,
}


def to_verilog(block, **params):
    """Return the Verilog text of hardware block ``block`` built with ``params``.

    The module is named after the block; its ports are the component's flattened signature
    (``clk``, ``rst``, ``i_stream__payload``, ...).
    """
    try:
        cls = BLOCKS[block]
    except KeyError:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, not {block!r}") from None
    return verilog.convert(cls(**params), name=block, emit_src=False)
