"""Channel pruning: the engine measures channel importance, Torch-Pruning removes the channels.

The channel-norm unit accumulates each output channel's L1 (``sum |w|``) and L2 (``sum w^2``) norm
over the quantized weights (or, activation-aware, the L1 of the channel's Wanda scores
``sum_j |W_ij| * s_j``, the score unit's output); :class:`EngineImportance` hands those norms to Torch-Pruning, whose
dependency graph removes the least important channels physically (with every coupled input
channel, bias and norm layer), so the model gets smaller and still runs.
"""

import numpy as np
import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function

from .contract import ChannelJob
from .quant import quantize

__all__ = ["EngineImportance", "channel_jobs", "engine_channel_norms", "prune_channels"]


def channel_jobs(codes, lanes):
    """One :class:`ChannelJob` for a weight's output channels: each channel padded to whole
    beats, ``last`` on its final beat."""
    rows = np.asarray(codes).reshape(codes.shape[0], -1)
    per_row = -(-rows.shape[1] // lanes)
    data = np.zeros((rows.shape[0], per_row * lanes), dtype=np.int16)
    data[:, :rows.shape[1]] = rows
    valid = np.zeros(data.shape, dtype=bool)
    valid[:, :rows.shape[1]] = True
    last = np.zeros((rows.shape[0], per_row), dtype=bool)
    last[:, -1] = True
    return ChannelJob(data.reshape(-1, lanes), valid.reshape(-1, lanes), last.reshape(-1))


def engine_channel_norms(engine, weights, width, *, p=1, column_norms=None):
    """Per-output-channel L``p`` norms of each weight, accumulated by ``engine``.

    ``weights`` maps a key to a float array; returns ``(norms, cycles)`` where ``norms`` maps the
    key to a float64 array of real-valued norms (codes x scale, so layers are comparable).

    ``column_norms`` (key -> the calibrated L2 norm of each input feature, as
    :func:`hwprune.calibrate` measures them) makes the importance activation-aware: the score
    unit first turns every weight into its Wanda score ``|W_ij| * s_j``, and the channel-norm
    unit sums a channel's scores (``p=1``: ``sum_j |W_ij| * s_j``, in real units).
    """
    keys, jobs, scales, cycles = [], [], [], {}
    for key, w in weights.items():
        q = quantize(w, width)
        keys.append(key)
        job = channel_jobs(q.codes, engine.lanes)
        scale = float(q.scale)
        if column_norms is not None:
            job, scale, cycles[key] = _scored(engine, job, q, column_norms[key], width)
        jobs.append(job)
        scales.append(scale)
    results = engine.run("channel_norms", jobs)
    norms = {}
    for key, job, res, scale in zip(keys, jobs, results, scales):
        channels = int(job.last.sum())
        if len(res.l1) != channels or res.beats != job.data.shape[0]:
            raise RuntimeError(f"channel-norm unit returned {len(res.l1)} channels in {res.beats} "
                               f"beats for {key!r}, expected {channels} in {job.data.shape[0]}")
        norms[key] = (res.l1 * scale if p == 1 else np.sqrt(res.l2) * scale).astype(np.float64)
        cycles[key] = cycles.get(key, 0) + res.cycles
    return norms, cycles


def _scored(engine, job, q, norms, width):
    """The channel job with every weight replaced by its score (the score unit's pass), the
    real value of one score step, and the pass's cycles."""
    from .contract.score_unit import ScoreJob, scale_codes
    norms = np.asarray(norms, dtype=np.float64)
    cols = q.codes.reshape(q.codes.shape[0], -1).shape[1]
    if norms.shape != (cols,):
        raise ValueError(f"the calibration has {norms.size} input features for a weight of "
                         f"{cols} columns")
    from .scores import RowTiles
    tiles = RowTiles(q.codes.reshape(q.codes.shape[0], -1), engine.lanes)
    res, = engine.run("score_unit", [ScoreJob(job.data, tiles.spread(scale_codes(norms, width)),
                                              job.lane_valid, width)])
    top = float(norms.max()) if norms.size else 0.0
    step = float(q.scale) * top * 2 ** width / (2 ** width - 1)
    return ChannelJob(res.data, job.lane_valid, job.last), step, res.cycles


class EngineImportance(tp.importance.Importance):
    """A Torch-Pruning importance that returns the engine's channel norms.

    For a group rooted at a Conv/Linear output-channel pruning, the importance of each channel is
    the norm the engine measured for it; other groups are left alone (``None``).
    """

    def __init__(self, norms):
        self.norms = norms      # module -> array of per-output-channel norms

    @torch.no_grad()
    def __call__(self, group):
        dep, idxs = group[0]
        if dep.layer not in self.norms or dep.pruning_fn not in (
                function.prune_conv_out_channels, function.prune_linear_out_channels):
            return None
        return torch.as_tensor(self.norms[dep.layer], dtype=torch.float32)[list(idxs)]


def prune_channels(model, targets, weights, engine, *, amount, example_inputs, ignored_layers,
                   global_scope, p=1, calibration=None):
    """Remove ``amount`` of the output channels of the Conv/Linear ``targets`` (in place).

    Returns ``(per_layer, totals)``: per layer ``(name, shape_before, shape_after, cycles)``, and
    the parameter and MAC counts before and after.
    """
    convs = [(name, module, w) for (name, module, pname), w in zip(targets, weights)
             if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and pname == "weight"
             and module not in ignored_layers]
    if not convs:
        raise ValueError("pattern 'channel' found no Conv/Linear layer to prune outside "
                         "ignored_layers")
    column_norms = None if calibration is None else \
        {module: calibration[f"{name}"] for name, module, _ in convs}
    norms, cycles = engine_channel_norms(engine, {module: w for _, module, w in convs},
                                         engine.width, p=p, column_norms=column_norms)
    macs_before, params_before = tp.utils.count_ops_and_params(model, example_inputs)
    shapes_before = {module: tuple(module.weight.shape) for _, module, _ in convs}
    pruner = tp.pruner.BasePruner(model, example_inputs, importance=EngineImportance(norms),
                                  pruning_ratio=amount, ignored_layers=list(ignored_layers),
                                  global_pruning=global_scope)
    pruner.step()
    macs_after, params_after = tp.utils.count_ops_and_params(model, example_inputs)
    per_layer = [(name, shapes_before[module], tuple(module.weight.shape), cycles[module])
                 for name, module, _ in convs]
    totals = {"params_before": int(params_before), "params_after": int(params_after),
              "macs_before": int(macs_before), "macs_after": int(macs_after)}
    return per_layer, totals
