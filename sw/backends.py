"""Engine backends: one interface, several ways to run the same hardware.

``golden``
    the numpy reference models (:mod:`hwprune.golden`); they define the right answer.
``verilator``
    the generated Verilog compiled with a C++ shim into a shared library; a whole tensor per
    call, the host driver's fast path.
``cocotb``
    the same RTL under cocotb 2.x on Verilator, beat by beat from Python; for verification,
    slow.

A backend runs *jobs* on a *block*: ``backend.run("threshold_engine", [job, ...])`` returns one
result per job. Jobs and results are the dataclasses of the block's golden model, so every
backend returns the same result for the same job, bit for bit (the tests check it), and the host
driver never needs to know which backend it talks to. A new hardware block plugs in by
registering its golden model (:data:`hwprune.golden.MODELS`), its shared-library wrapper
(:data:`hwprune.sim.verilator_lib.LIBRARIES`) and a cocotb bench with a ``backend_pass`` test.
"""

import abc
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import golden
from .hw import check_params

__all__ = ["BACKENDS", "Backend", "GoldenBackend", "VerilatorBackend", "CocotbBackend",
           "get_backend"]


class Backend(abc.ABC):
    """A way to run the hardware blocks, built for ``lanes`` x ``width``-bit tiles."""

    name = None

    def __init__(self, *, lanes, width):
        check_params(lanes=lanes, width=width)
        self.lanes, self.width = lanes, width

    @abc.abstractmethod
    def run(self, block, jobs):
        """Run ``jobs`` (golden-model job dataclasses) on ``block`` in order; return results."""

    def threshold_passes(self, jobs):
        """Run threshold-engine passes (:class:`hwprune.golden.ThresholdJob`)."""
        return self.run("threshold_engine", jobs)

    def __repr__(self):
        return f"{type(self).__name__}(lanes={self.lanes}, width={self.width})"


def _block_model(block):
    try:
        return golden.MODELS[block]
    except KeyError:
        raise ValueError(f"block must be one of {sorted(golden.MODELS)}, not {block!r}") from None


class GoldenBackend(Backend):
    name = "golden"

    def run(self, block, jobs):
        model = _block_model(block)
        return [model(job) for job in jobs]


class VerilatorBackend(Backend):
    """The verilated blocks as shared libraries (built once, cached by content hash).

    ``in_stall`` / ``out_stall`` (probabilities) make the C++ shims insert random stalls, to test
    backpressure through the fast path; the results must not change, only the cycle counts.
    """

    name = "verilator"

    def __init__(self, *, lanes, width, in_stall=0.0, out_stall=0.0, stall_seed=1):
        super().__init__(lanes=lanes, width=width)
        self.in_stall, self.out_stall, self.stall_seed = in_stall, out_stall, stall_seed
        self._libs = {}
        self._library("threshold_engine")  # build now: a build error surfaces before any work

    def _library(self, block):
        from .sim.verilator_lib import LIBRARIES
        if block not in self._libs:
            _block_model(block)
            self._libs[block] = LIBRARIES[block](lanes=self.lanes, width=self.width)
        return self._libs[block]

    def run(self, block, jobs):
        lib = self._library(block)
        return [lib.run_job(job, stall_seed=self.stall_seed, in_stall=self.in_stall,
                            out_stall=self.out_stall) for job in jobs]


class CocotbBackend(Backend):
    """The RTL under cocotb on Verilator; one simulator run per batch of jobs.

    The jobs go to the block's bench (``hwprune.sim.cocotb_tb.<block>_tb``, test
    ``backend_pass``) as ``job<i>.npz`` files in a folder, and the results come back the same way.
    """

    name = "cocotb"

    def __init__(self, *, lanes, width, in_stall=0.0, out_stall=0.0, stall_seed=1):
        super().__init__(lanes=lanes, width=width)
        from .sim.cocotb_run import cocotb_build
        cocotb_build("threshold_engine", lanes=lanes, width=width)
        self.in_stall, self.out_stall, self.stall_seed = in_stall, out_stall, stall_seed

    def run(self, block, jobs):
        from .sim.cocotb_run import cocotb_test
        _block_model(block)
        job_dir = Path(tempfile.mkdtemp(prefix="hwprune-cocotb-"))
        try:
            spec = {"jobs": len(jobs), "in_stall": self.in_stall, "out_stall": self.out_stall,
                    "seed": self.stall_seed}
            (job_dir / "job.json").write_text(json.dumps(spec))
            for i, job in enumerate(jobs):
                np.savez(job_dir / f"job{i}.npz", **golden.to_arrays(job))
            tests, failed = cocotb_test(block, f"hwprune.sim.cocotb_tb.{block}_tb",
                                        testcase="backend_pass", test_dir=job_dir,
                                        extra_env={"HWPRUNE_COCOTB_JOB": str(job_dir)},
                                        lanes=self.lanes, width=self.width)
            if tests != 1 or failed:
                raise RuntimeError(f"cocotb backend run of {block} failed "
                                   f"({failed} of {tests} failed); see the simulator log above")
            result_cls = golden.RESULTS[block]
            return [golden.from_arrays(result_cls, np.load(job_dir / f"result{i}.npz"))
                    for i in range(len(jobs))]
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)


# The UART backends (a real board over pyserial, and its verilated UART core) live in .uart.
from .uart import SerialBackend, UartSimBackend  # noqa: E402  (needs Backend, defined above)

BACKENDS = {cls.name: cls for cls in (GoldenBackend, VerilatorBackend, CocotbBackend,
                                      SerialBackend, UartSimBackend)}


def get_backend(name, *, lanes, width, **options):
    """Create the backend called ``name`` for ``lanes`` x ``width``-bit tiles."""
    if isinstance(name, Backend):
        return name
    try:
        cls = BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {name!r}") from None
    return cls(lanes=lanes, width=width, **options)
