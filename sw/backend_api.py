"""The interface every backend implements (:mod:`hwprune.backends` lists them)."""

import abc

from .contract.blocks import block as describe

__all__ = ["Backend"]


class Backend(abc.ABC):
    """A way to run the hardware blocks, built for ``lanes`` x ``width``-bit tiles."""

    name = None
    #: per block, parameters that replace its defaults (:meth:`configure` replaces the dict)
    overrides = {}

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width

    def params(self, block):
        """The block's description and its parameters on this backend (its domain checked)."""
        desc = describe(block, jobs=True)
        return desc, desc.check(lanes=self.lanes, width=self.width,
                                **self.overrides.get(desc.name, {}))

    def configure(self, block, **params):
        """Build ``block`` with ``params`` (memory depths, options: its domain's) instead of its
        defaults; checked now. Returns the backend."""
        desc = describe(block, jobs=True)
        desc.check(lanes=self.lanes, width=self.width, **params)
        self.overrides = {**self.overrides, desc.name: dict(params)}
        return self

    def prepare(self, *blocks):
        """Check (and where it applies, build) ``blocks`` before any work: a parameter outside a
        block's domain, or a failing build, surfaces before a model is touched."""
        for block in blocks:
            self.params(block)

    @abc.abstractmethod
    def run(self, block, jobs):
        """Run ``jobs`` (golden-model job dataclasses) on ``block`` in order; return results."""

    def map(self, fn, items, *, cost=None):
        """``[fn(item) for item in items]``, yielded in order. A backend with several workers
        (``verilator``'s ``workers=``) runs the calls in parallel, largest ``cost(item)`` first;
        ``fn`` may call :meth:`run` for one job at a time."""
        return (fn(item) for item in items)

    def same_inputs(self):
        """A context in which the caller promises not to change the arrays of the jobs it runs:
        a backend may then reuse work on the same arrays (``verilator`` packs a tensor's tiles
        once for its histogram and its masking pass)."""
        import contextlib
        return contextlib.nullcontext()

    def longest_row(self):
        """Inputs a row of a sparse-MAC job may have on this backend (the layers
        :func:`hwprune.run` can put on the unit): its unit's ``max_k``."""
        return self.params("sparse_mac")[1]["max_k"]

    def threshold_passes(self, jobs):
        """Run threshold-engine passes (:class:`hwprune.contract.ThresholdJob`)."""
        return self.run("threshold_engine", jobs)

    def __repr__(self):
        return f"{type(self).__name__}(lanes={self.lanes}, width={self.width})"
