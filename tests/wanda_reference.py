"""Wanda's definition in plain torch, written from the paper (Sun et al. 2023, "A Simple and
Effective Pruning Approach for Large Language Models"), as the reference that hwprune's
activation-aware pruning is compared with (tests and ``bench/calibrated.py``).

For a linear layer with weight ``W`` (``out x in``) and calibration inputs ``X`` (``tokens x
in``), the score of ``W[i, j]`` is ``|W[i, j]| * ||X[:, j]||_2``; within each output row ``i``
the weights with the smallest scores are removed. No weight update. N:M: the ``n`` largest
scores of every ``m`` consecutive inputs of a row are kept.

Removed per row: ``round(amount * in)`` (``torch.nn.utils.prune``'s rounding, also hwprune's;
Wanda's code takes ``int(in * amount)``: equal for the shapes used here).
"""

import torch

__all__ = ["input_norms", "wanda_masks"]


@torch.no_grad()
def input_norms(model, linears, run):
    """``||X[:, j]||_2`` of every Linear in ``linears`` (name -> module), from the float
    activations of ``run(model)``: sums of squares accumulated per feature in float64."""
    sums, handles = {}, []
    for name, module in linears.items():
        def hook(mod, args, out, name=name):
            x = args[0].reshape(-1, args[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
        handles.append(module.register_forward_hook(hook))
    try:
        run(model)
    finally:
        for h in handles:
            h.remove()
    return {name: s.sqrt() for name, s in sums.items()}


def wanda_masks(weight, norms, amount=0.5, nm=None):
    """Keep mask (bool, ``weight``'s shape) of Wanda's per-row comparison, or of N:M groups
    when ``nm=(n, m)``."""
    score = weight.detach().double().abs() * norms.double()[None, :]
    rows, cols = score.shape
    if nm is not None:
        n, m = nm
        groups = score.reshape(rows, cols // m, m)
        top = torch.topk(groups, n, dim=-1).indices
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
        return keep.reshape(rows, cols)
    removed = int(round(amount * cols))
    order = torch.argsort(score, dim=1, stable=True)
    keep = torch.ones_like(score, dtype=torch.bool)
    keep.scatter_(1, order[:, :removed], False)
    return keep
