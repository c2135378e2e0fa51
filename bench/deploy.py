"""Benchmark of deployment: the pruned digits MLP compiled for the network engine and run there.

The digits MLP (64-300-100-10) is trained densely, pruned per layer through the engines
(``hwprune.prune``, torch backend: bit-identical with the RTL's) to 50 / 75 / 90 / 92 % and
fine-tuned with its masks and an activation-sparsity penalty (``act_l1``: more hidden
activations exactly zero; the 92 % model is also fine-tuned without it, the baseline the JSON's
``*_no_penalty`` fields report); each pruned model is deployed with ``hwprune.deploy`` for the
iCEBreaker's engine (4 lanes, 8-bit weights and activations, memories of the UP5K). Per model:

- all 450 test images through the verilated engine (``verilator``), through the integer
  reference (``golden``) and, at 92 %, through the deploy bitstream verilated behind its UART
  (``uart-sim``): results image for image, and the accuracy beside the float model's;
- cycles per image measured on the RTL (the engine's counters): dense (every weight stored,
  zeros included), sparse (zero weights skipped) and dual-sparse (zero activations skipped too),
  per layer; latency at the iCEBreaker top's clock (compute only; the line time of the inputs
  and logits at 3 Mbit/s is printed beside it);
- memory bytes of the program, and LUT / FF / BRAM / DSP of the engine synthesized (yosys
  ``synth_ice40``, no placement) with its weight memory sized for that program;
  ``mlp_fits_up5k`` needs the program to fit the engine's memories, the synthesized engine
  to fit the UP5K's cells, block RAMs and DSPs, and the iCEBreaker's deploy top (the UART
  bridge with the engine, ``--blocks net_engine``) to place with nextpnr and meet its clock
  (``up5k_top_cells``: the logic cells it takes, and the device's);
- a PNG of memory, logic and cycles against sparsity (``results/deploy_sparsity.png``).

Also: host time of ``hwprune.run`` on a 4096x4096 Linear over the verilated sparse MAC's time
(issue item 6). The last line is JSON::

    {"mlp_fits_up5k": .., "cnn_fits_ecp5": .., "board_matches_ref": .., "mlp_acc_board": ..,
     "mlp_acc_float": .., "cnn_acc_board": .., "mlp_speedup_sparse": .., "mlp_speedup_dual": ..,
     "act_skip_gain": .., "mlp_us_per_image_up5k": .., "mem_ratio_u90_u50": ..,
     "host_over_sim_4096": .., "up5k_top_cells": [used, available], "cnn_acc_float": ..,
     "cnn_speedup_dual": .., "cnn_us_per_image_ecp5": .., "ecp5_top_fmax_mhz": ..,
     "cnn32_fits_ecp5": ..}

The CNN: the reference CNN adapted to the digits (conv 1->32 and 32->64, 3x3, each with ReLU
and 2x2 max pooling; 256-256-10) pruned to 90 % and deployed on the ULX3S's engine (16 lanes,
convolutions on chip): all 450 test images through the verilated engine and through the ULX3S
deploy bitstream behind its UART (``uart-sim``), against the integer reference
(``cnn_acc_board``); ``cnn_fits_ecp5``: the program fits the engine's memories (deploy checks
it) and the ULX3S deploy top places on the ECP5-85F (its Fmax beside it). The reference
article's CNN (32x32x3) at 90 % is compiled for the same engine: ``cnn32_fits_ecp5``, with
the memory that overflows printed when it does not fit.

``board_matches_ref``: the verilated engine (every sparsity; the CNN) and the deploy bitstreams
through ``uart-sim`` (the MLP at 92 %, the CNN) against the integer reference, image for image.

Usage: ``python bench/deploy.py [--no-synth] [--json results/deploy.json]``
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import hwprune
from hwprune.contract import net_engine as ne
from hwprune.data import load_digits_splits
from hwprune.deploy import BOARD_ENGINES, BOARD_LANES, deploy
from hwprune.experiments import one_shot, train_dense
from hwprune.hw.boards import board_clock

SPARSITIES = (0.5, 0.75, 0.9, 0.92)
#: fine-tuning's activation-sparsity penalty (hwprune.train.train's act_l1): more hidden
#: activations exactly zero, for the engine to skip; the 92 % model is also fine-tuned without
#: it, as the baseline of act_skip_gain
ACT_L1 = 1e-2
BOARD = "icebreaker"
#: the CNN's board and sparsity
CNN_BOARD, CNN_SPARSITY = "ulx3s", 0.9
BAUD = 3_000_000
#: the UP5K's logic cells, 4 Kbit block RAMs and DSPs (its four SPRAMs are not inferred by
#: synth_ice40: the weight memory counts in block RAMs here)
UP5K = {"lut": 5280, "bram": 30, "dsp": 8}


def _synth(program):
    """The engine synthesized for the UP5K with its weight memory sized for ``program``."""
    from hwprune.hw.boards import synth_block
    engine = dict(BOARD_ENGINES[BOARD])
    beats = len(program.value)
    engine["max_beats"] = max(64, 1 << (beats - 1).bit_length())
    return synth_block("net_engine", "ice40", build_dir="build/bench-deploy", **engine)


def _deploy_top(board, build_dir="build/bench-deploy"):
    """A board's deploy bitstream (the UART bridge and the network engine, the board's engine
    geometry) through yosys and nextpnr: placed with its Fmax, or the cells it is over."""
    from hwprune.hw.boards import DoesNotFit, synth
    try:
        report = synth(board, lanes=BOARD_LANES[board], width=8, blocks=["net_engine"],
                       build_dir=build_dir)
    except DoesNotFit as exc:
        return {"placed": False, "error": str(exc), "utilisation": exc.utilisation,
                "cells": exc.utilisation.get("ICESTORM_LC")}
    cells = report["resources"]["cells"]
    return {"placed": True, "meets_timing": report["meets_timing"],
            "fmax_mhz": report["core_fmax_mhz"], "resources": report["resources"],
            "cells": (cells["used"], cells["available"])}


def _cnn(splits, seed):
    """The reference CNN adapted to the digits, pruned to 90 % and deployed on the ULX3S's
    engine (16 lanes, convolutions on chip): the verilated engine (dense / sparse / dual
    cycles) and the deploy bitstream behind its UART (``uart-sim``) on all 450 test images
    against the integer reference."""
    x_test, y_test = splits.test.tensors
    y = y_test.numpy()
    dense = train_dense("cnn-digits", splits, seed=seed, epochs=40)
    model, _ = one_shot(dense, splits, CNN_SPARSITY, finetune_epochs=20, backend="torch",
                        width=8, seed=seed, act_l1=ACT_L1)
    with torch.no_grad():
        acc_float = float((model(x_test).argmax(1) == y_test).float().mean())
    calib = splits.train.tensors[0]
    ref = deploy(model, calib, backend="golden", board=CNN_BOARD).run(x_test)
    dep = deploy(model, calib, backend="verilator", board=CNN_BOARD)
    figures, totals, runs = dep.profile(x_test)
    t = time.perf_counter()
    uart_dep = deploy(model, calib, backend="uart-sim", board=CNN_BOARD)
    uart = uart_dep.run(x_test)
    uart_s = time.perf_counter() - t
    matches = all(np.array_equal(r.out, ref.out) for r in (*runs.values(), uart))
    print(f"\nthe digits CNN, {int(100 * CNN_SPARSITY)} % pruned, on the {CNN_BOARD} engine "
          f"({dep.lanes} lanes, convolutions on chip): {dep.quantized.kept_weights:,} weights "
          f"kept, accuracy float {100 * acc_float:.2f} %, on the engine "
          f"{100 * (runs['dual'].predictions == y).mean():.2f} % (450 images on verilator and "
          f"uart-sim, {'equal to' if matches else 'DIFFERENT from'} the integer reference "
          f"image for image; uart-sim {uart_s:.1f} s, {uart.cycles / len(y):.1f} compute "
          f"cycles per image from the device's counter)")
    print(dep.table(figures, totals))
    return {"acc_float": acc_float, "acc_board": float((runs["dual"].predictions == y).mean()),
            "matches_ref": bool(matches), "memory": dep.memory(), "dense": totals["dense"],
            "sparse": totals["sparse"], "dual": totals["dual"],
            "uart_compute_per_image": uart.cycles / len(y), "uart_s": uart_s,
            "layers": [vars(f) for f in figures]}


def _cnn32(seed):
    """The reference article's CNN (32x32x3, 1.07 M weights) pruned to 90 % and compiled for
    the ULX3S's engine: whether its program fits, or the memory that overflows."""
    from hwprune.models import build_model, calibration_inputs
    model = build_model("cnn", seed=seed)
    hwprune.prune(model, CNN_SPARSITY, backend="torch", lanes=16, width=8)
    try:
        dep = deploy(model, calibration_inputs("cnn", seed=seed)[0], backend="golden",
                     board=CNN_BOARD)
        return {"fits": True, "memory": dep.memory()}
    except ValueError as exc:
        return {"fits": False, "error": str(exc)}


def _host_over_sim(seed=0):
    """``hwprune.run`` on a 4096x4096 Linear (90 % unstructured): host time over the time spent
    in the verilated unit."""
    from hwprune.accelerate import run
    torch.manual_seed(seed)
    lin = torch.nn.Linear(4096, 4096)
    hwprune.prune(torch.nn.Sequential(lin), 0.9, backend="torch", lanes=16, width=8)
    x = torch.randn(1, 4096)
    run(torch.nn.Sequential(lin), x, backend="verilator", lanes=16, width=8)   # build, warm
    t = time.perf_counter()
    result = run(torch.nn.Sequential(lin), x, backend="verilator", lanes=16, width=8)
    total = time.perf_counter() - t
    sim = sum(layer.backend_s for layer in result.layers)
    return (total - sim) / sim, total, sim


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-synth", action="store_true", help="skip the yosys runs")
    p.add_argument("--json", type=Path)
    p.add_argument("--png", type=Path, default=Path("results/deploy_sparsity.png"))
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    splits = load_digits_splits(args.seed)
    x_test, y_test = splits.test.tensors
    y = y_test.numpy()
    dense = train_dense("mlp-digits", splits, seed=args.seed, epochs=40)
    rows, main_run = [], None
    for sparsity in SPARSITIES:
        model, _ = one_shot(dense, splits, sparsity, finetune_epochs=20, backend="torch",
                            width=8, seed=args.seed, act_l1=ACT_L1)
        with torch.no_grad():
            acc_float = float((model(x_test).argmax(1) == y_test).float().mean())
        t = time.perf_counter()
        dep = deploy(model, splits.train.tensors[0], backend="verilator", board=BOARD)
        compile_s = time.perf_counter() - t
        figures, totals, runs = dep.profile(x_test)
        ref = deploy(model, splits.train.tensors[0], backend="golden", board=BOARD).run(x_test)
        board = runs["dual"]
        if sparsity == 0.92:
            # the deploy bitstream verilated: program and images over the simulated line
            t = time.perf_counter()
            uart_dep = deploy(model, splits.train.tensors[0], backend="uart-sim", board=BOARD)
            uart = uart_dep.run(x_test)
            uart_s = time.perf_counter() - t
            link = uart_dep.backend.link
        row = {
            "sparsity": sparsity, "kept": dep.quantized.kept_weights,
            "acc_float": acc_float, "acc_board": float((board.predictions == y).mean()),
            "matches_ref": bool(np.array_equal(board.out, ref.out)
                                and np.array_equal(runs["sparse"].out, ref.out)
                                and (sparsity != 0.92 or np.array_equal(uart.out, ref.out))),
            "memory": dep.memory(), "weight_bytes": dep.memory()["weights"],
            "dense": totals["dense"], "sparse": totals["sparse"], "dual": totals["dual"],
            "compile_s": compile_s,
        }
        try:
            ne.check_program(dep.program, **BOARD_ENGINES[BOARD])
            row["fits"] = True
        except ValueError as exc:
            row["fits"], row["fit_error"] = False, str(exc)
        if not args.no_synth:
            t = time.perf_counter()
            row["resources"] = _synth(dep.program)
            row["synth_s"] = time.perf_counter() - t
            over = {k: (row["resources"][k], n) for k, n in UP5K.items()
                    if row["resources"][k] > n}
            if over:        # the memories fit their depths, the synthesized engine does not
                row["fits"] = False
                row["fit_error"] = "synthesized engine exceeds the UP5K: " + ", ".join(
                    f"{k} {used} > {n}" for k, (used, n) in over.items())
        rows.append(row)
        print(f"\n{int(100 * sparsity)} % pruned: {row['kept']:,} weights kept, accuracy float "
              f"{100 * acc_float:.2f} %, on the engine {100 * row['acc_board']:.2f} % (450 "
              f"images, {'equal to' if row['matches_ref'] else 'DIFFERENT from'} the integer "
              f"reference image for image)")
        print(dep.table(figures, totals))
        if sparsity == 0.92:
            main_run = (dep, figures, totals)
            row["uart"] = {"matches_ref": bool(np.array_equal(uart.out, ref.out)),
                           "compute_per_image": uart.cycles / len(x_test),
                           "line_bytes_sent": link.line_sent,
                           "line_bytes_received": link.line_received, "wall_s": uart_s}
            print(f"uart-sim (the deploy bitstream verilated, 3 Mbit/s line): 450 images "
                  f"{'equal to' if row['uart']['matches_ref'] else 'DIFFERENT from'} the "
                  f"integer reference; {uart.cycles / len(x_test):.1f} compute cycles per image "
                  f"(the device's counter); {link.line_sent:,} bytes sent (program and "
                  f"images), {link.line_received:,} received; {uart_s:.1f} s")
    dep, figures, totals = main_run
    mhz = dep.clock_mhz
    top = None
    if not args.no_synth:
        # What runs on the board is the bridge and the engine together: the deploy top placed.
        top = _deploy_top(BOARD)
        main_row = next(r for r in rows if r["sparsity"] == 0.92)
        if top["placed"]:
            print(f"\nthe iCEBreaker deploy top (UART bridge + engine) placed: "
                  f"{top['cells'][0]:,} of {top['cells'][1]:,} logic cells, Fmax "
                  f"{top['fmax_mhz']} MHz ({'meets' if top['meets_timing'] else 'MISSES'} "
                  f"{mhz} MHz)")
        else:
            print(f"\nthe iCEBreaker deploy top does not place: {top['error']}")
        if main_row["fits"] and not (top["placed"] and top["meets_timing"]):
            main_row["fits"] = False
            main_row["fit_error"] = ("the deploy top (bridge + engine) " + (
                "misses its clock" if top["placed"] else top["error"].split(": ", 1)[1]))
    # The baseline: the same 92 % model fine-tuned without the activation penalty.
    plain, _ = one_shot(dense, splits, 0.92, finetune_epochs=20, backend="torch", width=8,
                        seed=args.seed)
    plain_dep = deploy(plain, splits.train.tensors[0], backend="verilator", board=BOARD)
    _, plain_totals, plain_runs = plain_dep.profile(x_test)
    plain_acc = float((plain_runs["dual"].predictions == y).mean())
    print(f"\n92 % fine-tuned without the activation penalty: accuracy {100 * plain_acc:.2f} %, "
          f"cycles per image dense {plain_totals['dense']:.1f}, sparse {plain_totals['sparse']:.1f}, "
          f"dual {plain_totals['dual']:.1f}: activation skipping gains "
          f"{plain_totals['sparse'] / plain_totals['dual']:.3f}x there, "
          f"{totals['sparse'] / totals['dual']:.3f}x with it")
    line_us = (64 + 10 * 4) * 10 / BAUD * 1e6     # input codes in, 32-bit logits back
    for r in rows:
        if not r["fits"]:
            print(f"{int(100 * r['sparsity'])} % does not fit the UP5K: {r['fit_error']}")
    print(f"\nline time per image at {BAUD / 1e6:g} Mbit/s (not in the latency): {line_us:.0f} us")

    print(f"\n{'pruned':>7} {'kept':>6} {'mem B':>7} {'weights B':>9} {'LUT':>6} {'FF':>6} "
          f"{'BRAM':>5} {'SPRAM':>5} {'DSP':>4} {'dense':>8} {'sparse':>8} {'dual':>8} "
          f"{'acc %':>6}")
    for r in rows:
        res = r.get("resources", {})
        print(f"{int(100 * r['sparsity']):>6}% {r['kept']:>6} {r['memory']['total']:>7} "
              f"{r['weight_bytes']:>9} {res.get('lut', '-'):>6} {res.get('ff', '-'):>6} "
              f"{res.get('bram', '-'):>5} {res.get('spram', '-'):>5} {res.get('dsp', '-'):>4} "
              f"{r['dense']:>8.1f} "
              f"{r['sparse']:>8.1f} {r['dual']:>8.1f} {100 * r['acc_board']:>6.2f}")
    _plot(rows, args.png)
    print(f"plot: {args.png}")

    cnn = _cnn(splits, args.seed)
    cnn32 = _cnn32(args.seed)
    print(f"\nthe reference article's CNN (32x32x3) at {int(100 * CNN_SPARSITY)} % on the "
          f"{CNN_BOARD} engine: " + ("fits" if cnn32["fits"] else
                                     f"does not fit: {cnn32['error']}"))
    ecp5 = None
    if not args.no_synth:
        ecp5 = _deploy_top(CNN_BOARD, "build/bench-deploy-ecp5")
        if ecp5["placed"]:
            print(f"the ULX3S deploy top (UART bridge + 16-lane engine with convolutions) "
                  f"placed on the ECP5-85F: {ecp5['resources']}; Fmax {ecp5['fmax_mhz']} MHz "
                  f"({'meets' if ecp5['meets_timing'] else 'MISSES'} its clock)")
        else:
            print(f"the ULX3S deploy top does not place: {ecp5['error']}")
    cnn_fits = ecp5 is not None and ecp5["placed"]      # the program fits: deploy checked it

    ratio, total, sim = _host_over_sim(args.seed)
    print(f"\nhwprune.run, 4096x4096 Linear at 90 %: {total:.2f} s in all, {sim:.2f} s in the "
          f"verilated unit: host / simulation = {ratio:.2f}")

    by = {r["sparsity"]: r for r in rows}
    main = by[0.92]
    result = {
        "mlp_fits_up5k": main["fits"], "cnn_fits_ecp5": cnn_fits,
        "board_matches_ref": all(r["matches_ref"] for r in rows) and cnn["matches_ref"],
        "mlp_acc_board": round(main["acc_board"], 4), "mlp_acc_float": round(main["acc_float"], 4),
        "cnn_acc_board": round(cnn["acc_board"], 4),
        "mlp_speedup_sparse": round(main["dense"] / main["sparse"], 3),
        "mlp_speedup_dual": round(main["dense"] / main["dual"], 3),
        "act_skip_gain": round(main["sparse"] / main["dual"], 3),
        "mlp_us_per_image_up5k": round(main["dual"] / mhz, 2),
        "mem_ratio_u90_u50": round(by[0.9]["weight_bytes"] / by[0.5]["weight_bytes"], 3),
        "host_over_sim_4096": round(ratio, 3),
        "act_skip_gain_no_penalty": round(plain_totals["sparse"] / plain_totals["dual"], 3),
        "mlp_acc_board_no_penalty": round(plain_acc, 4),
        "up5k_top_cells": list(top["cells"]) if top and top["cells"] else None,
        "cnn_acc_float": round(cnn["acc_float"], 4),
        "cnn_speedup_dual": round(cnn["dense"] / cnn["dual"], 3),
        # at the top's clock, or at the Fmax it reaches where it misses it
        "cnn_us_per_image_ecp5": round(cnn["dual"] / min(
            [board_clock(CNN_BOARD, blocks=("net_engine",))[1]]
            + ([ecp5["fmax_mhz"]] if ecp5 and ecp5["placed"] else [])), 2),
        "ecp5_top_fmax_mhz": ecp5["fmax_mhz"] if ecp5 and ecp5["placed"] else None,
        "cnn32_fits_ecp5": cnn32["fits"],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cnn": cnn, "cnn32": cnn32,
                                         "ecp5_top": ecp5, "result": result}, indent=2,
                                        default=str) + "\n")
    print(json.dumps(result))
    return 0


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = [100 * r["sparsity"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    axes[0].plot(s, [r["memory"]["total"] / 1024 for r in rows], "o-", label="program")
    axes[0].plot(s, [r["weight_bytes"] / 1024 for r in rows], "s--", label="weight beats")
    axes[0].set(title="memory (KiB)", xlabel="sparsity %")
    axes[0].legend()
    if all("resources" in r for r in rows):
        for key, marker in (("lut", "o-"), ("ff", "s-")):
            axes[1].plot(s, [r["resources"][key] for r in rows], marker, label=key.upper())
        axes[1].legend()
        axes[2].plot(s, [r["resources"]["dsp"] for r in rows], "o-", label="DSP")
        axes[2].plot(s, [r["resources"]["bram"] for r in rows], "s-", label="BRAM (4 Kbit)")
        axes[2].legend()
    axes[1].set(title="logic", xlabel="sparsity %")
    axes[2].set(title="DSP / BRAM", xlabel="sparsity %")
    for key, marker in (("dense", "o-"), ("sparse", "s-"), ("dual", "^-")):
        axes[3].plot(s, [r[key] for r in rows], marker, label=key)
    axes[3].set(title="cycles per image", xlabel="sparsity %", yscale="log")
    axes[3].legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
