"""The list of hwprune's hardware blocks: every registry in the package is derived from it.

Adding a block is one line here (see docs/architecture.md, "Adding a block").
"""

from . import channel_norms, magnitude_histogram, net_engine, nm_selector, protocol, row_mask, \
    row_select, score_unit, sparse_mac, threshold_engine

__all__ = ["BLOCKS", "STREAM_BLOCKS", "block", "names", "MODELS", "RESULTS"]

#: Every hardware block, in the order ``hwprune info`` lists them.
BLOCKS = (
    threshold_engine.BLOCK,
    magnitude_histogram.BLOCK,
    nm_selector.BLOCK,
    channel_norms.BLOCK,
    sparse_mac.BLOCK,
    net_engine.BLOCK,
    score_unit.BLOCK,
    row_select.BLOCK,
    row_mask.BLOCK,
    protocol.COMMAND_BRIDGE,
    protocol.UART_CORE,
)

_BY_NAME = {b.name: b for b in BLOCKS}
#: The blocks that run jobs (golden model, backends); the rest are parts of the board top.
STREAM_BLOCKS = tuple(b for b in BLOCKS if not b.internal)


def names(*, jobs=False):
    return [b.name for b in (STREAM_BLOCKS if jobs else BLOCKS)]


def block(name, *, jobs=False):
    """The description of block ``name``; a clear error naming the valid blocks otherwise."""
    b = _BY_NAME.get(name) if isinstance(name, str) else None
    if b is None or (jobs and b.internal):
        raise ValueError(f"block must be one of {sorted(names(jobs=jobs))}, not {name!r}")
    return b


#: block name -> golden function(job) -> result
MODELS = {b.name: b.golden for b in STREAM_BLOCKS}
#: block name -> result dataclass
RESULTS = {b.name: b.result for b in STREAM_BLOCKS}
