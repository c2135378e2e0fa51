"""hwprune: hardware/software co-designed neural-network pruning.

>>> import hwprune
>>> report = hwprune.prune(model, amount=0.5, backend="verilator", lanes=16, width=8)
>>> print(report)          # per-layer numel, kept, sparsity, engine cycles
>>> hwprune.remove(model)  # make the pruning permanent
>>> result = hwprune.run(model, x, backend="verilator")  # Conv/Linear on the sparse MAC unit
>>> result.output, print(result)                         # logits; per-layer dense vs sparse cycles

Sub-packages: :mod:`hwprune.hw` (Amaranth designs), :mod:`hwprune.sim` (Verilator and cocotb).
"""

from .accelerate import RunReport, run
from .backends import BACKENDS, Backend, get_backend
from .prune import prunable_parameters, prune, remove
from .report import LayerReport, PruneReport
from .sim.build import BuildError

__all__ = ["prune", "remove", "prunable_parameters", "get_backend", "Backend", "BACKENDS",
           "PruneReport", "LayerReport", "BuildError", "run", "RunReport"]
__version__ = "0.1.0"
