"""The golden (reference) models of hwprune's hardware blocks, in numpy.

One model per hardware block, and only one: every unit test, every cocotb scoreboard and every
backend comparison calls these. Each block's module defines its transactions (a ``Job`` going in,
a ``Result`` coming out, both dataclasses of numpy arrays and integers) and a function that maps
one to the other; :data:`MODELS` registers them by block name for the generic backends.
"""

from . import magnitude_histogram, sparse_mac, threshold_engine
from .magnitude_histogram import HistogramJob, HistogramResult, select_threshold_passes
from .sparse_mac import SparseMacJob, SparseMacResult
from .threshold_engine import ALL_TIES, MaskResult, ThresholdJob, magnitude, threshold_mask

__all__ = ["MODELS", "JOBS", "RESULTS", "ALL_TIES", "MaskResult", "ThresholdJob", "magnitude",
           "threshold_mask", "to_arrays", "from_arrays", "SparseMacJob", "SparseMacResult",
           "HistogramJob", "HistogramResult", "select_threshold_passes"]

#: block name -> function(job) -> result
MODELS = {"threshold_engine": threshold_engine.run, "sparse_mac": sparse_mac.run,
          "magnitude_histogram": magnitude_histogram.run}
#: block name -> job / result dataclass (for the cocotb backend's job files)
JOBS = {"threshold_engine": ThresholdJob, "sparse_mac": SparseMacJob,
        "magnitude_histogram": HistogramJob}
RESULTS = {"threshold_engine": MaskResult, "sparse_mac": SparseMacResult,
           "magnitude_histogram": HistogramResult}


# N:M selection and channel norms (issue 3).
from . import channel_norms, nm_selector  # noqa: E402
from .channel_norms import ChannelJob, ChannelResult  # noqa: E402
from .nm_selector import NMJob, NMResult, nm_mask  # noqa: E402

__all__ += ["NMJob", "NMResult", "nm_mask", "ChannelJob", "ChannelResult"]
MODELS.update(nm_selector=nm_selector.run, channel_norms=channel_norms.run)
JOBS.update(nm_selector=NMJob, channel_norms=ChannelJob)
RESULTS.update(nm_selector=NMResult, channel_norms=ChannelResult)


def to_arrays(obj):
    """A job or result dataclass as a dict of numpy arrays (for ``np.savez``)."""
    import dataclasses

    import numpy as np
    return {f.name: np.asarray(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def from_arrays(cls, arrays):
    """Inverse of :func:`to_arrays`: 0-d arrays become Python ints, the rest stay arrays."""
    import dataclasses
    return cls(**{f.name: (arrays[f.name].item() if arrays[f.name].ndim == 0 else arrays[f.name])
                  for f in dataclasses.fields(cls)})
