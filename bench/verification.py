"""Verification that proves and measures itself (issue: formal, mutation, host faults).

Runs every formal property (``hwprune.formal``, SymbiYosys from PyPI), the RTL mutation run
(``tools/mutate.py``: mutants of every block against the formal properties and the simulation
tests), and the host-fault tests (a damaged build cache rebuilt, an interrupted prune leaving the
model untouched). Prints a table per part and, last, one JSON line.

    python bench/verification.py [--mutants-per-block 8]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def formal():
    from hwprune.formal import properties
    rows, start = [], time.perf_counter()
    for p in properties():
        r = p.run(timeout=900)
        rows.append((p, r))
        print(f"{r.status:>8}  {p.id:<48} {p.mode:>5} depth {p.depth:>3} {r.seconds:7.1f} s"
              f"{'  (make test)' if p.fast else ''}", flush=True)
    passed = [(p, r) for p, r in rows if r.passed]
    bmc = [p for p, _ in passed if p.mode == "bmc"]
    return {"blocks": len({p.block for p, _ in rows}), "properties": len(rows),
            "passed": len(passed), "proved": sum(p.mode == "prove" for p, _ in passed),
            "bmc_only": len(bmc), "min_bmc_depth": min((p.depth for p in bmc), default=0),
            "formal_s": round(time.perf_counter() - start, 1),
            "fast_formal_s": round(sum(r.seconds for p, r in rows if p.fast), 1),
            "not_passed": [f"{p.id}: {r.status}" for p, r in rows if not r.passed]}


def mutation(per_block):
    out = ROOT / "results" / "mutation.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "mutate.py"), "--max",
                           str(per_block), "--json", str(out)], cwd=ROOT, text=True,
                          capture_output=True)
    print(proc.stdout[-6000:], flush=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def host_faults():
    def passes(test):
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"tests/test_host_faults.py::{test}"], cwd=ROOT, text=True,
                              capture_output=True)
        print(proc.stdout.strip().splitlines()[-1], flush=True)
        return proc.returncode == 0
    return {"cache_fault_recovered":
            passes("test_build_cache_survives_concurrent_builds_and_damage"),
            "interrupt_untouched":
            passes("test_interrupt_while_masks_are_written_puts_every_tensor_back")
            and passes("test_a_backend_failing_in_its_third_tensor_changes_nothing")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants-per-block", type=int, default=8)
    args = parser.parse_args()
    print("== formal properties ==")
    f = formal()
    print("== mutation ==")
    mu = mutation(args.mutants_per_block)
    print("== host faults ==")
    h = host_faults()
    for block, b in mu["blocks"].items():
        print(f"{block:<22} killed {b['killed']}/{b['mutants']}"
              f"{' survivors: ' + '; '.join(b['survivors']) if b['survivors'] else ''}")
    if f["not_passed"]:
        print("not passed:", "; ".join(f["not_passed"]))
    print(json.dumps({"blocks": f["blocks"], "properties": f["properties"], "proved": f["proved"],
                      "bmc_only": f["bmc_only"], "min_bmc_depth": f["min_bmc_depth"],
                      "mutants": mu["mutants"], "killed": mu["killed"],
                      "kill_rate": mu["kill_rate"], "formal_s": f["formal_s"],
                      "fast_formal_s": f["fast_formal_s"], **h}))


if __name__ == "__main__":
    main()
