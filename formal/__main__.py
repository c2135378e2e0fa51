"""``python -m hwprune.formal`` (``make formal``): run the formal properties, print a table and
one JSON line; exit 1 if any property does not pass."""

import argparse
import json
import sys
import time

from . import properties


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hwprune.formal", description=__doc__)
    parser.add_argument("--block", action="append", help="only these blocks (repeatable)")
    parser.add_argument("--all", action="store_true", help="also the slow properties")
    parser.add_argument("--quiet", action="store_true", help="no table, no logs")
    parser.add_argument("--open", action="store_true",
                        help="the properties written but not closed on this machine instead")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per property")
    args = parser.parse_args(argv)
    chosen = [p for p in properties(open_ones=args.open) if (args.all or args.open or p.fast)
              and (not args.block or p.block in args.block)]
    start = time.perf_counter()
    rows = []
    for p in chosen:
        r = p.run(timeout=args.timeout)
        rows.append((p, r))
        if args.quiet and not r.passed:
            print(f"{r.status} {p.id}")
        if not args.quiet:
            print(f"{r.status:>8}  {p.id:<42} {p.mode:>5} depth {p.depth:>3}  {r.seconds:6.1f} s"
                  f"  {p.doc}", flush=True)
            if not r.passed:
                print(r.log)
    proved = [p for p, r in rows if r.passed and p.mode == "prove"]
    bmc = [p for p, r in rows if r.passed and p.mode == "bmc"]
    summary = {"blocks": len({p.block for p in chosen}), "properties": len(rows),
               "passed": sum(r.passed for _, r in rows), "proved": len(proved),
               "bmc_only": len(bmc), "min_bmc_depth": min((p.depth for p in bmc), default=0),
               "formal_s": round(time.perf_counter() - start, 1)}
    if not args.quiet:
        print(json.dumps(summary))
    return 0 if all(r.passed for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
