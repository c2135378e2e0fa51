"""Accuracy targets of the pruning workflows on the digits set (issue 5), mean of 3 seeds.

For each seed: a fixed split (train / validation / test), dense MLP (LeNet-300-100-style) and
CNN (the reference CNN on 8x8x1) trained from seeded weights, then, all through the Verilator
engine:
- MLP gradual pruning (Zhu & Gupta's cubic schedule) to 92 % sparsity  -> kept fraction, drop;
- 2:4 on the MLP and on the CNN, one-shot then fine-tuned (30 epochs)   -> drops;
- CNN with 50 % of its channels physically removed (Torch-Pruning), fine-tuned -> drop;
- MLP gradual to 90 % then a width per layer (4/8/16) chosen on the validation split -> drop
  and storage against fp32 dense.
Drops are test accuracy in percentage points against the same seed's dense model. Seed 0 also
writes the accuracy-vs-sparsity sweeps and per-layer sparsity bars (JSON, PNG) to --out.
The last line is JSON.

    python bench/accuracy.py [--seeds 3] [--out results/accuracy]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from hwprune import experiments as ex
from hwprune.data import load_digits_splits
from hwprune.train import evaluate

MLP_SPARSITY = 0.92          # 8 % kept: >= 12x fewer non-zeros (Han et al.'s 8.3 %)
MIXED_SPARSITY = 0.90


def _seed_run(seed, out, progress):
    splits = load_digits_splits(seed)
    mlp = ex.train_dense("mlp-digits", splits, seed=seed, epochs=40, progress=progress)
    cnn = ex.train_dense("cnn-digits", splits, seed=seed, epochs=30, progress=progress)
    row = {"seed": seed, "mlp_dense": evaluate(mlp, splits.test),
           "cnn_dense": evaluate(cnn, splits.test)}

    pruned, r = ex.gradual(mlp, splits, MLP_SPARSITY, epochs=30, seed=seed, progress=progress)
    row["mlp_kept_fraction"] = 1.0 - r["sparsity"]
    row["mlp_drop_pp"] = r["drop_pp"]
    if seed == 0 and out is not None:
        ex.plot_layer_sparsity(r["report"], out / "mlp_gradual_layers.png",
                               title=f"mlp-digits, gradual to {MLP_SPARSITY:.0%}: per-layer "
                                     f"sparsity")
        (out / "mlp_gradual.json").write_text(json.dumps(r, indent=2, default=str))

    for name, dense in (("mlp", mlp), ("cnn", cnn)):
        _, r = ex.one_shot(dense, splits, 0.5, finetune_epochs=30, seed=seed,
                           progress=progress, pattern="2:4")
        row[f"nm24_drop_pp_{name}"] = r["drop_pp"]
    model, r = ex.one_shot(cnn, splits, 0.5, finetune_epochs=30, seed=seed,
                           progress=progress, pattern="channel")
    row["channel50_drop_pp"] = r["drop_pp"]
    row["channel50_params"] = [sum(p.numel() for p in cnn.parameters()),
                               sum(p.numel() for p in model.parameters())]

    pruned, _ = ex.gradual(mlp, splits, MIXED_SPARSITY, epochs=30, seed=seed, progress=progress)
    _, r = ex.mixed_precision(pruned, splits, row["mlp_dense"], progress=progress)
    row["mixed_drop_pp"] = r["drop_pp"]
    row["mixed_storage_ratio"] = r["storage_ratio"]
    row["mixed_widths"] = r["precision"]["widths"]
    if seed == 0 and out is not None:
        (out / "mlp_mixed_precision.json").write_text(json.dumps(r, indent=2, default=str))
    return row


def _seed_task(task):
    torch.set_num_threads(1)
    return _seed_run(*task)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/accuracy"))
    parser.add_argument("--no-sweep", action="store_true", help="skip the seed-0 sweeps")
    parser.add_argument("--progress", action="store_true", help="tqdm bars while training")
    parser.add_argument("--cluster", choices=["ray"], help="run the seeds on a Ray cluster "
                        "(hwprune[ray]; embedded on this machine unless --address)")
    parser.add_argument("--address", help="with --cluster ray: the cluster to join")
    args = parser.parse_args()
    torch.set_num_threads(1)     # polite on a shared machine; the models are small
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # One task per seed: on a Ray cluster they run side by side (hwprune.sweeps.parallel_map).
    from hwprune.sweeps import parallel_map
    rows = parallel_map(_seed_task, [(seed, args.out, args.progress and not args.cluster)
                                     for seed in range(args.seeds)],
                        cluster=args.cluster, address=args.address)
    for row in rows:
        print(json.dumps(row), flush=True)
    if not args.no_sweep:
        for model in ex.DIGITS_MODELS:
            sweep = ex.sparsity_sweep(model, seed=0, progress=args.progress)
            (args.out / f"sweep_{model}.json").write_text(json.dumps(sweep, indent=2,
                                                                     default=str))
            png = ex.plot_accuracy_vs_sparsity(sweep, args.out / f"sweep_{model}.png")
            for run in sweep["runs"]:
                print(f"{model:>10} {run['method']:>18} {run['pattern']:>12} sparsity "
                      f"{run['sparsity']:.3f}: {100 * run['accuracy']:.2f} % "
                      f"({run['drop_pp']:+.2f} pp)")
            print(f"wrote {png}")

    def mean(key):
        values = [row[key] for row in rows if key in row]
        return statistics.fmean(values) if len(values) == len(rows) else None

    summary = {"mlp_kept_fraction": mean("mlp_kept_fraction"), "mlp_drop_pp": mean("mlp_drop_pp"),
               "nm24_drop_pp_mlp": mean("nm24_drop_pp_mlp"),
               "nm24_drop_pp_cnn": mean("nm24_drop_pp_cnn"),
               "channel50_drop_pp": mean("channel50_drop_pp"),
               "mixed_drop_pp": mean("mixed_drop_pp"),
               "mixed_storage_ratio": mean("mixed_storage_ratio")}
    print(f"{len(rows)} seeds in {time.time() - start:.0f} s; results in {args.out}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
