"""hwprune: hardware/software co-designed neural-network pruning.

>>> import hwprune
>>> report = hwprune.prune(model, amount=0.5, backend="verilator", lanes=16, width=8)
>>> print(report)          # per-layer numel, kept, sparsity, engine cycles
>>> hwprune.remove(model)  # make the pruning permanent
>>> result = hwprune.run(model, x, backend="verilator")  # Conv/Linear on the sparse MAC unit
>>> result.output, print(result)                         # logits; per-layer dense vs sparse cycles

Layers (docs/architecture.md): :mod:`hwprune.contract` (block descriptions, golden models,
protocol; numpy only), :mod:`hwprune.hw` (Amaranth designs), :mod:`hwprune.sim` (Verilator and
cocotb), and this host driver. ``import hwprune`` loads torch (the host driver's own
dependency) but neither Amaranth nor cocotb: the RTL is generated only when a build needs it.
"""

from .accelerate import RunReport, run
from .backend_api import Backend
from .backends import BACKENDS, get_backend
from .prune import prunable_parameters, prune, remove
from .report import LayerReport, PruneReport
from .sim.build import BuildError

__all__ = ["prune", "remove", "prunable_parameters", "get_backend", "Backend", "BACKENDS",
           "PruneReport", "LayerReport", "BuildError", "run", "RunReport"]
__version__ = "0.1.0"
