"""Command line: ``hwprune prune`` (also ``python -m hwprune``) and ``hwprune verilog``."""

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _add_engine_options(p):
    p.add_argument("--lanes", type=int, default=16, help="weights per beat, 4 to 64 (16)")
    p.add_argument("--width", type=int, default=8, help="bits per weight: 4, 8 or 16 (8)")


def _parser():
    parser = argparse.ArgumentParser(prog="hwprune", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("prune", help="prune a built-in model through the engine and report")
    p.add_argument("--model", default="cnn", help="built-in model (cnn: the reference article's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's weights (0)")
    p.add_argument("--amount", type=float, default=0.5, help="fraction to prune, 0 to 1 (0.5)")
    p.add_argument("--backend", default="verilator", help="verilator, golden or cocotb")
    _add_engine_options(p)
    p.add_argument("--granularity", default="tensor", choices=["tensor", "channel"])
    p.add_argument("--write-back", default="mask", choices=["mask", "quantized"])
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    v = sub.add_parser("verilog", help="write the generated Verilog of a hardware block")
    v.add_argument("--block", default="threshold_engine")
    _add_engine_options(v)
    v.add_argument("--out", type=Path, default=Path("build"), help="output folder (build/)")
    return parser


def _cmd_prune(args):
    import hwprune
    from hwprune.models import build_model

    model = build_model(args.model, seed=args.seed)
    report = hwprune.prune(model, amount=args.amount, backend=args.backend, lanes=args.lanes,
                           width=args.width, granularity=args.granularity,
                           write_back=args.write_back, progress=not args.no_progress)
    print(report.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json(indent=2))
        print(f"report written to {args.json}")
    return 0


def _cmd_verilog(args):
    from hwprune.hw import to_verilog
    text = to_verilog(args.block, lanes=args.lanes, width=args.width)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.block}_l{args.lanes}_w{args.width}.v"
    path.write_text(text)
    print(f"wrote {path} ({len(text.splitlines())} lines)")
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["prune", *(argv if argv is not None else sys.argv[1:])])
    try:
        return {"prune": _cmd_prune, "verilog": _cmd_verilog}[args.command](args)
    except (ValueError, TypeError, RuntimeError) as exc:
        print(f"hwprune: error: {exc}", file=sys.stderr)
        return 2
