"""The host driver: prune a PyTorch model by streaming its weights through a hardware engine.

Every prunable weight tensor is quantized to ``width``-bit fixed point, cut into tiles of
``lanes`` weights, and streamed through the threshold engine. The engine's keep mask (or its
fixed-point output) is then installed with torch.nn.utils.prune's convention: ``weight_orig``,
``weight_mask`` and a forward pre-hook, so existing code (``prune.remove``, ``prune.is_pruned``)
keeps working.

Nothing is written to the model until every tensor has been checked and run: bad input raises a
clear error and leaves the model as it was. The masks are then installed all or nothing: an
interruption while they are written (``KeyboardInterrupt``, an error in the third tensor) puts
back every tensor already written.
"""

import inspect
import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .backends import Backend, get_backend
from .contract import NMJob, ThresholdJob, select_threshold_passes
from .contract.blocks import block as describe
from .patterns import nm_rows, nm_unrows, parse_pattern
from .quant import GRANULARITIES, dequantize, quantize, tile, untile
from .report import LayerReport, PruneReport

__all__ = ["prune", "remove", "prunable_parameters", "WRITE_BACKS", "SCOPES"]

WRITE_BACKS = ("mask", "quantized", "inplace")
SCOPES = ("layer", "global")
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


def select_layers(targets, layers):
    """The ``(name, module, param_name)`` targets named in ``layers`` (all for ``None``); an
    unknown name is an error that lists the prunable weights."""
    if layers is None:
        return targets
    wanted = [layers] if isinstance(layers, str) else list(layers)
    known = {name for name, _, _ in targets}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(f"no prunable weight named {unknown[0]!r}; "
                         f"prunable weights: {sorted(known)}")
    return [t for t in targets if t[0] in wanted]


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


#: pattern kind -> the hardware blocks a prune of that kind runs
_BLOCKS_FOR = {"unstructured": ("threshold_engine", "magnitude_histogram"),
               "nm": ("nm_selector",), "channel": ("channel_norms",)}


def prune(model, amount=0.5, *, pattern="unstructured", scope="layer", backend="verilator",
          lanes=16, width=8, granularity="tensor", write_back="mask", layers=None,
          example_inputs=None, ignored_layers=None, progress=False, cluster=None, address=None,
          criterion="magnitude", calibration=None, group=None, **backend_options):
    """Prune ``model``'s weights through the hardware engines.

    Parameters
    ----------
    model : torch.nn.Module
        Pruned in place, with torch.nn.utils.prune's reparametrisation (or, for
        ``pattern="channel"``, by removing channels physically).
    amount : float
        Fraction of weights (or channels) to prune, from 0 to 1. Unstructured pruning keeps
        exactly ``numel - round(amount * numel)`` weights per tensor (``scope="layer"``) or over
        all tensors together (``scope="global"``): 0 keeps every weight, 1 keeps none. Ignored by
        N:M patterns, whose sparsity is N/M by definition.
    pattern : str
        ``"unstructured"``; ``"N:M"`` (e.g. ``"2:4"``): the N largest magnitudes of every group of
        M consecutive input weights (M in {4, 8}), ties to the lower index, as NVIDIA ASP; or
        ``"channel"``: remove whole output channels ranked by the engine's L1 norms through
        Torch-Pruning's dependency graph (needs ``example_inputs``).
    scope : {"layer", "global"}
        One threshold per tensor, or one threshold across all tensors (as
        ``torch.nn.utils.prune.global_unstructured``). Global scope quantizes every tensor with
        one common scale, so weights of differently scaled tensors are ranked by their real
        magnitude.
    backend : {"verilator", "golden", "torch", "cocotb", "uart-sim", "serial"} or Backend
        How to run the engines. ``"torch"`` runs every block's semantics as tensor operations
        (``device="cpu"`` or ``"cuda"``), bit-identical to the RTL, on whole tensors in bounded
        memory: the fast path for large models.
    lanes, width : int
        Engine parameters: weights per beat (4 to 64) and bits per weight (4, 8 or 16).
    granularity : {"tensor", "channel"}
        Quantization scale per tensor or per output channel (layer scope only). With per-channel
        scales the engine ranks weights by their code, i.e. relative to their channel's largest.
    write_back : {"mask", "quantized", "inplace"}
        ``"mask"`` masks the float weights with the engine's keep mask; ``"quantized"`` also
        replaces ``weight_orig`` with the engine's fixed-point output, dequantized;
        ``"inplace"`` zeroes the pruned weights where they are, with no reparametrisation (no
        ``weight_orig`` / ``weight_mask``: for big models and users who need no masks; a weight
        pruned before with masks gets its ``weight_orig`` and ``weight_mask`` zeroed as well).
    layers : iterable of str, optional
        Prune only these weights (names as in the report, e.g. ``"features.0.weight"``).
    example_inputs : torch.Tensor, optional
        An input batch, for ``pattern="channel"`` (Torch-Pruning traces the model with it).
    ignored_layers : iterable of nn.Module, optional
        Modules ``pattern="channel"`` must not shrink; default: the last Conv/Linear layer (the
        classifier's output).
    progress : bool
        Show a progress bar over the layers.
    cluster : {None, "ray"}
        ``"ray"`` sends shards of the model (whole tensors, balanced by size) to the workers of
        a Ray cluster (:mod:`hwprune.cluster`), each running ``backend``; global scope stays
        exact across shards through additive histograms. Results are bit-identical to one
        machine. Unstructured and N:M patterns.
    address : str, optional
        With ``cluster="ray"``: the cluster to join; ``None`` starts Ray embedded on this
        machine (loopback address, token authentication on).
    criterion : {"magnitude", "activation"}
        Rank weights by ``|w|``, or by Wanda's ``|W_ij| * s_j`` with ``s_j`` the calibrated L2
        norm of input feature ``j``, computed by the engine's score unit in fixed point
        (:mod:`hwprune.scores`).
    calibration : Calibration or calibration inputs
        For ``criterion="activation"``: what :func:`hwprune.calibrate` returned (reused as
        is), or inputs to calibrate with now (a tensor, a list of tensors, a DataLoader or a
        callable ``f(model)``), on this backend.
    group : {"row", "layer", "global"}, optional
        Where the kept count is exact: per output row (Wanda's comparison groups; the row-select
        and row-mask units), per tensor, or over all tensors. Default: ``scope``.

    Returns
    -------
    PruneReport
        Per-layer numel, kept, sparsity, threshold and engine cycles.

    How the threshold is found: the magnitude-histogram unit counts every weight's magnitude in
    one pass (two radix passes, high byte then low byte, at width 16) and its select walk
    reports the k-th largest magnitude and how many ties at it to keep; the threshold engine then
    keeps ties in stream order until that budget is spent. The host configures passes and reads
    registers; it never sorts.
    """
    _check_options(backend, backend_options)
    _check_amount(amount)
    shape = parse_pattern(pattern)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    if write_back not in WRITE_BACKS:
        raise ValueError(f"write_back must be one of {WRITE_BACKS}, not {write_back!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    from .scores import CRITERIA, GROUPS
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
    if group is None:
        group = scope
    elif group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, not {group!r}")
    elif scope != "layer" and scope != group:
        raise ValueError(f"scope={scope!r} and group={group!r} disagree; give one of them")
    scope = "global" if group == "global" else "layer"
    scored = criterion == "activation" or group == "row"
    if criterion == "magnitude" and calibration is not None:
        raise ValueError("calibration= is used by criterion='activation' only; the magnitude "
                         "criterion would ignore it")
    if criterion == "activation" and calibration is None:
        raise ValueError("criterion='activation' needs calibration= (what hwprune.calibrate "
                         "returns, or calibration inputs)")
    if group == "row" and shape.kind == "channel":
        raise ValueError("pattern 'channel' ranks whole channels; group='row' applies to "
                         "unstructured patterns")
    if shape.kind == "nm" and group == "row":
        raise ValueError(f"pattern {str(shape)!r} keeps N of every M weights; group='row' does "
                         f"not apply to it")
    if scored and cluster:
        raise ValueError("cluster='ray' runs magnitude pruning per layer or globally; "
                         "activation-aware and per-row pruning run on this machine")
    if scope == "global" and shape.kind == "unstructured" and granularity != "tensor":
        raise ValueError("scope='global' ranks all tensors on one common scale; "
                         "it needs granularity='tensor'")
    if shape.kind == "nm" and lanes % shape.m:
        raise ValueError(f"pattern {str(shape)!r} needs lanes to be a multiple of {shape.m} so "
                         f"that groups never straddle beats, not {lanes}")
    # The blocks this prune runs, each checked against its own parameter domain (the same check
    # the RTL, the golden model and every backend make).
    blocks = _BLOCKS_FOR[shape.kind]
    if scored and shape.kind == "channel":
        blocks = ("score_unit",) + blocks
    elif scored:
        blocks = (("score_unit",) if criterion == "activation" else ()) + \
            (("row_select", "row_mask") if group == "row" and shape.kind != "nm" else blocks)
    for name in blocks:
        describe(name).check(lanes=lanes, width=width)
    if shape.kind == "channel" and example_inputs is None:
        raise ValueError("pattern 'channel' needs example_inputs (an input batch) to trace the "
                         "model's channel dependencies")
    if cluster not in (None, "ray"):
        raise ValueError(f"cluster must be None or 'ray', not {cluster!r}")
    if cluster is None and address is not None:
        raise ValueError("address is the Ray cluster to join: it needs cluster='ray'")
    if cluster and shape.kind == "channel":
        raise ValueError("cluster='ray' runs unstructured and N:M patterns; channel pruning "
                         "traces one model and runs on this machine")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    targets = prunable_parameters(model)
    if not targets:
        raise ValueError(f"model has no prunable layer ({_PRUNABLE_DOC})")
    targets = select_layers(targets, layers)

    engine = backend if isinstance(backend, Backend) else \
        get_backend(backend, lanes=lanes, width=width, **backend_options)
    if (engine.lanes, engine.width) != (lanes, width):
        raise ValueError(f"backend is built for {engine.lanes} lanes x {engine.width} bits, "
                         f"not {lanes} x {width}")
    # Read and check every weight before anything is written. The tensor path (backend
    # "torch") reads each weight where it lies, in chunks, and keeps no copy of the model.
    tensor_path = getattr(engine, "tensor_path", False) and shape.kind != "channel" \
        and not cluster and not scored
    weights = []
    for name, module, pname in targets:
        w = _readable_weight(name, _current_weight(module, pname))
        if tensor_path:
            from .tensor_prune import check_finite
            check_finite(name, w)
            weights.append(w)
            continue
        w = w.detach().to("cpu", torch.float32).numpy()
        # min and max propagate NaN and show Inf: no mask of the tensor unless one is there.
        if w.size and not (np.isfinite(w.min()) and np.isfinite(w.max())):
            bad = int(np.count_nonzero(~np.isfinite(w)))
            raise ValueError(f"layer {name!r} has {bad} NaN or Inf weight(s); "
                             f"nothing was pruned")
        weights.append(w)

    engine.prepare(*blocks)  # builds (verilator, cocotb) fail here, before the model is touched
    report = PruneReport(backend=engine.name, lanes=lanes, width=width, amount=float(amount),
                         write_back=write_back, pattern=str(shape), scope=group)
    if criterion == "activation":
        from .calibration import Calibration, calibrate
        from .scores import check_calibration
        if not isinstance(calibration, Calibration):
            calibration = calibrate(model, calibration, backend=engine,
                                    layers=[name for name, _, _ in targets], progress=progress)
        check_calibration(calibration, targets, weights)

    if shape.kind == "channel":
        return _prune_channels(model, targets, weights, engine, report, amount=amount,
                               example_inputs=example_inputs, ignored_layers=ignored_layers,
                               scope=scope, calibration=calibration)
    if scored:
        from .scores import plan_scored
        planned = plan_scored(targets, weights, engine, amount=amount, criterion=criterion,
                              calibration=calibration, group=group, shape=shape,
                              granularity=granularity, progress=progress, report=report,
                              plan=_Plan)
    elif cluster:
        planned = _plan_on_cluster(targets, weights, engine, backend, backend_options, shape,
                                   scope, amount, granularity, report, address)
    elif tensor_path:
        planned = _plan_tensors(targets, weights, engine, shape, scope, amount, granularity,
                                progress, report, write_back)
    elif shape.kind == "nm":
        planned = _plan_nm(targets, weights, engine, shape, granularity, progress)
    elif scope == "global":
        planned = _plan_global(targets, weights, engine, amount, progress, report)
    else:
        planned = _plan_layers(targets, weights, engine, amount, granularity, progress)

    installs = []
    for plan in planned:
        values = plan.values if write_back == "quantized" else None
        installs.append((plan.module, plan.pname, plan.mask, values, plan.scale))
        report.layers.append(plan.layer)
    if write_back == "inplace":
        _zero_all(installs)
    else:
        _install_all(installs)
    return report


def _check_options(backend, options):
    """Unknown keywords name the valid ones: prune's own and the backend's."""
    from .backends import BACKENDS, backend_options
    if not options or not (isinstance(backend, Backend) or backend in BACKENDS):
        return    # an unknown backend name gets its own error from get_backend
    takes = [] if isinstance(backend, Backend) else backend_options(BACKENDS[backend])
    unknown = sorted(set(options) - set(takes))
    if unknown:
        own = [p for p in inspect.signature(prune).parameters
               if p not in ("model", "backend_options")]
        where = ("a backend object takes none (its options are set when it is made)"
                 if isinstance(backend, Backend) else f"backend {backend!r} takes {takes}")
        raise TypeError(f"prune() got an unknown keyword {unknown[0]!r}; prune's keywords are "
                        f"{own}, and {where}")


def _readable_weight(name, w):
    """``w`` if hwprune can read it, else hwprune's own error naming the layer."""
    if w.is_meta:
        raise ValueError(f"layer {name!r} is on the meta device (it has a shape but no data): "
                         f"materialise the model first (model.to_empty(device='cpu') and load "
                         f"its weights); nothing was pruned")
    if w.layout != torch.strided or w.is_quantized:
        kind = "quantized" if w.is_quantized else str(w.layout).replace("torch.", "")
        raise ValueError(f"layer {name!r} is a {kind} tensor; hwprune prunes dense floating-point "
                         f"weights only; nothing was pruned")
    if not w.is_floating_point():
        raise ValueError(f"layer {name!r} has dtype {w.dtype}; hwprune prunes floating-point "
                         f"weights only; nothing was pruned")
    return w


def _install_all(installs):
    """Install every mask, or none: on any exception (KeyboardInterrupt included) the tensors
    already written are put back as they were, and the exception goes on."""
    saved = [_snapshot(module, pname, values is not None)
             for module, pname, _, values, _ in installs]
    try:
        for module, pname, mask, values, scale in installs:
            _install(module, pname, mask, values, scale)
    except BaseException:
        for snap in reversed(saved):
            _restore(*snap)
        raise


def _snapshot(module, pname, writes_values):
    # What _install changes: the parameter and buffer tables, the hooks, the plain attribute,
    # and the data it writes in place (the mask of a weight pruned before; the weight itself
    # for a quantized write-back). Only those are copied, so a plain first prune costs no
    # memory.
    if hasattr(module, pname + "_orig"):
        names = [pname + "_mask"] + ([pname + "_orig"] if writes_values else [])
    else:
        names = [pname] if writes_values else []
    data = {n: getattr(module, n).detach().clone() for n in names}
    return (module, pname, dict(module._parameters), dict(module._buffers),
            dict(module._forward_pre_hooks), module.__dict__.get(pname, _MISSING), data)


_MISSING = object()


def _restore(module, pname, parameters, buffers, hooks, attribute, data):
    module._parameters.clear()
    module._parameters.update(parameters)
    module._buffers.clear()
    module._buffers.update(buffers)
    module._forward_pre_hooks.clear()
    module._forward_pre_hooks.update(hooks)
    if attribute is _MISSING:
        module.__dict__.pop(pname, None)
    else:
        module.__dict__[pname] = attribute
    with torch.no_grad():
        for n, value in data.items():
            getattr(module, n).copy_(value)


class _Plan:
    """What the engines decided for one tensor, before anything is written."""

    __slots__ = ("module", "pname", "mask", "values", "scale", "layer")

    def __init__(self, module, pname, mask, values, scale, layer):
        self.module, self.pname, self.mask, self.values = module, pname, mask, values
        self.scale, self.layer = scale, layer


def _bar(items, engine, progress, desc, total=None):
    if not progress:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=f"{desc} ({engine.name})", unit="layer", total=total)


def _per_tensor(engine, plan_one, targets, weights, progress, desc):
    """``plan_one`` over every tensor, spread over the backend's workers (largest first), in
    model order."""
    items = list(zip(targets, weights))
    return list(_bar(engine.map(plan_one, items, cost=lambda item: item[1].size), engine,
                     progress, desc, total=len(items)))


def _search_threshold(engine, tiles_data, lane_valid, width, keep):
    """Threshold, tie budget and the passes' results, found by the histogram unit."""
    def run_pass(job):
        return engine.run("magnitude_histogram", [job])[0]
    threshold, ties, passes = select_threshold_passes(run_pass, tiles_data, lane_valid, width,
                                                      keep)
    counted = passes[0].counted
    real = int(np.count_nonzero(lane_valid))
    if counted != real:
        raise RuntimeError(f"histogram unit counted {counted} weights, expected {real}; "
                           f"nothing was pruned")
    return threshold, ties, passes


def _check_mask_pass(name, res, keep, beats):
    if res.kept != keep or res.beats != beats:
        raise RuntimeError(f"engine returned {res.kept} kept weights in {res.beats} beats for "
                           f"{name!r}, expected {keep} in {beats}; nothing was pruned")


def _plan_layers(targets, weights, engine, amount, granularity, progress):
    def plan_one(item):
        (name, module, pname), w = item
        q = quantize(w, engine.width, granularity)
        tiles = tile(q.codes, engine.lanes)
        keep = _keep_count(w.size, amount)
        with engine.same_inputs():      # the same tiles go to the histogram and the mask pass
            threshold, ties, passes = _search_threshold(engine, tiles.data, tiles.lane_valid,
                                                        engine.width, keep)
            res, = engine.threshold_passes([ThresholdJob(tiles.data, tiles.lane_valid,
                                                         threshold, ties)])
        _check_mask_pass(name, res, keep, tiles.beats)
        return _Plan(module, pname, untile(res.mask, tiles.shape),
                     untile(res.data, tiles.shape), q.scale, LayerReport(
                         name=name, shape=tiles.shape, numel=tiles.numel, kept=res.kept,
                         threshold=threshold, tie_budget=ties,
                         scale=float(np.max(q.scale)), beats=res.beats,
                         cycles=res.cycles + sum(p.cycles for p in passes)))
    return _per_tensor(engine, plan_one, targets, weights, progress, "threshold search + mask")


def _plan_global(targets, weights, engine, amount, progress, report):
    scale = _common_scale(weights, engine.width)
    tiled = []
    for w in weights:
        q = quantize(w, engine.width, scale=scale)
        tiled.append((q, tile(q.codes, engine.lanes)))
    total = sum(w.size for w in weights)
    keep = _keep_count(total, amount)
    # One histogram over every tensor (the banks accumulate across them), one select.
    data = np.concatenate([t.data for _, t in tiled])
    valid = np.concatenate([t.lane_valid for _, t in tiled])
    threshold, ties, passes = _search_threshold(engine, data, valid, engine.width, keep)
    report.search_cycles = sum(p.cycles for p in passes)
    plans, budget, kept = [], ties, 0
    for (name, module, pname), (q, tiles) in _bar(list(zip(targets, tiled)), engine, progress,
                                                  "global mask"):
        res, = engine.threshold_passes([ThresholdJob(tiles.data, tiles.lane_valid, threshold,
                                                     budget)])
        budget, kept = res.ties_left, kept + res.kept
        plans.append(_Plan(module, pname, untile(res.mask, tiles.shape),
                           untile(res.data, tiles.shape), scale, LayerReport(
                               name=name, shape=tiles.shape, numel=tiles.numel, kept=res.kept,
                               threshold=threshold, tie_budget=ties, scale=float(scale),
                               beats=res.beats, cycles=res.cycles)))
    if kept != keep:
        raise RuntimeError(f"engine kept {kept} weights over all tensors, expected {keep}; "
                           f"nothing was pruned")
    return plans


def _plan_nm(targets, weights, engine, shape, granularity, progress):
    def plan_one(item):
        (name, module, pname), w = item
        q = quantize(w, engine.width, granularity)
        rows, row_valid = nm_rows(q.codes, shape.m)
        tiles = tile(rows, engine.lanes)
        valid = tile(row_valid, engine.lanes).data.astype(bool)
        groups = row_valid.reshape(-1, shape.m).sum(axis=1)
        keep = int(np.minimum(groups, shape.n).sum())
        res, = engine.run("nm_selector", [NMJob(tiles.data, valid, shape.m, shape.n)])
        _check_mask_pass(name, res, keep, tiles.beats)
        mask = nm_unrows(untile(res.mask, rows.shape), q.codes.shape)
        values = nm_unrows(untile(res.data, rows.shape), q.codes.shape)
        return _Plan(module, pname, mask, values, q.scale, LayerReport(
            name=name, shape=q.codes.shape, numel=w.size, kept=res.kept, threshold=0,
            tie_budget=0, scale=float(np.max(q.scale)), beats=res.beats, cycles=res.cycles))
    return _per_tensor(engine, plan_one, targets, weights, progress, f"{shape} select")


def _prune_channels(model, targets, weights, engine, report, *, amount, example_inputs,
                    ignored_layers, scope, calibration=None):
    from .channel import prune_channels
    convs = [m for _, m, p in targets if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    if ignored_layers is None:
        ignored_layers = convs[-1:]          # the classifier's output layer
    per_layer, totals = prune_channels(model, targets, weights, engine, amount=amount,
                                       example_inputs=example_inputs,
                                       ignored_layers=list(ignored_layers),
                                       global_scope=(scope == "global"),
                                       calibration=calibration)
    for name, before, after, cycles in per_layer:
        numel = int(np.prod(before))
        report.layers.append(LayerReport(
            name=name, shape=before, numel=numel, kept=int(np.prod(after)), threshold=0,
            tie_budget=0, scale=0.0, beats=0, cycles=cycles, shape_after=after))
    report.totals.update(totals)
    return report


def _plan_tensors(targets, weights, engine, shape, scope, amount, granularity, progress, report,
                  write_back):
    """The torch backend's plans (:mod:`hwprune.tensor_prune`): whole tensors, bounded memory.
    With ``write_back="inplace"`` each mask is kept as packed bits until every tensor is planned."""
    from . import tensor_prune as tp
    items = [(name, w) for (name, _, _), w in zip(targets, weights)]
    keep_values = write_back == "quantized"

    desc = f"{shape} select" if shape.kind == "nm" else \
        ("global mask" if scope == "global" else "threshold search + mask")

    def bar(seq):
        return _bar(list(seq), engine, progress, desc)
    if shape.kind == "nm":
        planned = tp.plan_nm(items, engine, shape, granularity, bar)
    elif scope == "global":
        planned = tp.plan_global(items, engine, lambda n: _keep_count(n, amount), bar, report,
                                 keep_values, pack=write_back == "inplace")
    else:
        planned = tp.plan_layers(items, engine, lambda n: _keep_count(n, amount), granularity,
                                 bar)
    for (name, module, pname), (mask, values, scale, layer) in zip(targets, planned):
        if write_back == "inplace" and torch.is_tensor(mask):
            mask = tp.pack_bits(mask)
        elif keep_values:
            codes, keep = values
            values = torch.where(keep, codes, 0)
        yield _Plan(module, pname, mask, values if keep_values else None, scale, layer)


def _plan_on_cluster(targets, weights, engine, backend, options, shape, scope, amount,
                     granularity, report, address):
    """Shards of the model on a Ray cluster (:mod:`hwprune.cluster`), each on ``backend``."""
    from .cluster import pool as ray_pool, shards
    workers = ray_pool(address)
    groups = shards([w.size for w in weights], workers.workers)
    spec = dict(backend=engine if isinstance(backend, Backend) else backend,
                lanes=engine.lanes, width=engine.width, options=options)

    def run(kind, per_tensor=None, **kw):
        tasks = [dict(spec, kind=kind, names=[targets[i][0] for i in g],
                      weights=[weights[i] for i in g],
                      per_tensor=[per_tensor[i] for i in g] if per_tensor else None, **kw)
                 for g in groups]
        out = [None] * len(weights)
        for g, results in zip(groups, workers.map(_shard_task, tasks)):
            for i, r in zip(g, results):
                out[i] = r
        return out

    if shape.kind == "nm":
        plans = run("nm", shape=shape, granularity=granularity)
    elif scope == "layer":
        plans = run("layers", amount=amount, granularity=granularity)
    else:
        plans = _global_on_cluster(run, weights, engine.width, engine.lanes, amount, report)
    for (name, module, pname), plan in zip(targets, plans):
        plan.module, plan.pname = module, pname
    return plans


def _global_on_cluster(run, weights, width, lanes, amount, report):
    """Global exact-k over shards: the contract's histogram passes, each counted on every shard
    (additive) and walked here once; then every tensor's share of the tie budget is known before
    the masking passes run on every shard."""
    from .contract import HistogramResult
    from .contract.magnitude_histogram import stall_free_cycles
    from .torch_backend import select_walk
    scale = _common_scale(weights, width)
    total = sum(w.size for w in weights)
    keep = _keep_count(total, amount)
    beats = sum(-(-w.size // lanes) for w in weights)
    per_tensor = []                         # the last pass's counts, tensor by tensor

    def run_pass(job):
        per_tensor[:] = run("histogram", scale=scale, shift=job.shift,
                            match=job.match_value if job.match_en else None)
        counts = sum(per_tensor)
        found, above, ties = select_walk(counts, job.keep)
        return HistogramResult(found_bin=found, above=above, ties=ties,
                               counted=int(counts.sum()),
                               cycles=stall_free_cycles(beats, width))
    threshold, ties, passes = select_threshold_passes(run_pass, None, None, width, keep)
    if passes[0].counted != total:
        raise RuntimeError(f"shards counted {passes[0].counted} weights, expected {total}; "
                           f"nothing was pruned")
    report.search_cycles = sum(p.cycles for p in passes)
    at = passes[-1].found_bin                 # the threshold's bin in the last pass
    budgets, left = [], ties
    for c in per_tensor:                      # model order: the unit's stream order
        budgets.append(left)
        left -= min(int(c[at]), left)
    plans = run("mask", per_tensor=budgets, scale=scale, threshold=threshold, ties=ties)
    kept = sum(p.layer.kept for p in plans)
    if kept != keep:
        raise RuntimeError(f"engine kept {kept} weights over all shards, expected {keep}; "
                           f"nothing was pruned")
    return plans


def _common_scale(weights, width):
    qmax = 2 ** (width - 1) - 1
    amax = max(float(np.abs(w).max(initial=0.0)) for w in weights)
    return np.asarray(amax / qmax if amax > 0 else 1.0)


def _shard_task(task):
    """One shard on one cluster worker: its tensors through the chosen backend."""
    options = dict(task["options"])
    backend = task["backend"]
    if backend == "verilator":
        options.setdefault("workers", 1)        # one core per task: the cluster spreads them
    engine = backend if isinstance(backend, Backend) else \
        get_backend(backend, lanes=task["lanes"], width=task["width"], **options)
    names, weights = task["names"], task["weights"]
    targets = [(name, None, None) for name in names]
    kind = task["kind"]
    if kind == "layers":
        return _plan_layers(targets, weights, engine, task["amount"], task["granularity"], False)
    if kind == "nm":
        return _plan_nm(targets, weights, engine, task["shape"], task["granularity"], False)
    out = []
    for name, w, budget in zip(names, weights, task["per_tensor"] or [None] * len(names)):
        q = quantize(w, engine.width, scale=task["scale"])
        tiles = tile(q.codes, engine.lanes)
        if kind == "histogram":
            from .torch_backend import histogram_counts
            counts = histogram_counts(torch.from_numpy(tiles.data), engine.width, task["shift"],
                                      task["match"], torch.from_numpy(tiles.lane_valid))
            out.append(counts.numpy())
            continue
        res, = engine.threshold_passes([ThresholdJob(tiles.data, tiles.lane_valid,
                                                     task["threshold"], budget)])
        out.append(_Plan(None, None, untile(res.mask, tiles.shape), untile(res.data, tiles.shape),
                         q.scale, LayerReport(name=name, shape=tiles.shape, numel=tiles.numel,
                                              kept=res.kept, threshold=task["threshold"],
                                              tie_budget=task["ties"], scale=float(q.scale),
                                              beats=res.beats, cycles=res.cycles)))
    return out


def _zero_all(installs):
    """``write_back="inplace"``: zero every pruned weight where it lies. Every mask was computed
    before this starts, so nothing here can fail on the data; an interrupt (Ctrl-C) that arrives
    while the weights are written is held until the last one is done, then raised, so the model
    is never half-written."""
    with _interrupts_held():
        for module, pname, mask, _, _ in installs:
            targets = [getattr(module, pname)]
            if hasattr(module, pname + "_orig"):
                targets = [getattr(module, pname + "_orig"), getattr(module, pname + "_mask")]
            for t in targets:
                _zero_where_pruned(t, mask)
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == pname:
                    setattr(module, pname, hook.apply_mask(module))


def _zero_where_pruned(t, mask):
    from .tensor_prune import CHUNK, unpack_bits
    with torch.no_grad():
        if isinstance(mask, tuple):                  # packed bits, chunk by chunk
            packed, n = mask
            flat = t.view(-1) if t.is_contiguous() else None
            if flat is None:
                keep = unpack_bits(packed, n, 0, n).reshape(t.shape)
                t.masked_fill_(~keep.to(t.device), 0)
                return
            for a in range(0, n, CHUNK):
                b = min(a + CHUNK, n)
                flat[a:b].masked_fill_(~unpack_bits(packed, n, a, b).to(t.device), 0)
        else:
            keep = torch.as_tensor(np.ascontiguousarray(mask) if isinstance(mask, np.ndarray)
                                   else mask).to(t.device, torch.bool)
            t.masked_fill_(~keep.reshape(t.shape), 0)


class _interrupts_held:
    """Hold SIGINT (KeyboardInterrupt) until the block ends, then raise it (main thread only)."""

    def __enter__(self):
        import signal
        import threading
        self._old, self._caught = None, False
        if threading.current_thread() is threading.main_thread():
            def hold(signum, frame):
                self._caught = True
            self._old = signal.signal(signal.SIGINT, hold)
        return self

    def __exit__(self, *exc):
        import signal
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        if self._caught and exc[0] is None:
            raise KeyboardInterrupt
        return False


def _install(module, pname, mask, values, scale):
    """Install ``mask`` (and, for quantized write-back, ``values``) the torch.nn.utils.prune way."""
    orig = getattr(module, pname + "_orig", None)
    target = orig if orig is not None else getattr(module, pname)
    if not torch.is_tensor(mask):        # a read-only array (from a cluster worker) is copied
        mask = np.asarray(mask)
        mask = torch.from_numpy(mask if mask.flags.writeable else mask.copy())
    mask_t = mask.to(target.device, target.dtype)
    if orig is None:
        # What torch_prune.custom_from_mask does for a weight pruned for the first time, minus
        # its multiplication of the mask by a tensor of ones: the same parameter, buffer and hook.
        method = torch_prune.CustomFromMask(mask_t)
        method._tensor_name = pname
        module.register_parameter(pname + "_orig", target)
        del module._parameters[pname]
        module.register_buffer(pname + "_mask", mask_t)
        module.register_forward_pre_hook(method)
        if values is None:
            setattr(module, pname, method.apply_mask(module))
            return
    else:
        # Already pruned: the new mask already excludes the old zeros; update it in place so
        # there is still one mask and one hook, as torch.nn.utils.prune keeps them.
        old = getattr(module, pname + "_mask")
        old.copy_(old * mask_t)
    if values is not None:
        with torch.no_grad():
            real = ((values.double() * torch.as_tensor(scale, device=values.device)).float()
                    if torch.is_tensor(values) else torch.as_tensor(dequantize(values, scale)))
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
