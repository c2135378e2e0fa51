"""``python -m hwprune.hw.boards``: synthesize a board top, write its bitstream and report."""

import argparse
import json
import sys

from . import BOARDS, DEFAULT_BAUD, synth


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hwprune.hw.boards", description=__doc__)
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--lanes", type=int, help="lanes (board default: icebreaker 4, ulx3s 16)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--freq", type=float, help="core clock in MHz (board default)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--top", default="board", choices=["board", "engine"],
                   help="board: UART bridge + engine (the bitstream to use); engine: the engine "
                        "alone between registers, for its Fmax")
    p.add_argument("--blocks", help="comma-separated blocks behind the bridge (default: every "
                                    "block that fits; e.g. threshold_engine,magnitude_histogram)")
    p.add_argument("--build-dir", default="build")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        report = synth(args.board, lanes=args.lanes, width=args.width, freq=args.freq,
                       baud=args.baud, seed=args.seed, build_dir=args.build_dir, top=args.top,
                       blocks=args.blocks.split(",") if args.blocks else None,
                       verbose=args.verbose)
    except (ValueError, RuntimeError) as exc:  # amaranth's BuildError is a RuntimeError... or not
        print(f"synth: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    if not report["meets_timing"]:
        print(f"synth: warning: Fmax {report['core_fmax_mhz']} MHz is below the "
              f"{report['clock_mhz']} MHz clock", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
