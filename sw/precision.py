"""Mixed precision: a bit width per layer chosen by a sensitivity sweep, and storage in bits.

The sweep quantizes one layer at a time at each candidate width through the engine
(:func:`hwprune.prune` with ``width=w, layers=[name], write_back="quantized"``: the engine
re-selects the layer's kept weights at that width and writes back its fixed-point values) and
measures the accuracy on held-out data. Each layer gets the narrowest width whose accuracy stays
within ``tolerance`` of the unquantized model; if all layers together then lose more than
``tolerance``, the layer that lost most on its own is widened, until the budget holds.

Storage (:func:`storage_bits`) counts what a sparse accelerator stores: each non-zero weight's
value at its layer's width, plus its position, as a bitmap (one bit per weight) or as Deep
Compression's relative indices (``b``-bit gaps to the previous non-zero, with a filler entry,
value zero, for a gap that does not fit), whichever is smaller for that layer; plus one fp32 scale
per tensor (or per output channel) and every parameter that is not pruned (biases, ...) at fp32.
The reference is the dense fp32 model: 32 bits per parameter.
"""

import copy
from dataclasses import asdict, dataclass, field

import numpy as np

from .pruning import prunable_parameters, prune
from .train import evaluate

__all__ = ["WIDTHS", "LayerStorage", "StorageReport", "storage_bits", "layer_amounts",
           "apply_widths", "sensitivity_sweep", "MixedPrecision"]

WIDTHS = (4, 8, 16)
_INDEX_BITS = tuple(range(1, 9))


def layer_amounts(model):
    """``{name: fraction of zero weights}`` of every prunable weight, as the forward pass sees it.

    Passing a layer's fraction back to :func:`hwprune.prune` keeps exactly its non-zero count.
    """
    amounts = {}
    for name, module, pname in prunable_parameters(model):
        w = _effective(module, pname)
        amounts[name] = float((w == 0).sum()) / w.numel()
    return amounts


def _effective(module, pname):
    if hasattr(module, pname + "_orig"):
        return (getattr(module, pname + "_orig") * getattr(module, pname + "_mask")).detach()
    return getattr(module, pname).detach()


def apply_widths(model, widths, *, backend="verilator", lanes=16, granularity="tensor"):
    """Quantize each layer of ``model`` in place at its width, keeping its sparsity.

    Parameters
    ----------
    widths : dict
        ``{weight name: bits}``; layers not named keep their float weights.
    granularity : {"tensor", "channel"}
        Quantization scale per tensor or per output channel.

    Returns
    -------
    dict
        ``{name: PruneReport}`` of each layer's engine pass.
    """
    amounts = layer_amounts(model)
    reports = {}
    for name, width in widths.items():
        if width not in WIDTHS:
            raise ValueError(f"width of {name!r} must be one of {WIDTHS}, not {width!r}")
        reports[name] = prune(model, amount=amounts[name], backend=backend, lanes=lanes,
                              width=width, granularity=granularity, write_back="quantized",
                              layers=[name])
    return reports


@dataclass
class LayerStorage:
    """Storage of one pruned, quantized weight tensor."""

    name: str
    numel: int
    nonzeros: int
    width: int
    value_bits: int
    index_format: str     # "bitmap" or "relative<b>" (b-bit gaps)
    index_bits: int       # including the values of filler entries
    scale_bits: int

    @property
    def bits(self):
        return self.value_bits + self.index_bits + self.scale_bits


@dataclass
class StorageReport:
    """Bits to store a model sparse and quantized, against the dense fp32 model."""

    layers: list = field(default_factory=list)
    other_bits: int = 0        # parameters that are not pruned (biases, ...) at fp32
    dense_fp32_bits: int = 0

    @property
    def bits(self):
        return sum(layer.bits for layer in self.layers) + self.other_bits

    @property
    def ratio(self):
        """How many times smaller than the dense fp32 model."""
        return self.dense_fp32_bits / self.bits if self.bits else float("inf")

    def to_dict(self):
        return {"layers": [dict(asdict(layer), bits=layer.bits) for layer in self.layers],
                "other_bits": self.other_bits, "bits": self.bits,
                "dense_fp32_bits": self.dense_fp32_bits, "ratio": self.ratio}


def _index_cost(positions, numel, width):
    """Cheapest position encoding of sorted flat ``positions``: (format, bits)."""
    best = ("bitmap", numel)
    if positions.size == 0:
        return best
    gaps = np.diff(np.concatenate([[-1], positions])) - 1   # zeros skipped before each value
    for b in _INDEX_BITS:
        span = 2 ** b - 1
        fillers = int(np.sum(gaps // (span + 1)))             # a filler skips ``span`` + itself
        bits = (positions.size + fillers) * b + fillers * width
        if bits < best[1]:
            best = (f"relative{b}", bits)
    return best


def storage_bits(model, widths, *, granularity="tensor"):
    """Count the bits to store ``model`` sparse, each layer at ``widths[name]`` bits.

    Parameters
    ----------
    widths : dict or int
        ``{weight name: bits}`` for every prunable weight, or one width for all.
    granularity : {"tensor", "channel"}
        How many fp32 scales each tensor carries: one, or one per output channel.
    """
    report = StorageReport()
    pruned = set()
    for name, module, pname in prunable_parameters(model):
        width = widths if isinstance(widths, int) else widths[name]
        w = _effective(module, pname)
        flat = w.reshape(-1).cpu().numpy()
        positions = np.flatnonzero(flat)
        fmt, index = _index_cost(positions, flat.size, width)
        scales = w.shape[0] if granularity == "channel" and w.dim() >= 2 else 1
        report.layers.append(LayerStorage(
            name=name, numel=flat.size, nonzeros=int(positions.size), width=int(width),
            value_bits=int(positions.size) * int(width), index_format=fmt, index_bits=int(index),
            scale_bits=32 * scales))
        pruned.add((id(module), pname))
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            base = pname[:-len("_orig")] if pname.endswith("_orig") else pname
            n = param.numel()
            report.dense_fp32_bits += 32 * n
            if (id(module), base) not in pruned:
                report.other_bits += 32 * n
    return report


@dataclass
class MixedPrecision:
    """The result of :func:`sensitivity_sweep`."""

    widths: dict                 # chosen bits per layer
    sweep: dict                  # {layer: {width: val accuracy with only that layer quantized}}
    base_val_accuracy: float
    val_accuracy: float          # all layers at their chosen widths

    def to_dict(self):
        return {"widths": self.widths,
                "sweep": {k: {str(w): a for w, a in v.items()} for k, v in self.sweep.items()},
                "base_val_accuracy": self.base_val_accuracy, "val_accuracy": self.val_accuracy}


def _width_trial(task):
    """One trial of the sweep: ``model`` with one layer at one width, accuracy on ``val``."""
    model, val, name, width, backend, lanes, granularity = task
    trial = copy.deepcopy(model)
    apply_widths(trial, {name: width}, backend=backend, lanes=lanes, granularity=granularity)
    return evaluate(trial, val)


def sensitivity_sweep(model, val, *, widths=WIDTHS, tolerance=0.005, backend="verilator",
                      lanes=16, granularity="tensor", progress=False, cluster=None, address=None):
    """Choose a width per layer on held-out data; ``model`` itself is not changed.

    Parameters
    ----------
    val : TensorDataset
        Held-out data (never the test split).
    widths : tuple of int
        Candidate widths, tried narrowest first.
    tolerance : float
        Accuracy (0 to 1) a layer, and then all layers together, may lose on ``val``.
    cluster, address
        Where the (layer, width) trials run: ``None`` one after another, ``"ray"`` on a Ray
        cluster (:func:`hwprune.sweeps.parallel_map`); the result does not depend on it.

    Returns
    -------
    MixedPrecision
    """
    widths = tuple(sorted(widths))
    for w in widths:
        if w not in WIDTHS:
            raise ValueError(f"widths must be taken from {WIDTHS}, not {w!r}")
    base = evaluate(model, val)
    names = [name for name, _, _ in prunable_parameters(model)]
    sweep = {}
    pairs = [(n, w) for n in names for w in widths]
    if cluster is None:
        todo = pairs
        if progress:
            from tqdm import tqdm
            todo = tqdm(pairs, desc="precision sweep", unit="run", leave=False)
        accuracies = [_width_trial((model, val, n, w, backend, lanes, granularity))
                      for n, w in todo]
    else:
        from .sweeps import parallel_map
        accuracies = parallel_map(_width_trial, [(model, val, n, w, backend, lanes, granularity)
                                                 for n, w in pairs],
                                  cluster=cluster, address=address)
    for (name, width), accuracy in zip(pairs, accuracies):
        sweep.setdefault(name, {})[width] = accuracy
    chosen = {}
    for name in names:
        fits = [w for w in widths if sweep[name][w] >= base - tolerance]
        chosen[name] = fits[0] if fits else widths[-1]

    def combined():
        trial = copy.deepcopy(model)
        apply_widths(trial, chosen, backend=backend, lanes=lanes, granularity=granularity)
        return evaluate(trial, val)
    accuracy = combined()
    while accuracy < base - tolerance:
        widenable = [n for n in names if chosen[n] < widths[-1]]
        if not widenable:
            break
        # Widen the layer that lost most on its own at its current width.
        worst = min(widenable, key=lambda n: sweep[n][chosen[n]])
        chosen[worst] = widths[widths.index(chosen[worst]) + 1]
        accuracy = combined()
    return MixedPrecision(widths=chosen, sweep=sweep, base_val_accuracy=base,
                          val_accuracy=accuracy)
