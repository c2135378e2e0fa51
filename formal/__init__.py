"""Formal properties of every block, checked with SymbiYosys from PyPI (installed as
``hwprune.formal``).

One module per block (``formal/<block>.py``) lists its :class:`Property` records; each builds a
:class:`~hwprune.formal.harness.Harness` around the block's component and is run by
:func:`~hwprune.formal.sby.run_property`, by k-induction where the proof closes and by bounded
model checking (to a depth that covers at least two full pipeline drains) elsewhere, as each
property says. ``hwprune formal`` (``make formal``) runs them all; the ``fast`` ones are also in
``make test``.
"""

import importlib
from dataclasses import dataclass, field

__all__ = ["Property", "properties", "MODULES"]

#: The modules holding the properties, one per block (and the bridge).
MODULES = ("threshold_engine", "nm_selector", "channel_norms", "magnitude_histogram",
           "sparse_mac", "net_engine", "score_unit", "row_select", "row_mask", "command_bridge")


@dataclass(frozen=True)
class Property:
    """One formal property of one block."""

    block: str
    name: str
    doc: str
    build: object                  # build(m, dut, env): the assumptions and assertions
    mode: str = "bmc"              # "prove" (k-induction) or "bmc"
    depth: int = 20
    params: dict = field(default_factory=dict)
    fast: bool = True              # in make test
    factory: object = None         # the design under test, if not the block's component

    @property
    def id(self):
        return f"{self.block}.{self.name}"

    def harness(self):
        from .harness import Harness
        return Harness(self.block, self.params, self.build, self.factory)

    def run(self, **kwargs):
        from .sby import run_property
        return run_property(self.harness(), mode=self.mode, depth=self.depth, **kwargs)


def properties(block=None, *, open_ones=False):
    """Every property (of ``block`` only, if given), in a fixed order. ``open_ones``: the
    properties written but not closed on this machine instead (a module's
    ``OPEN_PROPERTIES``)."""
    found = []
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        listed = getattr(module, "OPEN_PROPERTIES", []) if open_ones else module.PROPERTIES
        found += [p for p in listed if block in (None, p.block)]
    return found
