"""hwprune: hardware/software co-designed neural-network pruning.

>>> import hwprune
>>> report = hwprune.prune(model, amount=0.5, backend="verilator", lanes=16, width=8)
>>> print(report)          # per-layer numel, kept, sparsity, engine cycles
>>> hwprune.remove(model)  # make the pruning permanent
>>> result = hwprune.run(model, x, backend="verilator")  # Conv/Linear on the sparse MAC unit
>>> result.output, print(result)                         # logits; per-layer dense vs sparse cycles
>>> board = hwprune.deploy(model, x_calib, board="icebreaker")  # the network engine, on chip
>>> board(x).argmax(1)                                   # every layer back to back on the RTL

Layers (docs/architecture.md): :mod:`hwprune.contract` (block descriptions, golden models,
protocol; numpy only), :mod:`hwprune.hw` (Amaranth designs), :mod:`hwprune.sim` (Verilator and
cocotb), and this host driver. The public names load their modules on first use, so
``import hwprune`` is fast and loads neither torch nor Amaranth until they are needed.
"""

import importlib

__all__ = ["prune", "remove", "prunable_parameters", "get_backend", "Backend", "BACKENDS",
           "PruneReport", "LayerReport", "BuildError", "run", "RunReport", "calibrate",
           "Calibration", "deploy", "Deployment"]
__version__ = "0.1.0"

#: Public name -> the module that defines it, imported on first use: ``import hwprune`` (and
#: ``import hwprune.contract``) loads neither torch nor Amaranth until a name needs them.
_LAZY = {"run": "accelerate", "RunReport": "accelerate", "BACKENDS": "backends",
         "get_backend": "backends", "Backend": "backend_api", "prune": "pruning",
         "remove": "pruning", "prunable_parameters": "pruning", "PruneReport": "report",
         "LayerReport": "report", "BuildError": "sim.build", "calibrate": "calibration",
         "Calibration": "calibration", "deploy": "deploy", "Deployment": "deploy"}


def __getattr__(name):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hwprune' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
