"""The host driver: prune a PyTorch model by streaming its weights through a hardware engine.

Every prunable weight tensor is quantized to ``width``-bit fixed point, cut into tiles of
``lanes`` weights, and streamed through the threshold engine. The engine's keep mask (or its
fixed-point output) is then installed with torch.nn.utils.prune's convention: ``weight_orig``,
``weight_mask`` and a forward pre-hook, so existing code (``prune.remove``, ``prune.is_pruned``)
keeps working.

Nothing is written to the model until every tensor has been checked and run: bad input raises a
clear error and leaves the model as it was.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .backends import Backend, get_backend
from .golden import ALL_TIES, ThresholdJob
from .hw import check_params
from .quant import GRANULARITIES, dequantize, quantize, tile, untile
from .report import LayerReport, PruneReport

__all__ = ["prune", "remove", "prunable_parameters", "WRITE_BACKS"]

WRITE_BACKS = ("mask", "quantized")
_RNN_TYPES = (nn.RNNBase,)
_PRUNABLE_DOC = ("Conv1d/Conv2d/Conv3d, Linear (also inside Transformer blocks), "
                 "MultiheadAttention projections, RNN/LSTM/GRU weight matrices")


def prunable_parameters(model):
    """List ``(name, module, param_name)`` of every weight hwprune prunes, in module order.

    Weights of convolutions and linear layers (subclasses included, such as the output projection
    of ``nn.MultiheadAttention``), the input projections of ``nn.MultiheadAttention``, and the
    ``weight_ih_l*`` / ``weight_hh_l*`` matrices of RNN, LSTM and GRU layers. Biases and
    normalisation parameters are never pruned. Already pruned weights (with ``<name>_orig``) are
    included, so pruning can be repeated.
    """
    found = []
    for mod_name, module in model.named_modules():
        names = []
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            names = ["weight"]
        elif isinstance(module, nn.MultiheadAttention):
            names = (["in_proj_weight"] if module._qkv_same_embed_dim
                     else ["q_proj_weight", "k_proj_weight", "v_proj_weight"])
        elif isinstance(module, _RNN_TYPES):
            names = [n for n in module._flat_weights_names if n.startswith("weight_")]
        for pname in names:
            if _current_weight(module, pname) is not None:
                found.append((f"{mod_name}.{pname}" if mod_name else pname, module, pname))
    return found


def _current_weight(module, pname):
    """The weight as the forward pass sees it (after any earlier mask)."""
    if hasattr(module, pname + "_orig") and hasattr(module, pname + "_mask"):
        return getattr(module, pname + "_orig") * getattr(module, pname + "_mask")
    return getattr(module, pname, None)


def _check_amount(amount):
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or \
            not math.isfinite(amount) or not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be a number from 0 to 1 (the fraction of weights to prune;"
                         f" 0 keeps every weight, 1 keeps none), not {amount!r}")


def _keep_count(numel, amount):
    # torch.nn.utils.prune rounds the number of weights to prune the same way.
    return numel - int(round(amount * numel))


def _host_threshold(magnitudes, keep, width):
    """Threshold and tie budget that keep exactly ``keep`` of ``magnitudes``.

    This is the host-side selection of the foundation; the exact-sparsity passes move it into
    the engine.
    """
    n = magnitudes.size
    if keep <= 0:
        return 2 ** (width - 1), 0       # nothing is above the largest magnitude; no ties
    if keep >= n:
        return 0, ALL_TIES
    threshold = int(np.partition(magnitudes, n - keep)[n - keep])
    above = int(np.count_nonzero(magnitudes > threshold))
    return threshold, keep - above


def prune(model, amount=0.5, *, backend="verilator", lanes=16, width=8, granularity="tensor",
          write_back="mask", layers=None, progress=False, **backend_options):
    """Prune every prunable weight of ``model`` through a hardware engine, layer by layer.

    Parameters
    ----------
    model : torch.nn.Module
        Pruned in place, with torch.nn.utils.prune's reparametrisation.
    amount : float
        Fraction of each tensor's weights to prune, from 0 (keep all) to 1 (keep none); the kept
        count is ``numel - round(amount * numel)``, exactly.
    backend : {"verilator", "golden", "cocotb"} or Backend
        How to run the engine.
    lanes, width : int
        Engine parameters: weights per beat (4 to 64) and bits per weight (4, 8 or 16).
    granularity : {"tensor", "channel"}
        Quantization scale per tensor or per output channel. With per-channel scales the engine
        ranks weights by their code, i.e. relative to their channel's largest weight.
    write_back : {"mask", "quantized"}
        ``"mask"`` masks the float weights with the engine's keep mask; ``"quantized"`` also
        replaces ``weight_orig`` with the engine's fixed-point output, dequantized.
    layers : iterable of str, optional
        Prune only these weights (names as in the report, e.g. ``"features.0.weight"``);
        default: every prunable weight.
    progress : bool
        Show a progress bar over the layers.

    Returns
    -------
    PruneReport
        Per-layer numel, kept, sparsity, threshold and engine cycles.
    """
    _check_amount(amount)
    check_params(lanes=lanes, width=width)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    if write_back not in WRITE_BACKS:
        raise ValueError(f"write_back must be one of {WRITE_BACKS}, not {write_back!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    targets = prunable_parameters(model)
    if not targets:
        raise ValueError(f"model has no prunable layer ({_PRUNABLE_DOC})")
    if layers is not None:
        wanted = [layers] if isinstance(layers, str) else list(layers)
        known = {name for name, _, _ in targets}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ValueError(f"no prunable weight named {unknown[0]!r}; "
                             f"prunable weights: {sorted(known)}")
        targets = [t for t in targets if t[0] in wanted]

    # Read and check every weight before anything is written.
    weights = []
    for name, module, pname in targets:
        w = _current_weight(module, pname).detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(w).all():
            bad = int(np.count_nonzero(~np.isfinite(w)))
            raise ValueError(f"layer {name!r} has {bad} NaN or Inf weight(s); "
                             f"nothing was pruned")
        weights.append(w)

    engine = backend if isinstance(backend, Backend) else \
        get_backend(backend, lanes=lanes, width=width, **backend_options)
    if (engine.lanes, engine.width) != (lanes, width):
        raise ValueError(f"backend is built for {engine.lanes} lanes x {engine.width} bits, "
                         f"not {lanes} x {width}")

    plans = []
    for (name, module, pname), w in zip(targets, weights):
        q = quantize(w, width, granularity)
        tiles = tile(q.codes, lanes)
        keep = _keep_count(w.size, amount)
        threshold, budget = _host_threshold(np.abs(q.codes.astype(np.int32)).ravel(), keep, width)
        plans.append((name, module, pname, q, tiles, keep,
                      ThresholdJob(tiles.data, tiles.lane_valid, threshold, budget)))

    results = _run_jobs(engine, [p[-1] for p in plans], progress)

    report = PruneReport(backend=engine.name, lanes=lanes, width=width, amount=float(amount),
                         write_back=write_back)
    installs = []
    for (name, module, pname, q, tiles, keep, job), res in zip(plans, results):
        if res.kept != keep or res.beats != tiles.beats:
            raise RuntimeError(f"engine returned {res.kept} kept weights in {res.beats} beats for "
                               f"{name!r}, expected {keep} in {tiles.beats}; nothing was pruned")
        mask = untile(res.mask, tiles.shape)
        values = untile(res.data, tiles.shape) if write_back == "quantized" else None
        installs.append((module, pname, mask, values, q.scale))
        report.layers.append(LayerReport(
            name=name, shape=tiles.shape, numel=tiles.numel, kept=res.kept,
            threshold=job.threshold, tie_budget=min(job.tie_budget, tiles.numel),
            scale=float(np.max(q.scale)), beats=res.beats, cycles=res.cycles))

    for module, pname, mask, values, scale in installs:
        _install(module, pname, mask, values, scale)
    return report


def _run_jobs(engine, jobs, progress):
    if not progress:
        return engine.threshold_passes(jobs)
    from tqdm import tqdm
    if engine.name == "cocotb":
        # One simulator run for all layers: starting the simulator dominates small layers.
        with tqdm(total=len(jobs), desc=f"{engine.name} engine", unit="layer") as bar:
            results = engine.threshold_passes(jobs)
            bar.update(len(jobs))
        return results
    return [engine.threshold_passes([job])[0] for job in
            tqdm(jobs, desc=f"{engine.name} engine", unit="layer")]


def _install(module, pname, mask, values, scale):
    """Install ``mask`` (and, for quantized write-back, ``values``) the torch.nn.utils.prune way."""
    orig = getattr(module, pname + "_orig", None)
    target = orig if orig is not None else getattr(module, pname)
    mask_t = torch.as_tensor(np.ascontiguousarray(mask), dtype=target.dtype, device=target.device)
    if orig is None:
        torch_prune.custom_from_mask(module, pname, mask_t)
    else:
        # Already pruned: the new mask already excludes the old zeros; update it in place so
        # there is still one mask and one hook, as torch.nn.utils.prune keeps them.
        old = getattr(module, pname + "_mask")
        old.copy_(old * mask_t)
    if values is not None:
        with torch.no_grad():
            real = torch.as_tensor(dequantize(values, scale))
            getattr(module, pname + "_orig").copy_(real.to(target.dtype))
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == pname:
            setattr(module, pname, hook.apply_mask(module))


def remove(model):
    """Make every pruning of ``model`` permanent (torch.nn.utils.prune.remove on each weight).

    Returns the number of weights made permanent.
    """
    count = 0
    for module in model.modules():
        names = [hook._tensor_name for hook in list(module._forward_pre_hooks.values())
                 if isinstance(hook, torch_prune.BasePruningMethod)]
        for pname in names:
            torch_prune.remove(module, pname)
            count += 1
    return count
