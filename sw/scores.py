"""Activation-aware (Wanda) and per-row pruning on the engines.

:func:`hwprune.prune` comes here for ``criterion="activation"`` (rank ``|W_ij| * s_j``, with
``s_j`` the calibrated L2 norm of input feature ``j``: :func:`hwprune.calibrate`) and for
``group="row"`` (compare within each output row, Wanda's groups) with either criterion.

Every weight is a row of its matrix (``W.reshape(rows, -1)``: a Linear's output rows, a
convolution's output channels over ``(in, *kernel)``, an RNN gate row over its input or hidden
features: the order in which :func:`hwprune.calibrate` counts input features). The engine passes:

1. **score unit** (activation criterion): each row's weight codes with their columns' scale
   codes beside them; back come the scores, ``(|w| * s) >> width`` (fixed point and rounding:
   :mod:`hwprune.contract.score_unit`). The magnitude criterion streams the codes themselves.
2. the comparison group:

   - ``"row"``: the **row-select unit** (``width / 4`` digit passes, every row's exact-k at
     once, a row costing its beats) and the **row-mask unit** (per-row threshold and tie
     budget; mask bits back);
   - ``"layer"`` / ``"global"``: the **magnitude histogram** and the **threshold engine** on
     the scores, as for magnitudes (global: one common weight scale and one common scale top
     across tensors, so scores compare across them);
   - an ``N:M`` pattern: the **N:M selector** on the scores.

Rows are laid out whole beats each (the tail lanes of a row padded with ``lane_valid`` clear),
so stream order is row-major order: ties at a threshold are kept first-come in it, as
everywhere in hwprune. Kept counts are exact: ``cols - round(amount * cols)`` per row,
``numel - round(amount * numel)`` per tensor or over all of them.
"""

import numpy as np

from .contract import NMJob, ThresholdJob, select_threshold_passes
from .contract import row_mask as _rm
from .contract import row_select as _rs
from .contract.score_unit import ScoreJob, scale_codes
from .patterns import nm_rows, nm_unrows
from .quant import quantize, tile
from .report import LayerReport

__all__ = ["CRITERIA", "GROUPS", "row_tiles", "plan_scored", "check_calibration"]

CRITERIA = ("magnitude", "activation")
GROUPS = ("row", "layer", "global")


class RowTiles:
    """A matrix cut into beats row by row: each row whole beats, ``last`` on its final one."""

    def __init__(self, matrix, lanes):
        from .channel import channel_jobs
        matrix = np.asarray(matrix)
        self.rows, self.cols = matrix.shape
        self.per_row = max(1, -(-self.cols // lanes))
        self.lanes = lanes
        job = channel_jobs(matrix, lanes)     # each row whole beats, `last` on its final one
        self.data, self.lane_valid, self.last = job.data, job.lane_valid, job.last

    @property
    def beats(self):
        return self.data.shape[0]

    def spread(self, per_column):
        """A per-column vector laid out as the tiles (each row's copy)."""
        out = np.zeros((self.rows, self.per_row * self.lanes), dtype=np.int64)
        out[:, :self.cols] = np.asarray(per_column)[None, :]
        return out.reshape(-1, self.lanes)

    def matrix(self, beats):
        """Engine output laid out as the tiles, back to ``(rows, cols)``."""
        return np.asarray(beats).reshape(self.rows, -1)[:, :self.cols]


def row_tiles(matrix, lanes):
    return RowTiles(matrix, lanes)


def check_calibration(calibration, targets, weights):
    """Every target has norms of its weight's column count (a clear error before anything
    runs, naming the layer)."""
    from .calibration import Calibration
    if not isinstance(calibration, Calibration):
        raise TypeError(f"calibration must be the Calibration hwprune.calibrate returns (or "
                        f"calibration inputs), not {type(calibration).__name__}")
    for (name, _, _), w in zip(targets, weights):
        if name not in calibration:
            raise ValueError(f"the calibration has no statistics for layer {name!r}; calibrate "
                             f"the same layers you prune; nothing was pruned")
        cols = int(w.size // w.shape[0]) if w.ndim else 1
        norms = np.asarray(calibration[name])
        if norms.shape != (cols,):
            raise ValueError(f"the calibration of layer {name!r} has {norms.size} input "
                             f"features, its weight has {cols} columns; nothing was pruned")
        if not np.isfinite(norms).all() or (norms < 0).any():
            raise ValueError(f"the calibration of layer {name!r} holds NaN, Inf or negative "
                             f"norms; nothing was pruned")


def _keep(n, amount):
    return n - int(round(amount * n))


def _matrix(w):
    return w.reshape(w.shape[0], -1) if w.ndim >= 2 else w.reshape(1, -1)


def _scores(engine, tiles, codes_tiles, scale_code_row):
    """The score unit's pass over row tiles; returns (score tiles, result)."""
    res, = engine.run("score_unit", [ScoreJob(codes_tiles, tiles.spread(scale_code_row),
                                              tiles.lane_valid, engine.width)])
    if res.beats != tiles.beats:
        raise RuntimeError(f"score unit returned {res.beats} beats, expected {tiles.beats}")
    return res.data, res


class _Ranked:
    """One tensor made ready for ranking: its codes, row tiles, and the tiles ranked
    (scores, or the codes themselves)."""

    def __init__(self, engine, w, criterion, norms, granularity, scale=None, top=None,
                 per_row=False):
        self.q = quantize(_matrix(w), engine.width, granularity, scale=scale)
        # Rows compared only within themselves are ranked on codes of their own scale (the
        # ranking of a row does not depend on it, its resolution does); the values written
        # back keep the asked granularity.
        rank_q = quantize(_matrix(w), engine.width, "channel") \
            if per_row and granularity != "channel" else self.q
        self.tiles = RowTiles(rank_q.codes, engine.lanes)
        self.cycles = 0
        self.ranked = self.tiles.data
        if criterion == "activation":
            codes = scale_codes(norms, engine.width, top)
            self.ranked, res = _scores(engine, self.tiles, self.tiles.data, codes)
            self.cycles += res.cycles


def _row_plan(engine, ranked, amount):
    t = ranked.tiles
    keep = np.full(t.rows, _keep(t.cols, amount), dtype=np.int64)

    def run_pass(job):
        return engine.run("row_select", [job])[0]
    with engine.same_inputs():
        thresholds, budgets, passes = _rs.select_row_thresholds(
            run_pass, ranked.ranked, t.lane_valid, t.last, engine.width, keep)
        res, = engine.run("row_mask", [_rm.RowMaskJob(ranked.ranked, t.lane_valid, t.last,
                                                      thresholds, budgets)])
    if (passes[0].counted != t.cols).any():
        raise RuntimeError("the row-select unit counted a row's weights wrong; nothing was pruned")
    mask = t.matrix(res.mask)
    per_row = np.count_nonzero(mask, axis=1)
    if res.beats != t.beats or (per_row != keep).any():
        raise RuntimeError(f"the row-mask unit kept {int(per_row.sum())} weights in "
                           f"{res.beats} beats, expected {int(keep.sum())} in {t.beats}; "
                           f"nothing was pruned")
    cycles = ranked.cycles + res.cycles + sum(p.cycles for p in passes)
    return mask, int(np.median(thresholds)), int(budgets.sum()), res.beats, cycles


def _layer_plan(engine, ranked, keep, threshold=None, budget=None):
    """Histogram search (unless given) and the threshold engine's pass on the ranked tiles."""
    t = ranked.tiles
    cycles = ranked.cycles
    with engine.same_inputs():
        if threshold is None:
            def run_pass(job):
                return engine.run("magnitude_histogram", [job])[0]
            threshold, budget, passes = select_threshold_passes(
                run_pass, ranked.ranked, t.lane_valid, engine.width, keep)
            cycles += sum(p.cycles for p in passes)
        res, = engine.threshold_passes([ThresholdJob(ranked.ranked, t.lane_valid, threshold,
                                                     budget)])
    return t.matrix(res.mask), res, threshold, budget, cycles + res.cycles


def plan_scored(targets, weights, engine, *, amount, criterion, calibration, group, shape,
                granularity, progress, report, plan):
    """Plans (``plan(module, pname, mask, values, scale, layer)``) for every tensor."""
    from .pruning import _bar
    norms = [calibration[name] if criterion == "activation" else None
             for name, _, _ in targets]

    def layer_report(name, w, ranked, kept, threshold, budget, beats, cycles):
        return LayerReport(name=name, shape=tuple(w.shape), numel=int(w.size), kept=int(kept),
                           threshold=int(threshold), tie_budget=int(budget),
                           scale=float(np.max(ranked.q.scale)), beats=int(beats),
                           cycles=int(cycles))

    def finish(item, ranked, mask, threshold, budget, beats, cycles):
        (name, module, pname), w = item
        mask = mask.reshape(w.shape)
        values = np.where(mask, ranked.q.codes.reshape(w.shape), 0).astype(np.int16)
        scale = ranked.q.scale
        if np.ndim(scale):
            scale = np.asarray(scale).reshape((-1,) + (1,) * (w.ndim - 1))
        return plan(module, pname, mask, values, scale, layer_report(
            name, w, ranked, np.count_nonzero(mask), threshold, budget, beats, cycles))

    items = list(zip(targets, weights, norms))
    if shape.kind == "nm" or group != "global":
        def plan_one(entry):
            item, n = (entry[0], entry[1]), entry[2]
            w = item[1]
            ranked = _Ranked(engine, w, criterion, n, granularity,
                             per_row=group == "row" or shape.kind == "nm")
            if shape.kind == "nm":
                return finish(item, ranked, *_nm_plan(engine, ranked, w, shape))
            if group == "row":
                return finish(item, ranked, *_row_plan(engine, ranked, amount))
            keep = _keep(w.size, amount)
            mask, res, threshold, budget, cycles = _layer_plan(engine, ranked, keep)
            if res.kept != keep:
                raise RuntimeError(f"engine kept {res.kept} weights of {item[0][0]!r}, "
                                   f"expected {keep}; nothing was pruned")
            return finish(item, ranked, mask, threshold, budget, res.beats, cycles)
        desc = f"{shape} select" if shape.kind == "nm" else f"{criterion} {group} prune"
        return list(_bar(engine.map(plan_one, items, cost=lambda e: e[1].size), engine,
                         progress, desc, total=len(items)))
    return _global_plan(engine, items, amount, criterion, finish, report, progress)


def _global_plan(engine, items, amount, criterion, finish, report, progress):
    from .pruning import _bar, _common_scale
    weights = [w for _, w, _ in items]
    scale = _common_scale(weights, engine.width)
    top = max((float(np.max(n)) for _, _, n in items if n is not None and np.size(n)),
              default=0.0) if criterion == "activation" else None
    ranked = [_Ranked(engine, w, criterion, n, "tensor", scale=scale, top=top)
              for _, w, n in items]
    total = sum(w.size for w in weights)
    keep = _keep(total, amount)
    data = np.concatenate([r.ranked for r in ranked])
    valid = np.concatenate([r.tiles.lane_valid for r in ranked])

    def run_pass(job):
        return engine.run("magnitude_histogram", [job])[0]
    threshold, ties, passes = select_threshold_passes(run_pass, data, valid, engine.width, keep)
    report.search_cycles = sum(p.cycles for p in passes)
    plans, budget, kept = [], ties, 0
    for (item, w, _), r in _bar(list(zip(items, ranked)), engine, progress, "global mask"):
        mask, res, _, _, cycles = _layer_plan(engine, r, None, threshold, budget)
        budget, kept = res.ties_left, kept + res.kept
        plans.append(finish((item, w), r, mask, threshold, ties, res.beats, cycles))
    if kept != keep:
        raise RuntimeError(f"engine kept {kept} weights over all tensors, expected {keep}; "
                           f"nothing was pruned")
    return plans


def _nm_plan(engine, ranked, w, shape):
    """The N:M selector on the ranked values (scores or codes), in the weight's own layout."""
    t = ranked.tiles
    values = t.matrix(ranked.ranked).reshape(w.shape)
    rows, row_valid = nm_rows(values, shape.m)
    tiles = tile(rows, engine.lanes)
    valid = tile(row_valid, engine.lanes).data.astype(bool)
    res, = engine.run("nm_selector", [NMJob(tiles.data, valid, shape.m, shape.n)])
    groups = row_valid.reshape(-1, shape.m).sum(axis=1)
    keep = int(np.minimum(groups, shape.n).sum())
    if res.kept != keep:
        raise RuntimeError(f"N:M selector kept {res.kept} weights, expected {keep}; nothing "
                           f"was pruned")
    mask = nm_unrows(res.mask.reshape(-1)[:rows.size].reshape(rows.shape), w.shape)
    return mask, 0, 0, res.beats, ranked.cycles + res.cycles
