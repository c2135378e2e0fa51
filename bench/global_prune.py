"""Global magnitude pruning and 2:4 selection through the engines vs PyTorch, on one CPU.

ResNet-18-shaped weights (11.7 M): ``hwprune.prune(scope="global", amount=0.9)`` through the
verilator backend with all its passes (common-scale quantization, the histogram unit's threshold
search, the masking passes, mask installation) against
``torch.nn.utils.prune.global_unstructured`` on an identical model in the same run; then
``pattern="2:4"`` through the N:M selector against a vectorised torch top-k-per-group reference.
The last line is JSON.
"""

import argparse
import copy
import json
import time

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import hwprune

from resnet18_shapes import RESNET18_WEIGHT_SHAPES


def resnet18_weights_model():
    torch.manual_seed(0)
    layers = []
    for shape in RESNET18_WEIGHT_SHAPES:
        if len(shape) == 4:
            layer = nn.Conv2d(shape[1], shape[0], shape[2], bias=False)
        else:
            layer = nn.Linear(shape[1], shape[0], bias=False)
        layers.append(layer)
    return nn.Sequential(*layers)


def torch_nm24(weights):
    """2:4 masks by torch: top-2 magnitudes per group of 4 input weights (ASP's layout), with
    hwprune's padding rule (rows padded to a multiple of 4 with entries that are never kept)."""
    masks = []
    for w in weights:
        rows = (w.permute(0, 2, 3, 1) if w.dim() == 4 else w).abs()
        rows = rows.reshape(-1, rows.shape[-1])
        pad = -rows.shape[1] % 4
        if pad:
            rows = torch.nn.functional.pad(rows, (0, pad), value=-1.0)
        groups = rows.reshape(-1, 4)
        mask = torch.zeros_like(groups, dtype=torch.bool)
        mask.scatter_(1, groups.topk(2, dim=1).indices, True)
        mask &= groups >= 0
        masks.append(mask)
    return masks


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--amount", type=float, default=0.9)
    args = ap.parse_args()
    model = resnet18_weights_model()
    weights = sum(m.weight.numel() for m in model)
    print(f"{len(model)} tensors, {weights:,} weights; engine {args.lanes} lanes x {args.width} bits")
    # Build (or load) every engine library first: builds are not what this bench times.
    warm = nn.Sequential(nn.Linear(8, 8))
    for kw in (dict(scope="global"), dict(pattern="2:4")):
        hwprune.prune(copy.deepcopy(warm), 0.5, backend="verilator", lanes=args.lanes,
                      width=args.width, **kw)

    ours = copy.deepcopy(model)
    t0 = time.perf_counter()
    report = hwprune.prune(ours, args.amount, scope="global", backend="verilator",
                           lanes=args.lanes, width=args.width, progress=True)
    t_global = time.perf_counter() - t0
    theirs = copy.deepcopy(model)
    t0 = time.perf_counter()
    torch_prune.global_unstructured([(m, "weight") for m in theirs],
                                    pruning_method=torch_prune.L1Unstructured, amount=args.amount)
    t_torch = time.perf_counter() - t0
    want = weights - round(args.amount * weights)
    torch_kept = sum(int(m.weight_mask.sum()) for m in theirs)
    exact = report.kept == want == torch_kept

    ours = copy.deepcopy(model)
    t0 = time.perf_counter()
    nm = hwprune.prune(ours, pattern="2:4", backend="verilator", lanes=args.lanes,
                       width=args.width, progress=True)
    t_nm = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = torch_nm24([m.weight.detach() for m in model])
    t_torch_nm = time.perf_counter() - t0
    exact = exact and nm.kept == sum(int(r.sum()) for r in ref)

    print(f"global {args.amount:.0%}: hwprune {t_global:.3f} s ({report.cycles:,} engine cycles)"
          f" vs torch global_unstructured {t_torch:.3f} s -> ratio {t_global / t_torch:.2f}")
    print(f"2:4        : hwprune {t_nm:.3f} s vs torch top-k per group {t_torch_nm:.3f} s")
    print(f"kept exactly as asked: {exact} (global {report.kept:,}, 2:4 {nm.kept:,})")
    print(json.dumps({"weights": weights, "global90_s": round(t_global, 3),
                      "torch_global_unstructured_s": round(t_torch, 3),
                      "ratio_vs_torch": round(t_global / t_torch, 3), "nm24_s": round(t_nm, 3),
                      "torch_nm24_s": round(t_torch_nm, 3), "exact_keep": exact}))


if __name__ == "__main__":
    main()
