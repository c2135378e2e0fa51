"""Mutation testing of the RTL: plausible single-point bugs the suite must catch.

For each block, the mutator parses its Amaranth source and makes one small change at a time
inside the ``elaborate`` methods: a comparison turned (``==``/``!=``, ``<``/``<=``, ``>``/``>=``),
a constant off by one, ``&`` and ``|`` swapped, a ``~`` dropped, a reset value flipped, a
``Mux`` whose arms are swapped. Each mutant is written into a copy of the package (an overlay on
``PYTHONPATH``, the repository is never touched); a mutant whose design no longer elaborates is
*stillborn* and not counted. The suite then runs against it: the block's formal properties
(``hwprune.formal``) and its simulation tests (pytest). A mutant the suite fails on is *killed*;
one it passes is a *survivor*: a gap to close with a test or a property, or an equivalent mutant
to document in :data:`EQUIVALENT`.

    python tools/mutate.py                   # every block, the default sample of mutants
    python tools/mutate.py --block nm_selector --max 30
    python tools/mutate.py --json results/mutation.json

Prints one line per mutant and, last, one JSON line of the totals.
"""

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: block -> (its RTL sources, the simulation tests that exercise it)
TARGETS = {
    "threshold_engine": (["hw/threshold_engine.py"], ["tests/test_threshold_engine_sim.py"]),
    "nm_selector": (["hw/nm_selector.py"], ["tests/test_nm_selector_sim.py"]),
    "channel_norms": (["hw/channel_norms.py"], ["tests/test_channel_norms_sim.py"]),
    "magnitude_histogram": (["hw/magnitude_histogram.py"],
                            ["tests/test_magnitude_histogram_sim.py"]),
    "sparse_mac": (["hw/sparse_mac.py"], ["tests/test_sparse_mac_sim.py"]),
    "net_engine": (["hw/net_engine.py"], ["tests/test_net_engine.py"]),
    "score_unit": (["hw/score_unit.py"], ["tests/test_row_blocks.py"]),
    "row_select": (["hw/row_select.py"], ["tests/test_row_blocks.py"]),
    "row_mask": (["hw/row_mask.py"], ["tests/test_row_blocks.py"]),
    "command_bridge": (["hw/framing.py", "hw/bridge.py"],
                       ["tests/test_uart_bridge_cocotb.py", "tests/test_uart_sim.py"]),
    "uart_core": (["hw/uart.py"], ["tests/test_uart_rx_sim.py", "tests/test_uart_sim.py"]),
}

#: Survivors that cannot change behaviour, with the reason: (file, line, mutation) -> why.
EQUIVALENT = {
    ("hw/channel_norms.py", 108, "Lt -> LtE"):
        "|w| as Mux(w <= 0, -w, w): for w == 0 both arms are 0",
    ("hw/sparse_mac.py", 141, "constant 2 -> 3"):
        "one more bit of headroom in the position counter's width: same values",
    ("hw/score_unit.py", 56, "Lt -> LtE"):
        "|w| as Mux(w <= 0, -w, w): for w == 0 both arms are 0",
    ("hw/row_select.py", 133, "constant 1 -> 2"):
        "one more bit of headroom in the suffix sums' width: same values",
    ("hw/row_mask.py", 93, "Lt -> LtE"):
        "the budget left after a beat, Mux(ties <= current, current - ties, 0): for ties == "
        "current both arms are 0",
    ("hw/uart.py", 52, "init 1 -> 0"):
        "the receiver's line is driven by its FFSynchronizer (init=1): its own reset value "
        "is never used",
}

#: The package's folders, as pyproject.toml maps them.
PACKAGE = {"sw": "", "contract": "contract", "hw": "hw", "sim": "sim", "formal": "formal"}


@dataclass
class Mutant:
    block: str
    file: str
    line: int
    what: str
    status: str = ""        # killed / survived / stillborn / equivalent
    by: str = ""            # what killed it
    seconds: float = 0.0


class _Sites(ast.NodeTransformer):
    """Finds (``apply=None``) or applies (``apply=k``) the k-th mutation site."""

    SWAPS = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
             ast.Gt: ast.GtE, ast.GtE: ast.Gt}

    def __init__(self, apply=None):
        self.apply, self.sites, self.inside = apply, [], 0

    def _site(self, node, what):
        k = len(self.sites)
        self.sites.append((node.lineno, what))
        return k == self.apply

    def visit_FunctionDef(self, node):
        if node.name != "elaborate" and not self.inside:
            return node
        self.inside += 1
        self.generic_visit(node)
        self.inside -= 1
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        op = type(node.ops[0])
        if op in self.SWAPS and self._site(node, f"{op.__name__} -> {self.SWAPS[op].__name__}"):
            node.ops[0] = self.SWAPS[op]()
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            other = ast.BitOr if isinstance(node.op, ast.BitAnd) else ast.BitAnd
            if self._site(node, f"{type(node.op).__name__} -> {other.__name__}"):
                node.op = other()
        elif isinstance(node.op, (ast.Add, ast.Sub)) and isinstance(node.right, ast.Constant) \
                and isinstance(node.right.value, int) and not isinstance(node.right.value, bool):
            if self._site(node, f"constant {node.right.value} -> {node.right.value + 1}"):
                node.right = ast.Constant(node.right.value + 1)
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Invert) and self._site(node, "~x -> x"):
            return node.operand
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if name == "Mux" and len(node.args) == 3 and self._site(node, "Mux arms swapped"):
            node.args[1], node.args[2] = node.args[2], node.args[1]
        for kw in node.keywords:
            if kw.arg == "init" and isinstance(kw.value, ast.Constant) \
                    and isinstance(kw.value.value, int):
                if self._site(node, f"init {kw.value.value} -> {int(not kw.value.value)}"):
                    kw.value = ast.Constant(int(not kw.value.value))
        return node


def sites(source):
    finder = _Sites()
    finder.visit(ast.parse(source))
    return finder.sites


def mutate(source, k):
    tree = _Sites(apply=k).visit(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree))


def sample(block, limit):
    """The block's mutants: every site, or ``limit`` of them spread evenly over its files."""
    found = []
    for rel in TARGETS[block][0]:
        for k, (line, what) in enumerate(sites((ROOT / rel).read_text())):
            found.append((rel, k, line, what))
    if limit and len(found) > limit:
        step = len(found) / limit
        found = [found[int(i * step)] for i in range(limit)]
    return found


def overlay(dest):
    """A copy of the package under ``dest/hwprune`` (the folders as pyproject.toml maps them)."""
    pkg = dest / "hwprune"
    for folder, sub in PACKAGE.items():
        shutil.copytree(ROOT / folder, pkg / sub if sub else pkg, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return pkg


def overlay_path(pkg, rel):
    """Where repository file ``rel`` (``hw/nm_selector.py``) lies in the overlay package."""
    folder, rest = rel.split("/", 1)
    return pkg / PACKAGE[folder] / rest


def _run(cmd, env, timeout):
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        return proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        return "timeout", ""


def judge(mutant, rel, k, *, timeout):
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwprune-mutant-") as tmp:
        pkg = overlay(Path(tmp))
        if k is not None:       # None: the unmutated baseline, which must pass
            overlay_path(pkg, rel).write_text(mutate((ROOT / rel).read_text(), k))
        env = dict(os.environ, PYTHONPATH=tmp, PYTHONDONTWRITEBYTECODE="1")
        py = sys.executable
        # Stillborn: the design no longer builds.
        rc, _ = _run([py, "-c", "import sys; from hwprune.hw import to_verilog; "
                      f"to_verilog({mutant.block!r}, lanes=8, width=4)"], env, timeout)
        if rc != 0:
            mutant.status = "stillborn"
        else:
            mutant.status = "survived"
            # Simulation first (cheap); then the block's fast formal properties, each given
            # ``timeout`` seconds (a property the mutant makes the solver time out on does not
            # count as a kill: the mutant is reported as surviving it).
            checks = [("simulation", [py, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                      *TARGETS[mutant.block][1]]),
                      ("formal", [py, "-m", "hwprune.formal", "--block", mutant.block,
                                  "--quiet", "--timeout", str(timeout // 4)])]
            for name, cmd in checks:
                rc, log = _run(cmd, env, timeout)
                verdicts = {line.split()[0] for line in log.splitlines() if line.strip()}
                if name == "formal" and rc not in (0, "timeout"):
                    # A property failed, or its trigger became unreachable (the mutant never
                    # delivers): killed. A proof that stops closing (UNKNOWN) or a solver
                    # timeout (ERROR) is not a kill.
                    rc = 1 if verdicts & {"FAIL", "VACUOUS"} else 0
                    if not rc and "ERROR" in verdicts:
                        mutant.by = "formal timed out"
                if rc == "timeout":
                    mutant.by = f"{name} timed out"
                elif rc != 0:
                    mutant.status, mutant.by = "killed", name
                    break
    key = (mutant.file, mutant.line, mutant.what)
    if mutant.status == "survived" and key in EQUIVALENT:
        mutant.status, mutant.by = "equivalent", EQUIVALENT[key]
    mutant.seconds = time.perf_counter() - start
    return mutant


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", action="append", choices=sorted(TARGETS))
    parser.add_argument("--max", type=int, default=10, help="mutants per block (0: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=int, default=480, help="seconds per check")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    blocks = args.block or list(TARGETS)
    # The baseline in the same run: every block's unmutated copy passes its checks.
    with ThreadPoolExecutor(args.jobs) as pool:
        base = list(pool.map(lambda b: judge(Mutant(b, TARGETS[b][0][0], 0, "none"),
                                             TARGETS[b][0][0], None, timeout=args.timeout),
                             blocks))
    for m in base:
        print(f"  baseline {m.block:<20} {m.status}{'  ' + m.by if m.by else ''} "
              f"({m.seconds:.0f} s)", flush=True)
        if m.status != "survived" or m.by:
            raise SystemExit(f"the unmutated {m.block} does not pass its checks: {m.by}")
    todo = []
    for block in blocks:
        for rel, k, line, what in sample(block, args.max):
            todo.append((Mutant(block, rel, line, what), rel, k))
    print(f"{len(todo)} mutants", flush=True)
    done = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for m in pool.map(lambda t: judge(*t, timeout=args.timeout), todo):
            done.append(m)
            print(f"{m.status:>10} {m.block:<20} {m.file}:{m.line} {m.what}"
                  f"{'  by ' + m.by if m.by else ''} ({m.seconds:.0f} s)", flush=True)
    per_block = {}
    for m in done:
        b = per_block.setdefault(m.block, {"mutants": 0, "killed": 0, "equivalent": 0,
                                           "stillborn": 0, "survivors": []})
        if m.status == "stillborn":
            b["stillborn"] += 1
            continue
        b["mutants"] += 1
        b["killed"] += m.status == "killed"
        b["equivalent"] += m.status == "equivalent"
        if m.status == "survived":
            b["survivors"].append(f"{m.file}:{m.line} {m.what}")
    mutants = sum(b["mutants"] for b in per_block.values())
    killed = sum(b["killed"] for b in per_block.values())
    equivalent = sum(b["equivalent"] for b in per_block.values())
    summary = {"mutants": mutants, "killed": killed, "equivalent": equivalent,
               "kill_rate": round(killed / max(1, mutants - equivalent), 3),
               "blocks": {k: {n: v for n, v in b.items()} for k, b in per_block.items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary,
                                         "mutants": [asdict(m) for m in done]}, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
