"""Engine backends: one interface, several ways to run the same hardware.

``golden``
    the numpy reference models (:mod:`hwprune.contract`); they define the right answer.
``verilator``
    the generated Verilog compiled with the one C++ stream-pass template into a shared library;
    a whole tensor per call, the host driver's fast path.
``torch``
    every block's semantics as vectorised tensor operations (CPU or CUDA,
    :mod:`hwprune.torch_backend`), bit-identical to the RTL; the fast path for large models.
``cocotb``
    the same RTL under cocotb 2.x on Verilator, beat by beat from Python; for verification,
    slow.
``uart-sim`` / ``serial`` (:mod:`hwprune.uart`)
    the board's UART command bridge, verilated or on a real board.

A backend runs *jobs* on a *block*: ``backend.run("threshold_engine", [job, ...])`` returns one
result per job. Jobs and results are the dataclasses of the block's golden model, so every
backend returns the same result for the same job, bit for bit (the tests check it), and the host
driver never needs to know which backend it talks to. Every block a backend can run comes from
the list of block descriptions (:data:`hwprune.contract.blocks.BLOCKS`): the backend checks the
block's parameter domain (the same check as the RTL's and the golden model's) before it runs or
builds anything.
"""

import contextlib
import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import contract
from .backend_api import Backend
from .torch_backend import TorchBackend
from .uart import SerialBackend, UartSimBackend

__all__ = ["BACKENDS", "Backend", "GoldenBackend", "VerilatorBackend", "CocotbBackend",
           "TorchBackend", "get_backend"]


class GoldenBackend(Backend):
    name = "golden"

    def run(self, block, jobs):
        desc, _ = self.params(block)
        built = self.overrides.get(desc.name)       # the golden model checks a build's depths
        return [desc.golden(job, **built) if built else desc.golden(job) for job in jobs]


class VerilatorBackend(Backend):
    """The verilated blocks as shared libraries (built once, cached by content hash).

    ``workers`` (default: the number of cores) verilated instances run in parallel threads:
    :meth:`map` spreads tensors over them (largest first) and :meth:`run` spreads a batch of
    jobs; the ctypes calls release the GIL while the C++ loop runs. Each worker has its own
    model instance of the same loaded library, so the results do not depend on ``workers``.

    ``in_stall`` / ``out_stall`` (probabilities) make the C++ stream-pass loop insert random
    stalls, to test backpressure through the fast path; the results must not change, only the
    cycle counts.
    """

    name = "verilator"

    def __init__(self, *, lanes, width, in_stall=0.0, out_stall=0.0, stall_seed=1, workers=None):
        super().__init__(lanes=lanes, width=width)
        self.in_stall, self.out_stall, self.stall_seed = in_stall, out_stall, stall_seed
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer (verilated instances run in "
                             f"parallel), not {workers!r}")
        self.workers = workers
        self._libs = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def prepare(self, *blocks):
        for block in blocks:
            self._library(block)

    def __getstate__(self):
        # Sent to a cluster worker: the settings travel, the loaded libraries do not.
        state = dict(vars(self))
        for name in ("_libs", "_lock", "_local"):
            state.pop(name)
        return state

    def __setstate__(self, state):
        vars(self).update(state)
        self._libs, self._lock, self._local = {}, threading.Lock(), threading.local()

    def _library(self, block):
        """This thread's instance of ``block`` (the first from the build, the others twins of
        it: the same loaded library, a model instance each)."""
        desc, params = self.params(block)
        key = (desc.name, tuple(sorted(params.items())))
        mine = getattr(self._local, "libs", None)
        if mine is None:
            mine = self._local.libs = {}
        if key not in mine:
            with self._lock:
                if key not in self._libs:
                    from .sim.verilator_lib import library
                    self._libs[key] = library(desc.name, **params)
                    mine[key] = self._libs[key]
                else:
                    mine[key] = self._libs[key].twin()
        return mine[key]

    def _run_one(self, block, job):
        return self._library(block).run_job(job, stall_seed=self.stall_seed,
                                            in_stall=self.in_stall, out_stall=self.out_stall,
                                            memo=getattr(self._local, "memo", None))

    @contextlib.contextmanager
    def same_inputs(self):
        # Per thread: each worker keeps the packed words of the tensor it is on.
        self._local.memo = {}
        try:
            yield
        finally:
            self._local.memo = None

    def run(self, block, jobs):
        self.params(block)
        if len(jobs) > 1 and self.workers > 1 and not getattr(self._local, "worker", False):
            return list(self.map(lambda job: self._run_one(block, job), jobs,
                                 cost=lambda job: _job_size(job)))
        return [self._run_one(block, job) for job in jobs]

    def map(self, fn, items, *, cost=None):
        items = list(items)
        if self.workers == 1 or len(items) <= 1:
            yield from (fn(item) for item in items)
            return

        def work(item):
            self._local.worker = True
            return fn(item)
        order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else \
            range(len(items))
        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(items)),
                                  thread_name_prefix="hwprune-verilator")
        try:
            futures = {i: pool.submit(work, items[i]) for i in order}
            for i in range(len(items)):
                yield futures[i].result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _job_size(job):
    data = getattr(job, "data", getattr(job, "value", None))
    return 0 if data is None else np.asarray(data).size


class CocotbBackend(Backend):
    """The RTL under cocotb on Verilator; one simulator run per batch of jobs.

    The jobs go to the one generic bench (:mod:`hwprune.sim.cocotb_tb.block_bench`, test
    ``backend_pass``, driven by the block's description) as ``job<i>.npz`` files in a folder,
    and the results come back the same way.
    """

    name = "cocotb"

    def __init__(self, *, lanes, width, in_stall=0.0, out_stall=0.0, stall_seed=1):
        super().__init__(lanes=lanes, width=width)
        self.in_stall, self.out_stall, self.stall_seed = in_stall, out_stall, stall_seed

    def prepare(self, *blocks):
        from .sim.cocotb_run import cocotb_build
        for block in blocks:
            desc, params = self.params(block)
            cocotb_build(desc.name, **params)

    def run(self, block, jobs):
        from .sim.cocotb_run import cocotb_test
        desc, params = self.params(block)
        job_dir = Path(tempfile.mkdtemp(prefix="hwprune-cocotb-"))
        try:
            spec = {"block": desc.name, "params": params, "jobs": len(jobs),
                    "in_stall": self.in_stall, "out_stall": self.out_stall,
                    "seed": self.stall_seed}
            (job_dir / "job.json").write_text(json.dumps(spec))
            for i, job in enumerate(jobs):
                np.savez(job_dir / f"job{i}.npz", **contract.to_arrays(job))
            tests, failed = cocotb_test(desc.name, "hwprune.sim.cocotb_tb.block_bench",
                                        testcase="backend_pass", test_dir=job_dir,
                                        extra_env={"HWPRUNE_COCOTB_JOB": str(job_dir)},
                                        **params)
            if tests != 1 or failed:
                raise RuntimeError(f"cocotb backend run of {desc.name} failed "
                                   f"({failed} of {tests} failed); see the simulator log above")
            return [contract.from_arrays(desc.result, np.load(job_dir / f"result{i}.npz"))
                    for i in range(len(jobs))]
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)


BACKENDS = {cls.name: cls for cls in (GoldenBackend, VerilatorBackend, TorchBackend,
                                      CocotbBackend, SerialBackend, UartSimBackend)}


def get_backend(name, *, lanes, width, **options):
    """Create the backend called ``name`` for ``lanes`` x ``width``-bit tiles."""
    if isinstance(name, Backend):
        return name
    try:
        cls = BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {name!r}") from None
    valid = backend_options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"backend {name!r} got an unknown option {unknown[0]!r}; "
                        f"its options are {valid}")
    return cls(lanes=lanes, width=width, **options)


def backend_options(cls):
    """The keyword options a backend class takes besides ``lanes`` and ``width``: its own, and
    those its ``**options`` passes on to the base class (the base's options with a default;
    one without, such as the UART backends' ``transport``, the class supplies itself)."""
    import inspect
    names, forwards = [], False
    for p, v in inspect.signature(cls.__init__).parameters.items():
        if v.kind == v.VAR_KEYWORD:
            forwards = True
        elif p not in ("self", "lanes", "width") and v.kind != v.VAR_POSITIONAL:
            names.append(p)
    if forwards:
        base = next(b for b in cls.__mro__[1:] if "__init__" in vars(b))
        params = inspect.signature(base.__init__).parameters
        names += [p for p in backend_options(base)
                  if p not in names and (p not in params
                                        or params[p].default is not inspect.Parameter.empty)]
    return names
