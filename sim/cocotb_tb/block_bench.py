"""The one generic cocotb 2.x bench: runs a job on any stream block, driven by its description.

:class:`BlockBench` takes the block's description (:mod:`hwprune.contract`): it sets the
configuration ports, strobes ``clear``, feeds every input stream from the payload integers its
layout packs (each stream's beats ``repeat`` times, random pauses), takes the output stream with
random backpressure, counts results as the description says, runs the ``finish`` / ``done``
handshake, reads the counters and hands the unpacked fields to the block's ``decode``: the same
adapter the Verilator fast path uses, so the two backends differ only in who clocks the RTL.

The ``backend_pass`` test is how :class:`hwprune.backends.CocotbBackend` runs the RTL for the
host driver (not a check): it reads a job folder named by ``HWPRUNE_COCOTB_JOB``.
"""

import dataclasses
import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from hwprune.contract import from_arrays, to_arrays
from hwprune.contract.blocks import block as describe
from hwprune.sim.cocotb_tb.streams import StreamSink, StreamSource, no_pauses, random_pauses

__all__ = ["BlockBench", "bench_params", "bench_beats", "standard_tests"]

CLOCK_NS = 10


def bench_params():
    """(block name, parameters) of the simulation this bench runs in (set by ``cocotb_test``)."""
    return os.environ["HWPRUNE_BLOCK"], json.loads(os.environ["HWPRUNE_BLOCK_PARAMS"])


def bench_beats(default):
    """Beats of a bench's long random test (``HWPRUNE_TB_BEATS`` shortens or lengthens it)."""
    return int(os.environ.get("HWPRUNE_TB_BEATS", str(default)))


def standard_tests(module, make_job, *, size=500, sent=150, score=None):
    """The two checks every stream block's bench has, as cocotb tests of ``module``.

    ``make_job(rng, size, bench)`` makes a random job of the given size (input beats, or what
    measures the block's work).
    ``full_throughput_without_stalls``: with no pauses, the pass takes exactly the golden model's
    cycles. ``reset_mid_stream``: a reset after ``sent`` input beats empties the block, and the
    restarted pass is exact. Use as ``full_throughput_without_stalls, reset_mid_stream =
    standard_tests(__name__, ...)``. With ``score``, ``make_job`` returns ``(job, reference)``
    and ``score(job, result, reference)`` checks each result against the block's own reference
    (one independent of the golden model) as well.
    """
    def job_and_check(rng, bench):
        made = make_job(rng, size, bench)
        if score is None:
            return made, lambda result: None
        job, reference = made
        return job, lambda result: score(job, result, reference)

    async def full_throughput_without_stalls(dut):
        """No pauses: the pass takes the golden model's stall-free cycles."""
        bench = await BlockBench.start(dut)
        job, check = job_and_check(np.random.default_rng(3), bench)
        check(await bench.check_job(job, cycles=True))

    async def reset_mid_stream(dut):
        """A reset with beats in flight empties the block; the restarted pass is exact."""
        bench = await BlockBench.start(dut, in_pause=0.25, out_pause=0.25, seed=4)
        job, check = job_and_check(np.random.default_rng(5), bench)
        await bench.reset_mid_stream(job, sent)
        check(await bench.check_job(job))

    tests = []
    for fn in (full_throughput_without_stalls, reset_mid_stream):
        fn.__module__, fn.__qualname__ = module, fn.__name__
        tests.append(cocotb.test(fn))
    return tests


def _signal(dut, name):
    return getattr(dut, name)


class BlockBench:
    """Drive one stream block: configure, stream a job with pauses, collect, decode."""

    def __init__(self, dut, block=None, params=None, *, in_pause=0.0, out_pause=0.0, seed=0):
        if block is None:
            block, params = bench_params()
        self.dut = dut
        self.desc = describe(block, jobs=True)
        self.params = self.desc.check(**params)
        self.lanes, self.width = self.params["lanes"], self.params["width"]
        #: the build's own parameters (as a backend's overrides): the golden model's too
        self.built = {k: v for k, v in params.items() if k not in ("lanes", "width")}
        self.layouts = self.desc.layouts(**self.params)
        self.in_pause, self.out_pause, self.seed = in_pause, out_pause, seed
        self.sources, self.sink = {}, None

    @classmethod
    async def start(cls, dut, block=None, params=None, **kwargs):
        """Start the clock, idle every input, reset; return the bench."""
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        bench = cls(dut, block, params, **kwargs)
        bench.idle()
        await bench.reset()
        return bench

    def idle(self):
        for s in self.desc.inputs:
            _signal(self.dut, f"{s.name}__valid").value = 0
        if self.desc.output:
            _signal(self.dut, f"{self.desc.output.name}__ready").value = 0
        for strobe in (self.desc.clear, self.desc.finish and self.desc.finish[0]):
            if strobe:
                _signal(self.dut, strobe).value = 0

    async def reset(self, cycles=2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        if self.desc.busy:
            while int(_signal(self.dut, self.desc.busy).value):
                await RisingEdge(self.dut.clk)

    async def configure(self, spec):
        await RisingEdge(self.dut.clk)
        for p in self.desc.config:
            _signal(self.dut, p.name).value = int(spec.config.get(p.name, 0))
        if self.desc.clear:
            _signal(self.dut, self.desc.clear).value = 1
            await RisingEdge(self.dut.clk)
            _signal(self.dut, self.desc.clear).value = 0

    def _pauses(self, p, salt):
        return random_pauses(p, self.seed * 8 + salt) if p else no_pauses()

    def start_streams(self, spec):
        self.sources = {}
        for k, s in enumerate(self.desc.inputs):
            fields, beats, repeat = spec.inputs[s.name]
            ints = self.layouts[s.name].to_ints(fields, beats) if beats else []
            src = StreamSource(self.dut, s.name, self.dut.clk, self._pauses(self.in_pause, k))
            src.queue.extend(ints * int(repeat))
            self.sources[s.name] = src
        out = self.desc.output
        if out:
            self.sink = StreamSink(self.dut, out.name, self.dut.clk,
                                   self._pauses(self.out_pause, 7))

    def stop_streams(self):
        for src in self.sources.values():
            src.stop()
        if self.sink:
            self.sink.stop()

    def _items(self, beats):
        out = self.desc.output
        if not out.items:
            return len(beats)
        lo, f = self.layouts[out.name].offsets[out.items], self.layouts[out.name][out.items]
        return sum(bin((b >> lo) & ((1 << f.count) - 1)).count("1") for b in beats)

    async def run_job(self, job, *, max_cycles=None):
        """Run one job through the RTL; return the block's Result (cycles measured here, as the
        C++ stream-pass loop counts them)."""
        spec = self.desc.encode(job, **self.params)
        await self.configure(spec)
        self.start_streams(spec)
        total = sum(len(s.queue) for s in self.sources.values())
        limit = max_cycles or 64 * (total + spec.items) + 1000
        out = self.desc.output
        if out:
            fields, cycles = await self._drain(spec, limit)
        else:
            fields, cycles = {}, await self._finish(limit)
        counters = {p.name: int(_signal(self.dut, p.name).value) for p in self.desc.counters}
        return self.desc.decode(job, fields, counters, cycles, **self.params)

    async def _drain(self, spec, limit):
        out, waited = self.desc.output, 0
        while self._items(self.sink.received) < spec.items:
            await RisingEdge(self.dut.clk)
            waited += 1
            assert waited <= limit, f"{self.desc.name}: no progress after {waited} cycles"
        await RisingEdge(self.dut.clk)
        firsts = [s.first_offer_cycle for s in self.sources.values()
                  if s.first_offer_cycle is not None]
        self.stop_streams()
        received = list(self.sink.received)
        await RisingEdge(self.dut.clk)
        # Nothing extra may come out once the pass is done.
        assert len(self.sink.received) == len(received), "extra output beats after the pass"
        layout = self.layouts[out.name]
        if not received:
            return {f.name: np.zeros((0, f.count), dtype=f.dtype()) for f in layout.fields}, 0
        return layout.from_ints(received), self.sink.last_take_cycle - min(firsts) + 1

    async def _finish(self, limit):
        # Clock edges from the first edge that can take a beat to the edge after which the
        # finish handshake's `done` is high (the C++ loop's count).
        await RisingEdge(self.dut.clk)
        start = get_sim_time("ns")
        waited = 0
        while not all(s.idle for s in self.sources.values()):
            await RisingEdge(self.dut.clk)
            waited += 1
            assert waited <= limit, f"{self.desc.name}: no progress after {waited} cycles"
        self.stop_streams()
        if self.desc.finish:
            strobe, done = self.desc.finish
            _signal(self.dut, strobe).value = 1
            await RisingEdge(self.dut.clk)
            _signal(self.dut, strobe).value = 0
            await ReadOnly()
            while not int(_signal(self.dut, done).value):
                await RisingEdge(self.dut.clk)
                await ReadOnly()
        return int(round((get_sim_time("ns") - start) / CLOCK_NS))

    async def check_job(self, job, *, cycles=False):
        """Run ``job`` and score every field of its result against the golden model (``cycles``
        too when asked: only stall-free runs have the golden model's figure)."""
        got, want = await self.run_job(job), self.desc.golden(job, **self.built)
        timed = getattr(want, "timed_fields", ("cycles",))
        for f in dataclasses.fields(want):
            if f.name in timed and not cycles:
                continue
            np.testing.assert_array_equal(getattr(got, f.name), getattr(want, f.name),
                                          err_msg=f"{self.desc.name}: {f.name}")
        return got

    async def reset_mid_stream(self, job, sent):
        """Start streaming ``job``, reset after ``sent`` beats of its first input went in; check
        that the output empties."""
        spec = self.desc.encode(job, **self.params)
        await self.configure(spec)
        self.start_streams(spec)
        first = next(iter(self.sources.values()))
        while first.sent < sent:
            await RisingEdge(self.dut.clk)
        self.stop_streams()
        await self.reset()
        if self.desc.output:
            assert int(_signal(self.dut, f"{self.desc.output.name}__valid").value) == 0


@cocotb.test()
async def backend_pass(dut):
    """Run the jobs of a host job folder (how the cocotb backend drives the RTL; not a check)."""
    job_dir = Path(os.environ["HWPRUNE_COCOTB_JOB"])
    spec = json.loads((job_dir / "job.json").read_text())
    bench = await BlockBench.start(dut, spec["block"], spec["params"], in_pause=spec["in_stall"],
                                   out_pause=spec["out_stall"], seed=spec["seed"])
    for i in range(spec["jobs"]):
        job = from_arrays(bench.desc.job, np.load(job_dir / f"job{i}.npz"))
        result = await bench.run_job(job)
        np.savez(job_dir / f"result{i}.npz", **to_arrays(result))
    await RisingEdge(dut.clk)
