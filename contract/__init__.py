"""The contract layer of hwprune (installed as ``hwprune.contract``): what every other layer
agrees on, in plain Python and numpy (no Amaranth, no torch).

- :mod:`.blocks`: the list of hardware blocks, one :class:`~.block.Block` description each;
- one module per block (:mod:`.threshold_engine`, :mod:`.magnitude_histogram`,
  :mod:`.nm_selector`, :mod:`.channel_norms`, :mod:`.sparse_mac`): its parameter domain, stream
  payload layouts, Job / Result types and golden (reference) model;
- :mod:`.layout`, :mod:`.params`, :mod:`.block`: the plain-data forms those are written in;
- :mod:`.protocol`: the UART wire protocol (command codes, framing, CRCs, the beat's wire layout).

The golden models are the one reference of each block: every unit test, cocotb scoreboard and
backend comparison calls them.
"""

import dataclasses

import numpy as np

from .blocks import BLOCKS, MODELS, RESULTS, STREAM_BLOCKS, block
from .channel_norms import ChannelJob, ChannelResult
from .magnitude_histogram import HistogramJob, HistogramResult, select_threshold_passes
from .nm_selector import NMJob, NMResult, nm_mask
from .sparse_mac import SparseMacJob, SparseMacResult
from .threshold_engine import ALL_TIES, MaskResult, ThresholdJob, magnitude, threshold_mask

__all__ = ["BLOCKS", "STREAM_BLOCKS", "block", "MODELS", "RESULTS", "ALL_TIES", "MaskResult",
           "ThresholdJob", "magnitude", "threshold_mask", "to_arrays", "from_arrays",
           "SparseMacJob", "SparseMacResult", "HistogramJob", "HistogramResult",
           "select_threshold_passes", "NMJob", "NMResult", "nm_mask", "ChannelJob",
           "ChannelResult"]


def to_arrays(obj):
    """A job or result dataclass as a dict of numpy arrays (for ``np.savez``); a class with
    nested records flattens itself (its ``to_arrays`` method)."""
    if hasattr(obj, "to_arrays"):
        return obj.to_arrays()
    return {f.name: np.asarray(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def from_arrays(cls, arrays):
    """Inverse of :func:`to_arrays`: 0-d arrays become Python ints, the rest stay arrays."""
    if hasattr(cls, "from_arrays"):
        return cls.from_arrays(arrays)
    return cls(**{f.name: (arrays[f.name].item() if arrays[f.name].ndim == 0 else arrays[f.name])
                  for f in dataclasses.fields(cls)})
