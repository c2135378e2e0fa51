"""Pruning workflows measured on the digits set: one-shot, gradual, L1, mixed precision, sweeps.

Every workflow takes a trained dense model and the data splits, changes a copy of the model (the
dense one is left as it was) and returns the pruned model with a JSON-ready result dict. Test
accuracy is only measured, never used for a choice; choices (the precision sweep) use the
validation split.

:func:`demo` is the ``make run`` job: train the default model, prune it gradually through the
Verilator engine while it trains, and print dense against pruned accuracy and per-layer sparsity.
"""

import copy
import json
import math
from pathlib import Path

import torch

from .data import load_digits_splits
from .models import build_model
from .precision import apply_widths, sensitivity_sweep, storage_bits
from .pruning import prune
from .schedules import CubicSchedule, GradualPruner
from .train import evaluate, train

__all__ = ["PATTERNS", "train_dense", "one_shot", "gradual", "mixed_precision",
           "sparsity_sweep", "plot_accuracy_vs_sparsity", "plot_layer_sparsity", "demo",
           "DIGITS_MODELS"]

DIGITS_MODELS = ("mlp-digits", "cnn-digits")
_BATCH = 32


#: The pruning patterns the workflows compare (see :func:`hwprune.prune`).
PATTERNS = ("unstructured", "2:4", "channel")


def _steps_per_epoch(dataset):
    return math.ceil(len(dataset) / _BATCH)


def train_dense(model_name, splits, *, seed=0, epochs=40, lr=1e-3, l1=0.0, progress=False):
    """Build a built-in model with seeded weights and train it densely; return the model."""
    model = build_model(model_name, seed=seed)
    train(model, splits.train, epochs=epochs, lr=lr, batch_size=_BATCH, seed=seed, l1=l1,
          progress=progress, desc=f"train {model_name}")
    return model


def _result(method, model, splits, dense_accuracy, report=None, **extra):
    accuracy = evaluate(model, splits.test)
    out = {"method": method, "accuracy": accuracy, "dense_accuracy": dense_accuracy,
           "drop_pp": 100.0 * (dense_accuracy - accuracy)}
    if report is not None:
        out["sparsity"] = report.sparsity
        out["report"] = report.to_dict()
    out.update(extra)
    return out


def one_shot(dense, splits, amount, *, finetune_epochs=20, lr=5e-4, seed=0,
             backend="verilator", width=16, progress=False, act_l1=0.0, **prune_options):
    """Prune a copy of ``dense`` once through the engine, then fine-tune it with its masks.

    ``prune_options`` go to :func:`hwprune.prune` (``pattern="2:4"``, ``pattern="channel"``, ...
    where available); ``act_l1`` fine-tunes with an activation-sparsity penalty
    (:func:`hwprune.train.train`). Returns ``(model, result)``.
    """
    model = copy.deepcopy(dense)
    dense_accuracy = evaluate(dense, splits.test)
    label = str(prune_options.get("pattern", "unstructured"))
    if label == "channel":
        prune_options.setdefault("example_inputs", splits.train.tensors[0][:2])
    report = prune(model, amount=amount, backend=backend, width=width, **prune_options)
    before = evaluate(model, splits.test)
    train(model, splits.train, epochs=finetune_epochs, lr=lr, batch_size=_BATCH, seed=seed,
          progress=progress, desc="fine-tune", act_l1=act_l1)
    extra = {}
    if label == "channel":
        extra["channels"] = {layer.name: [layer.shape[0], layer.shape_after[0]]
                             for layer in report.layers}
        extra["parameters"] = [sum(p.numel() for p in dense.parameters()),
                               sum(p.numel() for p in model.parameters())]
    return model, _result("one-shot", model, splits, dense_accuracy, report, pattern=label,
                          amount=amount, accuracy_before_finetune=before, **extra)


def gradual(dense, splits, final_sparsity, **options):
    """Prune a copy of ``dense`` gradually while it trains, then fine-tune it.

    The masks are recomputed by the engine ``num_steps + 1`` times on Zhu & Gupta's cubic schedule
    from ``initial_sparsity`` to ``final_sparsity`` over the first ``pruning_epochs``; training
    goes on with the final masks for the rest of ``epochs`` (``pruning_epochs`` defaults to a
    third of them). Options: ``epochs=30, pruning_epochs=None, num_steps=20,
    initial_sparsity=0.0, lr=1e-3, seed=0, backend="verilator", width=16, progress=False`` and
    :func:`hwprune.prune`'s (``scope="global"``, ...). Returns ``(model, result)``.
    """
    model, result, _ = _gradual(dense, splits, final_sparsity, **options)
    return model, result


def _gradual(dense, splits, final_sparsity, *, epochs=30, pruning_epochs=None, num_steps=20,
            initial_sparsity=0.0, lr=1e-3, seed=0, backend="verilator", width=16,
            progress=False, **prune_options):
    """:func:`gradual`, also returning the :class:`GradualPruner` (its reports)."""
    if pruning_epochs is None:
        pruning_epochs = max(1, epochs // 3)
    if pruning_epochs > epochs:
        raise ValueError(f"pruning_epochs must not exceed epochs, "
                         f"not {pruning_epochs!r} > {epochs!r}")
    model = copy.deepcopy(dense)
    dense_accuracy = evaluate(dense, splits.test)
    steps = pruning_epochs * _steps_per_epoch(splits.train)
    schedule = CubicSchedule(initial_sparsity=initial_sparsity, final_sparsity=final_sparsity,
                             num_steps=num_steps, frequency=max(1, steps // num_steps))
    pruner = GradualPruner(model, schedule, backend=backend, width=width, **prune_options)
    train(model, splits.train, epochs=epochs, lr=lr, batch_size=_BATCH, seed=seed,
          on_step=pruner, progress=progress, desc="gradual prune")
    return model, _result("gradual", model, splits, dense_accuracy, pruner.report,
                          pattern="unstructured", scope=prune_options.get("scope", "layer"),
                          amount=final_sparsity, schedule=repr(schedule),
                          pruning_steps=[(s, sp) for s, sp, _ in pruner.history],
                          engine_cycles=sum(r.cycles for _, _, r in pruner.history)), pruner


def mixed_precision(pruned, splits, dense_accuracy, *, tolerance=0.005, backend="verilator",
                    granularity="tensor", progress=False):
    """Choose a width per layer of a pruned model on the validation split and quantize a copy.

    Returns ``(model, result)``; the result holds the chosen widths, the sweep, the test accuracy
    and the storage against fp32 dense (:func:`hwprune.precision.storage_bits`).
    """
    choice = sensitivity_sweep(pruned, splits.val, tolerance=tolerance, backend=backend,
                               granularity=granularity, progress=progress)
    model = copy.deepcopy(pruned)
    apply_widths(model, choice.widths, backend=backend, granularity=granularity)
    storage = storage_bits(model, choice.widths, granularity=granularity)
    return model, _result("mixed-precision", model, splits, dense_accuracy,
                          precision=choice.to_dict(), storage=storage.to_dict(),
                          storage_ratio=storage.ratio)


def sparsity_sweep(model_name="mlp-digits", *, seed=0, sparsities=(0.5, 0.7, 0.8, 0.9, 0.95),
                   dense_epochs=40, epochs=30, l1=1e-5, backend="verilator", progress=False):
    """Accuracy against sparsity: one-shot against gradual (and one-shot after L1 training),
    plus the structured patterns (2:4, channel), each at its own sparsity.

    Returns a JSON-ready dict.
    """
    torch.manual_seed(seed)
    splits = load_digits_splits(seed)
    dense = train_dense(model_name, splits, seed=seed, epochs=dense_epochs, progress=progress)
    dense_accuracy = evaluate(dense, splits.test)
    l1_dense = train_dense(model_name, splits, seed=seed, epochs=dense_epochs, l1=l1,
                           progress=progress)
    runs = []
    for s in sparsities:
        runs.append(one_shot(dense, splits, s, finetune_epochs=epochs, seed=seed,
                             backend=backend, progress=progress)[1])
        r = one_shot(l1_dense, splits, s, finetune_epochs=epochs, seed=seed, backend=backend,
                     progress=progress)[1]
        r.update(method="one-shot after L1", l1=l1, l1_dense_accuracy=r["dense_accuracy"],
                 dense_accuracy=dense_accuracy,
                 drop_pp=100.0 * (dense_accuracy - r["accuracy"]))
        runs.append(r)
        runs.append(gradual(dense, splits, s, epochs=epochs, seed=seed, backend=backend,
                            progress=progress)[1])
    for pattern in PATTERNS[1:]:
        runs.append(one_shot(dense, splits, 0.5, finetune_epochs=epochs, seed=seed,
                             backend=backend, progress=progress, pattern=pattern)[1])
    return {"model": model_name, "seed": seed, "dense_accuracy": dense_accuracy,
            "splits": splits.sizes(), "runs": runs}


def plot_accuracy_vs_sparsity(sweep, path):
    """Write test accuracy against sparsity, one line per method, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    methods = {}
    for run in sweep["runs"]:
        if run.get("pattern", "unstructured") == "unstructured":
            methods.setdefault(run["method"], []).append((run["sparsity"], run["accuracy"]))
    for method, points in methods.items():
        xs, ys = zip(*sorted(points))
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker="o", label=method)
    structured = [run for run in sweep["runs"]
                  if run.get("pattern", "unstructured") != "unstructured"]
    for i, run in enumerate(structured):
        # Colours after the lines' own, so a point never looks like part of a line.
        ax.scatter([100 * run["sparsity"]], [100 * run["accuracy"]], marker="s", s=60,
                   color=f"C{len(methods) + i}", label=f"{run['pattern']} (one-shot)", zorder=3)
    ax.axhline(100 * sweep["dense_accuracy"], color="grey", linestyle="--", label="dense")
    ax.set_xlabel("sparsity (% of weights pruned)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{sweep['model']} on digits, seed {sweep['seed']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_layer_sparsity(report, path, title="per-layer sparsity"):
    """Write a bar chart of each layer's sparsity (a PruneReport or its dict) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    layers = report["layers"] if isinstance(report, dict) else [l.to_dict() for l in
                                                               report.layers]
    names = [layer["name"] for layer in layers]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names)), 3.5))
    bars = ax.bar(range(len(names)), [100 * layer["sparsity"] for layer in layers])
    for bar, layer in zip(bars, layers):
        ax.annotate(f"{layer['kept']:,}/{layer['numel']:,}", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("sparsity (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _sparse_mac_run(model, x, backend):
    """Run ``model`` on ``x`` on the sparse MAC unit once ``hwprune.run`` exists; else None."""
    import hwprune
    run = getattr(hwprune, "run", None)
    if run is None:
        return None
    return run(model, x, backend=backend)


def demo(model_name="mlp-digits", *, seed=0, sparsity=0.92, dense_epochs=40, epochs=30,
         scope="layer", backend="verilator", out=None, progress=True, echo=print):
    """The ``make run`` job: train, prune gradually through the engine, fine-tune, report.

    Prints dense and pruned test accuracy and the last pruning step's per-layer table; with
    ``out``, writes ``demo_<model>.json`` and ``demo_<model>_layers.png`` there. Returns the
    result dict.
    """
    # Check the schedule's parameters before minutes of training, not after.
    CubicSchedule(final_sparsity=sparsity, num_steps=1, frequency=1)
    torch.manual_seed(seed)
    splits = load_digits_splits(seed)
    echo(f"digits: {splits.sizes()} images (train/val/test), seed {seed}")
    dense = train_dense(model_name, splits, seed=seed, epochs=dense_epochs, progress=progress)
    model, result, pruner = _gradual(dense, splits, sparsity, epochs=epochs, seed=seed,
                                     backend=backend, scope=scope, progress=progress)
    echo(f"gradual pruning: {len(result['pruning_steps'])} mask updates by the {backend} engine "
         f"({result['engine_cycles']:,} engine cycles in all), {result['schedule']}")
    report = pruner.report
    echo(report.table())
    echo(f"{model_name}: dense accuracy {100 * result['dense_accuracy']:.2f} %, pruned "
         f"{100 * result['accuracy']:.2f} % ({result['drop_pp']:+.2f} pp drop) with "
         f"{100 * (1 - report.sparsity):.1f} % of the weights kept "
         f"({1 / max(1e-12, 1 - report.sparsity):.1f}x fewer non-zeros)")
    mac = _sparse_mac_run(model, splits.test.tensors[0][:1], backend)
    if mac is not None:
        result["sparse_mac"] = {"cycles": mac.cycles, "dense_cycles": mac.dense_cycles}
        echo(mac.table())
        echo(f"sparse MAC unit: {mac.cycles:,} cycles for one digit "
             f"(dense: {mac.dense_cycles:,})")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"demo_{model_name}.json").write_text(json.dumps(result, indent=2, default=str))
        png = plot_layer_sparsity(result["report"], out / f"demo_{model_name}_layers.png",
                                  title=f"{model_name}: per-layer sparsity after gradual pruning")
        echo(f"results written to {out / f'demo_{model_name}.json'} and {png}")
    return result
