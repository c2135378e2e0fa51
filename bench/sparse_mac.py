"""Benchmark of the sparse MAC unit: cycles saved by sparsity, against the ideal and dense.

For the default CNN's layers (one 32x32x3 image) and a 4096x4096 Linear (one vector), pruned
unstructured to 50 / 75 / 90 % (per layer, magnitude) and 2:4 (the 2 largest |w| in each group of
4 along the input dimension, lower index winning ties), both through the engines of
``hwprune.prune`` on the verilator backend, every layer
runs on the verilated unit through ``hwprune.run`` (real activations, bit-exact outputs checked
against the fake-quantized PyTorch reference). Per layer and pattern it prints:

- sparse cycles (measured, no stalls), the ideal ``ceil(nnz / lanes)`` per row and vector plus the
  fixed pipeline latency, and dense cycles (the same unit streaming the uncompressed weights);
- efficiency = ideal / sparse, speedup = dense / sparse, utilisation = useful MACs / (lanes x
  sparse cycles);
- wall time of the verilator backend (per layer) and of the whole ``hwprune.run``.

Aggregates sum the cycles of all benchmarked layers (the CNN's four and the 4096x4096 Linear).
The last line is JSON: efficiency_u50/u75/u90 and speedup_24/speedup_u90.

Usage: ``python bench/sparse_mac.py [--lanes 16] [--width 8] [--json results/sparse_mac.json]``
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

import hwprune
from hwprune.accelerate import reference
from hwprune.backends import get_backend
from hwprune.models import build_model

PATTERNS = ("u50", "u75", "u90", "2:4")


def _prune(model, pattern, backend, lanes, width):
    if pattern.startswith("u"):
        hwprune.prune(model, amount=int(pattern[1:]) / 100, backend=backend, lanes=lanes,
                      width=width)
    else:
        hwprune.prune(model, pattern=pattern, backend=backend, lanes=lanes, width=width)


def _workloads(seed):
    cnn = build_model("cnn", seed=seed).eval()
    x_cnn = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    big = nn.Sequential(nn.Linear(4096, 4096)).eval()
    x_big = torch.randn(1, 4096, generator=torch.Generator().manual_seed(seed + 1))
    return [("cnn", cnn, x_cnn), ("linear4096", big, x_big)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args(argv)

    backend = get_backend("verilator", lanes=args.lanes, width=args.width)  # builds up front
    rows, summary = [], {}
    head = (f"{'pattern':>7} {'layer':<24} {'rows x K':>10} {'vectors':>7} {'fmt':>12} "
            f"{'density':>7} {'ideal':>10} {'sparse':>10} {'dense':>10} {'eff':>6} "
            f"{'speedup':>7} {'util':>6} {'sim s':>7}")
    print(f"sparse MAC, {args.lanes} lanes x {args.width} bits, verilator backend")
    print(head)
    print("-" * len(head))
    for pattern in PATTERNS:
        totals = {"ideal": 0, "sparse": 0, "dense": 0, "wall": 0.0, "backend": 0.0}
        for wname, model, x in _workloads(args.seed):
            _prune(model, pattern, backend, args.lanes, args.width)
            start = time.perf_counter()
            fmt = "unstructured" if pattern.startswith("u") else pattern
            report = hwprune.run(model, x, backend=backend, lanes=args.lanes, width=args.width,
                                 fmt=fmt)
            wall = time.perf_counter() - start
            exact = torch.equal(report.output, reference(model, x, lanes=args.lanes,
                                                         width=args.width))
            if not exact:
                raise SystemExit(f"{pattern} {wname}: unit output differs from the reference")
            for layer in report.unit_layers:
                name = f"{wname}:{layer.name}"
                print(f"{pattern:>7} {name:<24} {f'{layer.rows}x{layer.k}':>10} "
                      f"{layer.vectors:>7,} {layer.fmt:>12} {layer.density:>7.1%} "
                      f"{layer.ideal_cycles:>10,} {layer.cycles:>10,} {layer.dense_cycles:>10,} "
                      f"{layer.efficiency:>6.3f} {layer.speedup:>6.2f}x "
                      f"{layer.utilisation:>6.1%} {layer.backend_s:>7.2f}")
                rows.append(dict(layer.to_dict(), pattern=pattern, workload=wname))
                totals["ideal"] += layer.ideal_cycles
                totals["sparse"] += layer.cycles
                totals["dense"] += layer.dense_cycles
                totals["backend"] += layer.backend_s
            totals["wall"] += wall
            print(f"{pattern:>7} {wname + ' (whole run)':<24} {'':>10} {'':>7} {'':>12} {'':>7} "
                  f"{'':>10} {report.cycles:>10,} {report.dense_cycles:>10,} {'':>6} "
                  f"{report.dense_cycles / report.cycles:>6.2f}x {'':>6} {wall:>7.2f}")
        eff = totals["ideal"] / totals["sparse"]
        speedup = totals["dense"] / totals["sparse"]
        summary[pattern] = {"efficiency": eff, "speedup": speedup, "sparse_cycles": totals["sparse"],
                            "dense_cycles": totals["dense"], "ideal_cycles": totals["ideal"],
                            "run_wall_s": totals["wall"], "verilator_backend_s": totals["backend"],
                            "simulated_cycles_per_s": totals["sparse"] / totals["backend"]}
        print(f"{pattern:>7} {'all layers':<24} efficiency {eff:.3f}, speedup {speedup:.2f}x, "
              f"verilator backend {totals['backend']:.2f} s "
              f"({totals['sparse'] / totals['backend'] / 1e6:.2f} M cycles/s), whole hwprune.run "
              f"{totals['wall']:.2f} s (with quantizing, compressing, im2col)")
        print("-" * len(head))
    result = {"efficiency_u50": round(summary["u50"]["efficiency"], 4),
              "efficiency_u75": round(summary["u75"]["efficiency"], 4),
              "efficiency_u90": round(summary["u90"]["efficiency"], 4),
              "speedup_24": round(summary["2:4"]["speedup"], 4),
              "speedup_u90": round(summary["u90"]["speedup"], 4)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"lanes": args.lanes, "width": args.width,
                                         "summary": summary, "layers": rows, **result},
                                        indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
