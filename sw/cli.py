"""Command line: ``hwprune prune`` (also ``python -m hwprune``), ``hwprune mac``,
``hwprune deploy``, ``hwprune verilog``, ``hwprune synth``, ``hwprune info``, and the digits workflows
``hwprune train`` and ``hwprune experiment``."""

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _progress(args):
    """Progress bars on a terminal only (quiet in logs and pipes), unless --no-progress."""
    return not args.no_progress and sys.stderr.isatty()


def _add_engine_options(p):
    p.add_argument("--lanes", type=int, default=16, help="weights per beat, 4 to 64 (16)")
    p.add_argument("--width", type=int, default=8, help="bits per weight: 4, 8 or 16 (8)")


def _parser():
    parser = argparse.ArgumentParser(prog="hwprune", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("prune", help="prune a model through the engine and report")
    _add_model_options(p, "cnn")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's weights (0)")
    p.add_argument("--amount", type=float, default=0.5, help="fraction to prune, 0 to 1 (0.5)")
    p.add_argument("--pattern", default="unstructured",
                   help='unstructured, N:M (e.g. 2:4) or channel (default: unstructured)')
    p.add_argument("--scope", default="layer", choices=["layer", "global"],
                   help="one threshold per tensor, or one across all tensors (layer)")
    p.add_argument("--backend", default="verilator",
                   help="verilator, golden, torch, cocotb, uart-sim or serial")
    _add_engine_options(p)
    p.add_argument("--granularity", default="tensor", choices=["tensor", "channel"])
    p.add_argument("--criterion", default="magnitude", choices=["magnitude", "activation"],
                   help="rank |w|, or Wanda's |w| * ||x_j|| on calibration inputs (digits "
                        "models: 256 digits training images; cnn: 64 seeded random images)")
    p.add_argument("--group", choices=["row", "layer", "global"],
                   help="where the kept count is exact (default: --scope)")
    p.add_argument("--write-back", default="mask", choices=["mask", "quantized", "inplace"])
    p.add_argument("--port", help="serial backend: the board's port (e.g. /dev/ttyUSB1)")
    p.add_argument("--board", choices=["icebreaker", "ulx3s"],
                   help="uart-sim backend: simulate this board's default bitstream")
    p.add_argument("--host-fallback", action="store_true",
                   help="uart-sim / serial: run a block the bitstream lacks in its golden "
                        "model on the host (default: a clear error)")
    p.add_argument("--cluster", choices=["ray"], help="shards on a Ray cluster (hwprune[ray])")
    p.add_argument("--address", help="with --cluster ray: the cluster to join (default: start "
                                     "one embedded on this machine)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--out", type=Path, help="save the pruned model's state dict here "
                   "(torch.save; weight_orig and weight_mask, torch.nn.utils.prune's convention)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    _add_training_commands(sub)

    _add_mac_command(sub)
    _add_deploy_command(sub)
    _add_synth_command(sub)

    v = sub.add_parser("verilog", help="write the generated Verilog of a hardware block")
    v.add_argument("--block", default="threshold_engine", help="see `hwprune info`")
    _add_engine_options(v)
    v.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="another parameter of the block (e.g. max_k=1024, clocks_per_bit=8)")
    v.add_argument("--out", type=Path, default=Path("build"), help="output folder (build/)")

    i = sub.add_parser("info", help="the hardware blocks, their parameter domains, the backends "
                       "and boards that run each, and the build cache")
    i.add_argument("--json", action="store_true", help="print it as JSON")
    i.add_argument("--port", help="ask a programmed board on this serial port what its "
                   "bitstream holds (its INFO): the blocks and their parameters")
    i.add_argument("--baud", type=int, default=3_000_000, help="with --port (3000000)")
    i.add_argument("--board", choices=["icebreaker", "ulx3s"],
                   help="ask this board's default bitstream, verilated behind its UART")
    return parser


MODEL_HELP = ("a built-in model (cnn: the reference article's; mlp-digits, cnn-digits), "
              "package.module:factory, or a file saved with torch.save (a whole module, or a "
              "state dict with --arch)")


def _add_model_options(p, default):
    p.add_argument("--model", default=default, help=f"{MODEL_HELP} ({default})")
    p.add_argument("--arch", help="for a state-dict file: package.module:factory (or a "
                   "built-in model) building the module it loads into")


def _load(args):
    from hwprune.models import load_model
    return load_model(args.model, arch=args.arch, seed=getattr(args, "seed", 0))


def _builtin_only(args, what):
    from hwprune.models import MODELS
    if args.model not in MODELS:
        raise ValueError(f"{what} needs a built-in model's inputs; {args.model!r} is not one")


def _cmd_info(args):
    import json

    from hwprune.info import device_table, info, info_table
    if args.port and args.board:
        raise ValueError("--port asks a board, --board a simulated one: give one of them")
    if args.port or args.board:
        data = _device_info(args)
        print(json.dumps(data, indent=2) if args.json else device_table(data))
        return 0
    data = info()
    print(json.dumps(data, indent=2) if args.json else info_table(data))
    return 0


def _device_info(args):
    """What a bitstream holds, as the device answers INFO (a board, or a simulated one)."""
    if args.port:
        from hwprune.uart import SerialTransport, UartLink, device_info
        transport = SerialTransport(args.port, baudrate=args.baud)
        try:
            transport.resync()
            data = device_info(UartLink(transport))
        finally:
            transport.close()
        return {"device": f"serial port {args.port}", **data}
    from hwprune.hw.boards import DEFAULT_LANES
    from hwprune.uart import UartSimBackend
    backend = UartSimBackend(lanes=DEFAULT_LANES[args.board], width=8, board=args.board)
    return {"device": f"{args.board}'s default bitstream (uart-sim)", **backend.device_info()}


def _add_training_commands(sub):
    from hwprune.experiments import DIGITS_MODELS
    t = sub.add_parser("train", help="train a digits model densely (optionally with L1)")
    t.add_argument("--model", default="mlp-digits", choices=DIGITS_MODELS)
    t.add_argument("--seed", type=int, default=0, help="seed of weights, split, batches (0)")
    t.add_argument("--epochs", type=int, default=40, help="epochs (40)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (0.001)")
    t.add_argument("--l1", type=float, default=0.0, help="L1 strength: loss + l1*sum|w| (0)")
    t.add_argument("--out", type=Path, help="save the trained state dict here (torch.save)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("experiment", help="train on digits, prune gradually through the engine, "
                       "fine-tune, report (the make run job); --sweep / --mixed-precision add "
                       "accuracy-vs-sparsity curves and a per-layer bit-width choice")
    e.add_argument("--model", default="mlp-digits", choices=DIGITS_MODELS)
    e.add_argument("--seed", type=int, default=0, help="seed of weights, split, batches (0)")
    e.add_argument("--sparsity", type=float, default=0.92, help="final sparsity (0.92)")
    e.add_argument("--scope", default="layer", choices=["layer", "global"],
                   help="one threshold per layer, or one across all layers (layer)")
    e.add_argument("--backend", default="verilator", help="verilator, golden or cocotb")
    e.add_argument("--quick", action="store_true", help="few epochs: a smoke test, not a result")
    e.add_argument("--sweep", action="store_true",
                   help="also one-shot vs gradual (and L1, 2:4, channel) against sparsity")
    e.add_argument("--mixed-precision", action="store_true",
                   help="also choose 4/8/16 bits per layer on the validation split")
    e.add_argument("--out", type=Path, default=Path("results"), help="JSON/PNG folder (results/)")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")


def _save_state(model, path, what):
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(f"{what} written to {path}")


def _one_thread():
    # The digits models are small: one thread trains them as fast and leaves the others' cores.
    import torch
    torch.set_num_threads(1)


def _cmd_train(args):
    _one_thread()
    from hwprune.data import load_digits_splits
    from hwprune.experiments import train_dense
    from hwprune.train import evaluate

    splits = load_digits_splits(args.seed)
    model = train_dense(args.model, splits, seed=args.seed, epochs=args.epochs, lr=args.lr,
                        l1=args.l1, progress=_progress(args))
    print(f"{args.model}: test accuracy {100 * evaluate(model, splits.test):.2f} % "
          f"(validation {100 * evaluate(model, splits.val):.2f} %)")
    if args.out:
        _save_state(model, args.out, "state dict")
    return 0


def _cmd_experiment(args):
    import json
    from hwprune import experiments as ex
    from hwprune.data import load_digits_splits

    _one_thread()
    epochs = {"dense_epochs": 4, "epochs": 3} if args.quick else {}
    progress = _progress(args)
    result = ex.demo(args.model, seed=args.seed, sparsity=args.sparsity, scope=args.scope,
                     backend=args.backend, out=args.out, progress=progress, **epochs)
    if args.mixed_precision:
        splits = load_digits_splits(args.seed)
        dense = ex.train_dense(args.model, splits, seed=args.seed, progress=progress,
                               **({"epochs": epochs["dense_epochs"]} if args.quick else {}))
        pruned, _ = ex.gradual(dense, splits, 0.9, backend=args.backend, seed=args.seed,
                               progress=progress, **({"epochs": 3} if args.quick else {}))
        _, mixed = ex.mixed_precision(pruned, splits, result["dense_accuracy"],
                                      backend=args.backend, progress=progress)
        path = args.out / f"mixed_{args.model}.json"
        path.write_text(json.dumps(mixed, indent=2, default=str))
        print(f"mixed precision at 90 % sparsity: widths {mixed['precision']['widths']}, "
              f"accuracy {100 * mixed['accuracy']:.2f} % ({mixed['drop_pp']:+.2f} pp drop), "
              f"storage {mixed['storage']['bits']:,} bits, {mixed['storage_ratio']:.1f}x less "
              f"than fp32 dense; written to {path}")
    if args.sweep:
        kw = {"dense_epochs": 4, "epochs": 3, "sparsities": (0.5, 0.9)} if args.quick else {}
        sweep = ex.sparsity_sweep(args.model, seed=args.seed, backend=args.backend,
                                  progress=progress, **kw)
        path = args.out / f"sweep_{args.model}.json"
        path.write_text(json.dumps(sweep, indent=2, default=str))
        png = ex.plot_accuracy_vs_sparsity(sweep, args.out / f"sweep_{args.model}.png")
        for run in sweep["runs"]:
            print(f"{run['method']:>18} {run['pattern']:>12} sparsity {run['sparsity']:.3f}: "
                  f"{100 * run['accuracy']:.2f} % ({run['drop_pp']:+.2f} pp)")
        print(f"sweep written to {path} and {png}")
    return 0


def _cmd_prune(args):
    import hwprune

    model, _ = _load(args)
    example = None
    if args.pattern == "channel":
        from hwprune.models import example_inputs
        _builtin_only(args, "--pattern channel")
        example = example_inputs(args.model)
    calibration = None
    if args.criterion == "activation":
        _builtin_only(args, "--criterion activation")
        from hwprune.models import calibration_inputs
        calibration = calibration_inputs(args.model, seed=args.seed)
    options = {}
    if args.port:
        options["port"] = args.port
    if args.board:
        options["board"] = args.board
    if args.host_fallback:
        options["host_fallback"] = True
    report = hwprune.prune(model, amount=args.amount, pattern=args.pattern, scope=args.scope,
                           backend=args.backend, lanes=args.lanes, width=args.width,
                           granularity=args.granularity, write_back=args.write_back,
                           example_inputs=example, progress=_progress(args),
                           cluster=args.cluster, address=args.address,
                           criterion=args.criterion, calibration=calibration,
                           group=args.group, **options)
    print(report.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json(indent=2))
        print(f"report written to {args.json}")
    if args.out:
        _save_state(model, args.out, "pruned model's state dict")
    return 0


def _cmd_verilog(args):
    extra = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param must be NAME=VALUE, not {item!r}")
        try:
            extra[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--param {name}: the value must be an integer, not {value!r}") \
                from None
    from hwprune.hw import to_verilog
    text = to_verilog(args.block, lanes=args.lanes, width=args.width, **extra)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.block}_l{args.lanes}_w{args.width}.v"
    path.write_text(text)
    print(f"wrote {path} ({len(text.splitlines())} lines)")
    return 0


def _add_synth_command(sub):
    from hwprune.sweeps import CLUSTERS
    s = sub.add_parser("synth", help="synthesize a board top with several placement seeds in "
                       "parallel and keep the best Fmax")
    s.add_argument("--board", default="icebreaker", help="icebreaker or ulx3s")
    s.add_argument("--lanes", type=int, help="weights per beat (the board's default "
                   "bitstream's: icebreaker 4, ulx3s 16)")
    s.add_argument("--width", type=int, default=8, help="bits per weight: 4, 8 or 16 (8)")
    s.add_argument("--seeds", type=int, default=1, help="placement seeds 1..N (1)")
    s.add_argument("--top", default="board", choices=["board", "engine"])
    s.add_argument("--blocks", help="comma-separated blocks behind the bridge (default: every "
                   "block whose adapter fits lanes and width; hwprune info lists them)")
    s.add_argument("--cluster", default="threads", choices=[c for c in CLUSTERS if c],
                   help="threads: this machine's cores; ray: a Ray cluster (threads)")
    s.add_argument("--address", help="with --cluster ray: the cluster to join")
    s.add_argument("--build-dir", type=Path, default=Path("build"))


def _cmd_synth(args):
    import json
    from hwprune.sweeps import synth_seeds
    report = synth_seeds(args.board, seeds=args.seeds, lanes=args.lanes, width=args.width,
                         top=args.top, build_dir=args.build_dir, cluster=args.cluster,
                         address=args.address,
                         **({"blocks": args.blocks.split(",")} if args.blocks else {}))
    seeds = ", ".join(f"seed {s}: {f} MHz" for s, f in report["seeds"].items())
    print(json.dumps({k: v for k, v in report.items() if k != "seeds"}, indent=2))
    print(f"best core Fmax {report['core_fmax_mhz']} MHz (seed {report['seed']}; {seeds}); "
          f"bitstream {report['bitstream']}")
    return 0


def _add_mac_command(sub):
    r = sub.add_parser("mac", help="prune a model and run its Conv/Linear layers on the "
                       "sparse MAC unit: per-layer dense vs sparse cycles, and a PNG chart")
    _add_model_options(r, "cnn")
    r.add_argument("--input-shape", help="one input's shape for a model that is not built in, "
                   "e.g. 3,32,32")
    r.add_argument("--seed", type=int, default=0, help="seed of the weights and the input (0)")
    r.add_argument("--amount", type=float, default=0.9,
                   help="unstructured: fraction to prune through the engine, 0 to 1 (0.9)")
    r.add_argument("--pattern", default="unstructured", help="unstructured or N:M, e.g. 2:4")
    r.add_argument("--backend", default="verilator",
                   help="verilator, golden, cocotb, uart-sim (with --board) or serial (--port)")
    r.add_argument("--board", choices=["icebreaker", "ulx3s"],
                   help="uart-sim backend: simulate this board's default bitstream (the "
                        "ULX3S's holds the sparse MAC)")
    r.add_argument("--port", help="serial backend: the board's port")
    _add_engine_options(r)
    r.add_argument("--batch", type=int, default=1, help="input images (1)")
    r.add_argument("--clock-mhz", type=float,
                   help="clock for latency (default: Fmax of the latest report under build/)")
    r.add_argument("--chart", type=Path, default=Path("results/sparse_mac_cycles.png"))
    r.add_argument("--json", type=Path, help="also write the report as JSON here")


def _cmd_mac(args):
    from hwprune.accelerate import mac_demo
    from hwprune.models import MODELS
    model = args.model
    if args.model not in MODELS:
        if not args.input_shape:
            raise ValueError("--input-shape is needed for a model that is not built in")
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            raise ValueError(f"--input-shape must be integers separated by commas, not "
                             f"{args.input_shape!r}") from None
        model = (_load(args)[0], shape)
    options = {k: v for k, v in (("board", args.board), ("port", args.port)) if v is not None}
    report, chart = mac_demo(model, seed=args.seed, amount=args.amount,
                             pattern=args.pattern, backend=args.backend, lanes=args.lanes,
                             width=args.width, batch=args.batch, clock_mhz=args.clock_mhz,
                             chart=args.chart, **options)
    print(report.table())
    print(f"chart written to {chart}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json(indent=2))
        print(f"report written to {args.json}")
    return 0


def _add_deploy_command(sub):
    d = sub.add_parser("deploy", help="compile a pruned model for the network engine and run it "
                       "there, layer after layer: accuracy, cycles dense / sparse / dual-sparse, "
                       "latency at the board's clock")
    _add_model_options(d, "mlp-digits")
    d.add_argument("--seed", type=int, default=0, help="seed of weights, split, batches (0)")
    d.add_argument("--amount", type=float, help="prune this fraction per layer through the "
                   "engine first (built-in digits models: trained, pruned to 0.92 and "
                   "fine-tuned by default; other models: deployed as they are)")
    d.add_argument("--board", default="icebreaker", choices=["icebreaker", "ulx3s"],
                   help="the board whose engine (lanes, memories, clock) to compile for")
    d.add_argument("--backend", default="verilator",
                   help="verilator, golden, torch, cocotb, uart-sim (the board's deploy "
                        "bitstream verilated, behind its UART) or serial (with --port)")
    d.add_argument("--port", help="serial backend: the board's port")
    d.add_argument("--prune-backend", default="verilator",
                   help="the engines that prune first (verilator; any prune backend)")
    d.add_argument("--act-l1", type=float, default=1e-2,
                   help="built-in digits models: fine-tune with this activation-sparsity "
                        "penalty (more zero activations for the engine to skip; 0.01)")
    d.add_argument("--inputs", type=Path, help="calibration inputs (a tensor saved with "
                   "torch.save); default: the digits training images for a 64-input model")
    d.add_argument("--out", type=Path, help="save the pruned model here (torch.save of the "
                   "whole module, masks made permanent: torch.load gives it back)")
    d.add_argument("--program", type=Path, help="save the compiled program (.npz) here")
    d.add_argument("--json", type=Path, help="also write the figures as JSON here")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")


def _cmd_deploy(args):
    import copy
    import json
    import time

    import torch

    import hwprune
    from hwprune.data import load_digits_splits
    from hwprune.deploy import deploy
    from hwprune.experiments import DIGITS_MODELS, one_shot, train_dense

    _one_thread()
    splits = None
    if args.model in DIGITS_MODELS:
        splits = load_digits_splits(args.seed)
        dense = train_dense(args.model, splits, seed=args.seed, progress=_progress(args))
        model, _ = one_shot(dense, splits, 0.92 if args.amount is None else args.amount,
                            backend=args.prune_backend, width=8, act_l1=args.act_l1,
                            seed=args.seed, progress=_progress(args))
    else:
        model, _ = _load(args)
        if args.amount:
            hwprune.prune(model, amount=args.amount, backend=args.prune_backend, width=8,
                          progress=_progress(args))
    model.eval()
    if args.inputs:
        try:
            calibration = torch.load(args.inputs, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{args.inputs} is not a tensor torch.save wrote ({exc})") from None
        if not isinstance(calibration, torch.Tensor):
            raise ValueError(f"{args.inputs} holds a {type(calibration).__name__}, not a tensor")
    else:
        if splits is None:
            splits = load_digits_splits(args.seed)
        calibration = splits.train.tensors[0]
    options = {"port": args.port} if args.port else {}
    board = deploy(model, calibration, backend=args.backend, board=args.board, **options)
    mem = board.memory()
    print(f"{args.model} compiled for the {args.board} engine ({board.lanes} lanes x "
          f"{board.width} bits): {board.quantized.kept_weights:,} of "
          f"{board.quantized.dense_weights:,} weights kept, {mem['total']:,} bytes of engine "
          f"memory ({', '.join(f'{k} {v:,}' for k, v in mem.items() if k != 'total')})")
    figures = {}
    if splits is not None and board.program.in_features == 64:
        x, y = splits.test.tensors
        t = time.perf_counter()
        run = board.run(x)
        seconds = time.perf_counter() - t
        with torch.no_grad():
            float_acc = (model(x).argmax(1) == y).float().mean().item()
        acc = float((run.predictions == y.numpy()).mean())
        # The per-layer profile runs the dense program too: over a UART that would send it
        # down the line; the verilated engine is the same RTL (its counters equal the
        # device's, tests/test_uart_deploy.py).
        profiler = board if args.backend not in ("uart-sim", "serial") else deploy(
            model, calibration, backend="verilator", board=args.board)
        layers, totals, _ = profiler.profile(x)
        print(board.table(layers, totals))
        if run.cycles:
            totals["device"] = run.cycles / len(x)
        per_image = f"{run.cycles / len(x) / board.clock_mhz:.2f} us per image at " \
            f"{board.clock_mhz:g} MHz (the engine's counter), " if run.cycles else ""
        link = getattr(board.backend, "link", None)
        line = (f", {link.line_sent:,} bytes sent and {link.line_received:,} received on the "
                f"line" if link is not None else "")
        print(f"{len(x)} digits test images on the {args.backend} engine: accuracy "
              f"{100 * acc:.2f} % (float model {100 * float_acc:.2f} %), {per_image}"
              f"{len(x) / seconds:,.0f} images/s simulated on this host{line}")
        figures = {"accuracy": acc, "float_accuracy": float_acc, "cycles": totals,
                   "us_per_image": (run.cycles / len(x) / board.clock_mhz if run.cycles
                                    else None),
                   "layers": [vars(f) for f in layers]}
    if args.out:
        keep = copy.deepcopy(model)
        hwprune.remove(keep)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(keep, args.out)
        print(f"pruned model written to {args.out} (torch.load(path, weights_only=False))")
    if args.program:
        args.program.parent.mkdir(parents=True, exist_ok=True)
        board.save(args.program)
        print(f"program written to {args.program}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "board": args.board,
                                         "memory": mem, **figures}, indent=2, default=str))
        print(f"figures written to {args.json}")
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["prune", *(argv if argv is not None else sys.argv[1:])])
    try:
        return {"prune": _cmd_prune, "verilog": _cmd_verilog, "train": _cmd_train,
                "experiment": _cmd_experiment, "mac": _cmd_mac, "info": _cmd_info,
                "synth": _cmd_synth, "deploy": _cmd_deploy}[args.command](args)
    except (ValueError, TypeError, RuntimeError) as exc:
        print(f"hwprune: error: {exc}", file=sys.stderr)
        return 2
