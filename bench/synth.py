"""Synthesize the board top (UART bridge + threshold engine, no MAC) for lanes 4 / 8 / 16 on the
iCEBreaker (iCE40 UP5K) and the ULX3S (ECP5 85F) with YoWASP, and the engine alone between
registers (``--top engine``) for the two target configurations (ECP5 16 lanes, UP5K 8 lanes);
print resources, Fmax and the projected engine throughput (lanes x engine Fmax), then one JSON
line (the engine's own Fmax, as the targets are stated for the engine):

    {"ecp5_l16_fmax_mhz": .., "up5k_l8_fmax_mhz": .., "ecp5_l16_weights_per_s": ..,
     "up5k_l8_weights_per_s": ..}

Fmax is nextpnr's achieved figure for the core clock (one placement seed; expect +-10 % between
seeds). Usage: ``python bench/synth.py [--lanes 4 8 16] [--jobs 2] [--json out.json]``.
"""

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hwprune.hw.boards import synth

BOARDS = {"icebreaker": "up5k", "ulx3s": "ecp5"}


def _one(args):
    board, lanes, width, build_dir, seed, top = args
    try:
        return synth(board, lanes=lanes, width=width, build_dir=build_dir, seed=seed, top=top)
    except Exception as exc:  # a configuration that does not fit still gets a table row
        return {"board": board, "top": top, "lanes": lanes, "width": width,
                "error": str(exc).strip()[-300:]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lanes", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--jobs", type=int, default=2, help="builds run side by side (2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--build-dir", default="build/bench-synth")
    p.add_argument("--json", type=Path, help="also write all reports here")
    args = p.parse_args(argv)

    # Largest first: the slow ECP5 16-lane builds start before the small ones.
    todo = [("ulx3s", 16, args.width, args.build_dir, args.seed, "engine"),
            ("icebreaker", 8, args.width, args.build_dir, args.seed, "engine")]
    todo[1:1] = [(b, n, args.width, args.build_dir, args.seed, "board")
                 for n in sorted(args.lanes, reverse=True) for b in ("ulx3s", "icebreaker")]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        reports = list(pool.map(_one, todo))
    reports.sort(key=lambda r: (r["board"], r["lanes"], r["top"]))

    def pick(board, lanes, top):
        for r in reports:
            if (r["board"], r["lanes"], r["top"]) == (board, lanes, top) and "error" not in r:
                return r["core_fmax_mhz"]
        return None

    head = ("board", "lanes", "top", "LUT", "FF", "BRAM", "DSP", "Fmax MHz", "PLL MHz",
            "weights/s (lanes x Fmax)")
    rows = []
    for r in reports:
        if "error" in r:
            rows.append((r["board"], str(r["lanes"]), r["top"], "-", "-", "-", "-", "failed",
                         "-", r["error"].splitlines()[-1][:60]))
            continue
        res = r["resources"]
        cell = lambda k: f"{res[k]['used']}/{res[k]['available']}"  # noqa: E731
        fmax = r["core_fmax_mhz"]
        rows.append((r["board"], str(r["lanes"]), r["top"], cell("lut"), cell("ff"),
                     cell("bram"), cell("dsp"), f"{fmax:.1f}", f"{r['clock_mhz']:g}",
                     f"{r['lanes'] * fmax * 1e6:.3g}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports, indent=2) + "\n")

    f1, f2 = pick("ulx3s", 16, "engine"), pick("icebreaker", 8, "engine")
    print(json.dumps({
        "ecp5_l16_fmax_mhz": f1, "up5k_l8_fmax_mhz": f2,
        "ecp5_l16_weights_per_s": round(16 * f1 * 1e6) if f1 else None,
        "up5k_l8_weights_per_s": round(8 * f2 * 1e6) if f2 else None,
    }))
    return 0 if f1 and f2 else 1


if __name__ == "__main__":
    sys.exit(main())
