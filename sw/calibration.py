"""Activation statistics from calibration data, accumulated by the channel-norm unit.

:func:`calibrate` runs a model on calibration inputs and, for every prunable layer, streams that
layer's input activations through the channel-norm unit of the chosen backend, one input
feature per channel: the unit returns each feature's sum of squared codes, and the host only
scales them back to real units (``sum x**2 = scale**2 * sum q**2`` for the feature's quantization
scale in the batch) and adds batches up. The result, ``s_j = sqrt(sum over every token of x_j**2)``, is the
per-input-feature L2 norm that Wanda (Sun et al. 2023) multiplies ``|W_ij|`` by.

What a layer's input features are:

- ``Linear`` (also inside Transformer blocks): the last dimension of its input; every other
  dimension (batch, tokens) is a position that is summed over;
- ``Conv1d`` / ``Conv2d`` (``groups=1``): the columns ``F.unfold`` makes of its input, in the
  order of the flattened weight ``(in, *kernel)``; every output position is summed over;
- single-layer, unidirectional ``RNN`` / ``LSTM`` / ``GRU``: ``weight_ih_l0``'s features are the
  input at every step, ``weight_hh_l0``'s the hidden state the step starts from (the initial
  state, then every output but the last).

Memory stays bounded: statistics accumulate per batch; activations are never kept.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .backends import Backend, get_backend
from .channel import channel_jobs
from .pruning import prunable_parameters, select_layers
from .quant import quantize

__all__ = ["Calibration", "calibrate"]


@dataclass
class Calibration:
    """Per-layer input-feature norms measured on calibration data (reusable: pass it to later
    prunes instead of running the model again).

    ``norms[name]``: float64 array, one L2 norm per input feature of the weight ``name`` (names
    as :func:`hwprune.prunable_parameters` gives them); ``positions[name]``: how many positions
    (tokens, output pixels, time steps) were summed; ``cycles[name]``: channel-norm unit cycles.
    """

    backend: str
    width: int
    lanes: int
    norms: dict = field(default_factory=dict)
    positions: dict = field(default_factory=dict)
    cycles: dict = field(default_factory=dict)
    batches: int = 0

    def __getitem__(self, name):
        return self.norms[name]

    def __contains__(self, name):
        return name in self.norms

    def to_dict(self):
        return {"backend": self.backend, "width": self.width, "lanes": self.lanes,
                "batches": self.batches,
                "layers": {n: {"features": int(v.size), "positions": self.positions[n],
                               "cycles": self.cycles[n]} for n, v in self.norms.items()}}


def _features(module, pname, args, output):
    """The layer's input as ``(positions, features)`` for the weight ``pname`` of ``module``."""
    if isinstance(module, nn.Linear):
        x = args[0]
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.groups != 1 or isinstance(module.padding, str) and module.padding != "valid":
            raise ValueError("calibrate supports convolutions with groups=1 and numeric padding")
        x = args[0]
        if isinstance(module, nn.Conv1d):
            x = x.unsqueeze(-2)
            kernel, stride = (1, *module.kernel_size), (1, *module.stride)
            padding, dilation = (0, *_pair(module.padding, 1)), (1, *module.dilation)
        else:
            kernel, stride = module.kernel_size, module.stride
            padding, dilation = _pair(module.padding, 2), module.dilation
        cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if isinstance(module, nn.RNNBase):
        if module.num_layers != 1 or module.bidirectional or module.proj_size:
            raise ValueError("calibrate supports single-layer, unidirectional RNN/LSTM/GRU "
                             "without projections")
        x = args[0]
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise ValueError("calibrate needs padded (not packed) sequences for RNN layers")
        batch_first = module.batch_first
        if pname == "weight_ih_l0":
            return x.reshape(-1, x.shape[-1])
        out = output[0]
        hx = args[1] if len(args) > 1 else None
        if isinstance(hx, tuple):
            hx = hx[0]
        seq = out if not batch_first else out.transpose(0, 1)        # (T, N, H) or (T, H)
        if seq.dim() == 2:
            seq = seq.unsqueeze(1)
        h0 = torch.zeros_like(seq[:1]) if hx is None else hx.reshape(1, -1, seq.shape[-1])
        return torch.cat([h0, seq[:-1]]).reshape(-1, seq.shape[-1])
    raise ValueError(f"calibrate does not know the input features of {type(module).__name__}")


def _pair(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _batches(inputs):
    """Calls that run the model once each: from a tensor, a list/tuple of tensors, a DataLoader
    (first element of each batch when it is a tuple/list), or a callable ``f(model)``."""
    if callable(inputs) and not isinstance(inputs, (torch.Tensor, nn.Module)):
        return [lambda model: inputs(model)]
    if isinstance(inputs, torch.Tensor):
        return [lambda model, x=inputs: model(x)]
    if isinstance(inputs, (list, tuple)):
        return [lambda model, x=x: model(x) for x in inputs]
    if isinstance(inputs, torch.utils.data.DataLoader):
        def each(model, loader=inputs):
            for batch in loader:
                yield model(batch[0] if isinstance(batch, (tuple, list)) else batch)
        return each
    raise TypeError(f"calibration inputs must be a tensor, a list of tensors, a DataLoader or a "
                    f"callable f(model), not {type(inputs).__name__}")


@torch.no_grad()
def calibrate(model, inputs, *, backend="verilator", lanes=16, width=16, layers=None,
              progress=False, **backend_options):
    """Run ``model`` on ``inputs`` and measure each prunable layer's input-feature L2 norms on
    the channel-norm unit of ``backend``; return a :class:`Calibration`.

    Each batch of a layer's activations is quantized to ``width``-bit codes, one scale per
    input feature (16 bits by default: statistics want the dynamic range). The engine's passes
    run in background threads beside the model (two per worker at most in flight); layers fed
    the same input tensor (query, key and value projections) share one pass, whose cycles each
    of them reports.

    The model is left exactly as it was (hooks removed, training mode restored). Bad input gets
    a clear error: an empty loader, activations with NaN/Inf (naming the layer), a layer the
    inputs never reached, a layer kind whose input features are not known.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    engine = backend if isinstance(backend, Backend) else \
        get_backend(backend, lanes=lanes, width=width, **backend_options)
    engine.prepare("channel_norms")
    targets = select_layers(prunable_parameters(model), layers)
    if not targets:
        raise ValueError("model has no prunable layer to calibrate")
    result = Calibration(backend=engine.name, width=engine.width, lanes=engine.lanes)
    sums = {name: None for name, _, _ in targets}
    by_module = {}
    for name, module, pname in targets:
        by_module.setdefault(module, []).append((name, pname))

    # The engine's passes run in background threads while the model goes on (the ctypes calls
    # release the GIL); at most two per worker are in flight, so memory stays bounded. Layers
    # fed the very same input tensor (a transformer's query, key and value projections) share
    # one pass over it.
    workers = max(1, int(getattr(engine, "workers", 1)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hwprune-calibrate")
    pending = deque()
    last = {"input": None, "entry": None}

    def add(name, entry):
        part, cycles = entry["value"]
        sums[name] = part if sums[name] is None else sums[name] + part
        result.positions[name] = result.positions.get(name, 0) + entry["positions"]
        result.cycles[name] = result.cycles.get(name, 0) + cycles

    def collect(block=False):
        while pending and (block or len(pending) > 2 * workers or pending[0]["future"].done()):
            entry = pending.popleft()
            entry["value"] = entry["future"].result()
            for name in entry["names"]:
                add(name, entry)

    def hook(module, args, output):
        for name, pname in by_module[module]:
            if isinstance(module, nn.Linear) and args[0] is last["input"]:
                entry = last["entry"]
                if entry["value"] is None:
                    entry["names"].append(name)
                else:
                    add(name, entry)
                continue
            x = _features(module, pname, args, output).detach().to("cpu", torch.float32)
            if not torch.isfinite(x).all():
                raise ValueError(f"layer {name!r} received NaN or Inf activations; "
                                 f"nothing was calibrated")
            if x.shape[0] == 0:
                continue
            entry = {"future": pool.submit(_measure, engine, name, x.numpy().copy()),
                     "names": [name], "positions": int(x.shape[0]), "value": None}
            pending.append(entry)
            last["input"], last["entry"] = (args[0] if isinstance(module, nn.Linear) else None,
                                            entry)
        collect()

    was_training = model.training
    handles = [m.register_forward_hook(hook) for m in by_module]
    batches = 0
    try:
        model.eval()
        runs = _batches(inputs)
        items = runs(model) if callable(runs) else (run(model) for run in runs)
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc=f"calibrate ({engine.name})", unit="batch")
        try:
            for _ in items:
                batches += 1
                last["input"] = None
        except (RuntimeError, TypeError, IndexError) as exc:
            raise ValueError(f"the model could not run on the calibration inputs (batch "
                             f"{batches + 1}): {exc}; nothing was calibrated") from exc
        collect(block=True)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        last["input"] = None
        pool.shutdown(wait=True, cancel_futures=True)
    if batches == 0:
        raise ValueError("the calibration inputs hold no batch; nothing was calibrated")
    never = [name for name, s in sums.items() if s is None]
    if never:
        raise ValueError(f"layer {never[0]!r} was never reached by the calibration inputs "
                         f"({len(never)} layer(s) in all); nothing was calibrated")
    result.batches = batches
    result.norms = {name: np.sqrt(s) for name, s in sums.items()}
    return result


def _measure(engine, name, x):
    """One batch of one layer's input features through the channel-norm unit (features as
    channels, each quantized with its own scale: a transformer's outlier features would
    otherwise leave the others a few bits). Returns the sums of squares in real units and the
    unit's cycles."""
    q = quantize(x.T, engine.width, "channel")
    job = channel_jobs(q.codes, engine.lanes)
    res, = engine.run("channel_norms", [job])
    if len(res.l2) != x.shape[1]:
        raise RuntimeError(f"channel-norm unit returned {len(res.l2)} features for {name!r}, "
                           f"expected {x.shape[1]}")
    return res.l2.astype(np.float64) * np.asarray(q.scale, dtype=np.float64).reshape(-1) ** 2, \
        int(res.cycles)
