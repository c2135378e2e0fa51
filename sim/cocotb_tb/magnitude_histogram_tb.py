"""cocotb 2.x test bench of the magnitude histogram / radix select.

A :class:`StreamSource` feeds tiles with random idle cycles; the bench strobes ``select`` and
scores ``found_bin``/``above``/``ties``/``counted`` against the golden model. ``backend_pass``
is how :class:`hwprune.backends.CocotbBackend` runs this block for the host driver.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from hwprune.contract import HistogramJob, HistogramResult
from hwprune.contract.magnitude_histogram import run as golden_histogram
from hwprune.sim.cocotb_tb.streams import StreamSource, no_pauses, random_pauses
from hwprune.sim.cocotb_tb.threshold_engine_tb import pack_tiles
from hwprune.sim.stimulus import corner_values, random_tiles

CLOCK_NS = 10


def unit_shape(dut):
    """(lanes, width), read off the port widths: ``shift`` is range(width), so log2(width) bits."""
    width = 2 ** len(dut.shift)
    return len(dut.i_stream__payload) // (width + 1), width


class HistogramBench:
    def __init__(self, dut, *, in_pause=0.0, seed=0):
        self.dut = dut
        self.lanes, self.width = unit_shape(dut)
        self.in_pause, self.seed = in_pause, seed

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await self.wait_idle()

    async def wait_idle(self):
        await RisingEdge(self.dut.clk)
        await ReadOnly()
        while int(self.dut.busy.value):
            await RisingEdge(self.dut.clk)
            await ReadOnly()

    async def run_pass(self, job):
        """Stream a job, select; return (HistogramResult, cycles)."""
        await RisingEdge(self.dut.clk)
        self.dut.shift.value = job.shift
        self.dut.match_en.value = job.match_en
        self.dut.match_value.value = job.match_value
        self.dut.keep.value = job.keep
        pauses = random_pauses(self.in_pause, self.seed) if self.in_pause else no_pauses()
        source = StreamSource(self.dut, "i_stream", self.dut.clk, pauses)
        source.queue.extend(pack_tiles(job.data, job.lane_valid, self.width))
        # Cycles as the C++ shim counts them: clock edges from the first edge that can take a
        # beat to the edge after which `done` is high.
        await RisingEdge(self.dut.clk)
        start = get_sim_time("ns")
        while not source.idle:          # checked after an edge: `sent` is settled by then
            await RisingEdge(self.dut.clk)
        source.stop()
        self.dut.select.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.select.value = 0
        await ReadOnly()
        while not int(self.dut.done.value):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
        cycles = int(round((get_sim_time("ns") - start) / CLOCK_NS))
        return HistogramResult(found_bin=int(self.dut.found_bin.value),
                               above=int(self.dut.above.value), ties=int(self.dut.ties.value),
                               counted=int(self.dut.counted.value), cycles=cycles)


async def start(dut, **kwargs):
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.i_stream__valid.value = 0
    dut.select.value = 0
    bench = HistogramBench(dut, **kwargs)
    await bench.reset()
    return bench


def score(job, got):
    want = golden_histogram(job)
    assert (got.found_bin, got.above, got.ties, got.counted) == \
        (want.found_bin, want.above, want.ties, want.counted), (got, want)


@cocotb.test()
async def random_passes_with_stalls(dut):
    """Random tiles (corner values, ties, padding), idle cycles on the input, every keep."""
    bench = await start(dut, in_pause=0.3, seed=1)
    rng = np.random.default_rng(11)
    beats = int(os.environ.get("HWPRUNE_TB_BEATS", "5000")) // 4
    for fraction in (0.0, 0.1, 0.9, 1.0):
        tiles, valid = random_tiles(rng, beats, bench.lanes, bench.width)
        keep = int(round(fraction * valid.sum()))
        shift = 8 if bench.width == 16 else 0
        job = HistogramJob(tiles, valid, bench.width, shift, 0, 0, keep)
        score(job, await bench.run_pass(job))
    if bench.width == 16:
        job = HistogramJob(tiles, valid, bench.width, 0, 1, 0, 25)
        score(job, await bench.run_pass(job))


@cocotb.test()
async def corner_values_only(dut):
    """All corner values, -2**(w-1) included: the top bin holds exactly the most negative."""
    bench = await start(dut)
    tiles = np.resize(corner_values(bench.width), (20, bench.lanes)).astype(np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    shift = 8 if bench.width == 16 else 0
    for keep in (0, 1, 7, tiles.size):
        job = HistogramJob(tiles, valid, bench.width, shift, 0, 0, keep)
        score(job, await bench.run_pass(job))


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with counts in the banks clears them (the unit is busy while it does)."""
    bench = await start(dut, in_pause=0.2, seed=3)
    rng = np.random.default_rng(12)
    tiles, valid = random_tiles(rng, 200, bench.lanes, bench.width)
    await RisingEdge(dut.clk)
    source = StreamSource(dut, "i_stream", dut.clk)
    source.queue.extend(pack_tiles(tiles, valid, bench.width))
    while source.sent < 120:
        await RisingEdge(dut.clk)
    source.stop()
    await bench.reset()
    job = HistogramJob(tiles, valid, bench.width, 8 if bench.width == 16 else 0, 0, 0, 333)
    score(job, await bench.run_pass(job))
