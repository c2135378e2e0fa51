"""Engine backends: one interface, several ways to run the same hardware.

``golden``
    the numpy reference model (:mod:`hwprune.golden`); defines the right answer.
``verilator``
    the generated Verilog compiled with a C++ shim into a shared library; a whole tensor per
    call, the host driver's fast path.
``cocotb``
    the same RTL under cocotb 2.x on Verilator, beat by beat from Python; for verification,
    slow.

Every backend returns the same :class:`hwprune.golden.MaskResult` for the same inputs, bit for bit
(the tests check it), so the host driver never needs to know which one it is talking to.
"""

import abc
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import golden
from .hw import PIPELINE_LATENCY, check_params

__all__ = ["BACKENDS", "Backend", "GoldenBackend", "VerilatorBackend", "CocotbBackend",
           "get_backend", "ThresholdJob"]


class ThresholdJob:
    """One pass of the threshold engine: tiles plus the configuration to run them with."""

    __slots__ = ("data", "lane_valid", "threshold", "tie_budget")

    def __init__(self, data, lane_valid, threshold, tie_budget=golden.ALL_TIES):
        self.data, self.lane_valid = data, lane_valid
        self.threshold, self.tie_budget = int(threshold), int(tie_budget)


class Backend(abc.ABC):
    """A way to run the engines for ``lanes`` x ``width``-bit tiles."""

    name = None

    def __init__(self, *, lanes, width):
        check_params(lanes=lanes, width=width)
        self.lanes, self.width = lanes, width

    @abc.abstractmethod
    def threshold_pass(self, job):
        """Run one :class:`ThresholdJob`; return a :class:`hwprune.golden.MaskResult`."""

    def threshold_passes(self, jobs):
        """Run several jobs in order (backends with a start-up cost batch them)."""
        return [self.threshold_pass(job) for job in jobs]

    def __repr__(self):
        return f"{type(self).__name__}(lanes={self.lanes}, width={self.width})"


class GoldenBackend(Backend):
    name = "golden"

    def threshold_pass(self, job):
        return golden.threshold_mask(job.data, job.lane_valid, job.threshold, job.tie_budget,
                                     latency=PIPELINE_LATENCY)


class VerilatorBackend(Backend):
    """The verilated engine as a shared library (built once, cached by content hash).

    ``in_stall`` / ``out_stall`` (probabilities) make the C++ shim insert random stalls, to test
    backpressure through the fast path; the results must not change, only the cycle count.
    """

    name = "verilator"

    def __init__(self, *, lanes, width, in_stall=0.0, out_stall=0.0, stall_seed=1):
        super().__init__(lanes=lanes, width=width)
        from .sim.verilator_lib import ThresholdEngineLib
        self._engine = ThresholdEngineLib(lanes=lanes, width=width)
        self.in_stall, self.out_stall, self.stall_seed = in_stall, out_stall, stall_seed

    def threshold_pass(self, job):
        data, mask, (beats, kept, ties_left), cycles = self._engine.run(
            job.data, job.lane_valid, job.threshold, job.tie_budget, stall_seed=self.stall_seed,
            in_stall=self.in_stall, out_stall=self.out_stall)
        return golden.MaskResult(data=data, mask=mask, beats=beats, kept=kept,
                                 ties_left=ties_left, cycles=cycles)


class CocotbBackend(Backend):
    """The RTL under cocotb on Verilator; one simulator run per batch of passes."""

    name = "cocotb"
    TEST_MODULE = "hwprune.sim.cocotb_tb.threshold_engine_tb"

    def __init__(self, *, lanes, width, in_stall=0.0, out_stall=0.0, stall_seed=1):
        super().__init__(lanes=lanes, width=width)
        from .sim.cocotb_run import cocotb_build
        cocotb_build("threshold_engine", lanes=lanes, width=width)
        self.in_stall, self.out_stall, self.stall_seed = in_stall, out_stall, stall_seed

    def threshold_pass(self, job):
        return self.threshold_passes([job])[0]

    def threshold_passes(self, jobs):
        from .sim.cocotb_run import cocotb_test
        job_dir = Path(tempfile.mkdtemp(prefix="hwprune-cocotb-"))
        try:
            spec = {"passes": len(jobs), "in_stall": self.in_stall, "out_stall": self.out_stall,
                    "seed": self.stall_seed,
                    "config": [{"threshold": j.threshold, "tie_budget": j.tie_budget}
                               for j in jobs]}
            (job_dir / "job.json").write_text(json.dumps(spec))
            for i, j in enumerate(jobs):
                np.savez(job_dir / f"pass{i}_in.npz", tiles=j.data, lane_valid=j.lane_valid)
            tests, failed = cocotb_test("threshold_engine", self.TEST_MODULE,
                                        testcase="backend_pass", test_dir=job_dir,
                                        extra_env={"HWPRUNE_COCOTB_JOB": str(job_dir)},
                                        lanes=self.lanes, width=self.width)
            if tests != 1 or failed:
                raise RuntimeError(f"cocotb backend run failed ({failed} of {tests} failed); "
                                   f"see the simulator log above")
            results = []
            for i in range(len(jobs)):
                out = np.load(job_dir / f"pass{i}_out.npz")
                results.append(golden.MaskResult(
                    data=out["data"], mask=out["mask"], beats=int(out["beats"]),
                    kept=int(out["kept"]), ties_left=int(out["ties_left"]),
                    cycles=int(out["cycles"])))
            return results
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)


BACKENDS = {cls.name: cls for cls in (GoldenBackend, VerilatorBackend, CocotbBackend)}


def get_backend(name, *, lanes, width, **options):
    """Create the backend called ``name`` for ``lanes`` x ``width``-bit tiles."""
    if isinstance(name, Backend):
        return name
    try:
        cls = BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {name!r}") from None
    return cls(lanes=lanes, width=width, **options)
