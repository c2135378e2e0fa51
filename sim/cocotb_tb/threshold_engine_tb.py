"""cocotb 2.x test bench of the threshold engine (run by pytest through ``cocotb_tools.runner``).

Layering: a :class:`StreamSource` drives tiles, a :class:`StreamSink` takes pruned tiles, both with
random pauses; :class:`ThresholdEngineBench` wires them, configures the engine, and scores the
received beats in order against the one golden model, :func:`hwprune.golden.threshold_mask`.

The ``backend_pass`` test is not a check: it is how :class:`hwprune.backends.CocotbBackend` runs
the RTL for the host driver. It reads a job folder named by ``HWPRUNE_COCOTB_JOB``.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hwprune.contract import (ALL_TIES, threshold_mask)
from hwprune.contract.threshold_engine import PIPELINE_LATENCY
from hwprune.sim.cocotb_tb.streams import StreamSink, StreamSource, no_pauses, random_pauses
from hwprune.sim.stimulus import corner_values, random_tiles


def engine_shape(dut):
    """(lanes, width) of the engine, read off its port widths."""
    width = len(dut.threshold)
    lanes = len(dut.o_stream__payload) // (width + 1)
    return lanes, width


def pack_tiles(tiles, lane_valid, width):
    """Input payload integers: lane i at bits i*width, then the lane_valid bitmap."""
    lanes = tiles.shape[1]
    mask = (1 << width) - 1
    beats = []
    for row, valid in zip(tiles.tolist(), lane_valid.tolist()):
        word = 0
        for i, v in enumerate(row):
            word |= (v & mask) << (i * width)
        bitmap = sum(1 << i for i, ok in enumerate(valid) if ok)
        beats.append(word | (bitmap << (lanes * width)))
    return beats


def unpack_beats(beats, lanes, width):
    """Output payload integers -> (data int16 array, mask bool array)."""
    mask_bits = (1 << width) - 1
    sign = 1 << (width - 1)
    data = np.zeros((len(beats), lanes), dtype=np.int16)
    mask = np.zeros((len(beats), lanes), dtype=bool)
    for b, word in enumerate(beats):
        for i in range(lanes):
            v = (word >> (i * width)) & mask_bits
            data[b, i] = (v ^ sign) - sign
        bitmap = word >> (lanes * width)
        mask[b] = [(bitmap >> i) & 1 for i in range(lanes)]
    return data, mask


class ThresholdEngineBench:
    """Drives one engine: configure, stream with pauses, collect, score against the golden model."""

    def __init__(self, dut, *, in_pause=0.0, out_pause=0.0, seed=0):
        self.dut = dut
        self.lanes, self.width = engine_shape(dut)
        self.in_pause, self.out_pause, self.seed = in_pause, out_pause, seed
        self.source = self.sink = None

    async def reset(self, cycles=2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0

    async def configure(self, threshold, tie_budget):
        await RisingEdge(self.dut.clk)
        self.dut.threshold.value = threshold
        self.dut.tie_budget.value = tie_budget
        self.dut.clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.clear.value = 0

    def start(self):
        def pauses(p, salt):
            return random_pauses(p, self.seed * 2 + salt) if p else no_pauses()
        self.source = StreamSource(self.dut, "i_stream", self.dut.clk, pauses(self.in_pause, 0))
        self.sink = StreamSink(self.dut, "o_stream", self.dut.clk, pauses(self.out_pause, 1))

    def stop(self):
        self.source.stop()
        self.sink.stop()

    async def run_pass(self, tiles, lane_valid, threshold, tie_budget, *, max_cycles=None):
        """Stream one pass; return (data, mask, counters dict, cycles)."""
        await self.configure(threshold, tie_budget)
        self.start()
        self.source.queue.extend(pack_tiles(tiles, lane_valid, self.width))
        beats = len(tiles)
        limit = max_cycles or 64 * beats + 1000
        waited = 0
        while len(self.sink.received) < beats:
            await RisingEdge(self.dut.clk)
            waited += 1
            assert waited <= limit, f"no progress: {len(self.sink.received)} of {beats} beats out"
        await RisingEdge(self.dut.clk)
        self.stop()
        await RisingEdge(self.dut.clk)
        # Nothing extra may come out once the pass is done.
        assert len(self.sink.received) == beats
        cycles = self.sink.last_take_cycle - self.source.first_offer_cycle + 1
        data, mask = unpack_beats(self.sink.received, self.lanes, self.width)
        counters = {"beats": int(self.dut.beats.value), "kept": int(self.dut.kept.value),
                    "ties_left": int(self.dut.ties_left.value)}
        return data, mask, counters, cycles

    def score(self, tiles, lane_valid, threshold, tie_budget, result):
        data, mask, counters, _ = result
        want = threshold_mask(tiles, lane_valid, threshold, tie_budget)
        np.testing.assert_array_equal(data, want.data)
        np.testing.assert_array_equal(mask, want.mask)
        assert counters == {"beats": want.beats, "kept": want.kept, "ties_left": want.ties_left}


async def start(dut, **kwargs):
    Clock(dut.clk, 10, unit="ns").start()
    bench = ThresholdEngineBench(dut, **kwargs)
    dut.clear.value = 0
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    await bench.reset()
    return bench


def _beats():
    return int(os.environ.get("HWPRUNE_TB_BEATS", "20000"))


@cocotb.test()
async def random_tiles_with_stalls(dut):
    """20,000 random beats (corner values, ties, padding) with random stalls on both streams."""
    bench = await start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    total = _beats()
    per_pass = total // 4
    hi = 2 ** (bench.width - 1)
    for threshold, budget in [(int(rng.integers(1, hi)), ALL_TIES), (hi // 4, 37),
                              (1, 0), (0, ALL_TIES)]:
        tiles, valid = random_tiles(rng, per_pass, bench.lanes, bench.width)
        result = await bench.run_pass(tiles, valid, threshold, budget)
        bench.score(tiles, valid, threshold, budget, result)


@cocotb.test()
async def corner_values_and_ties(dut):
    """Zero, +-1, extremes and -2**(w-1), at thresholds that make every one of them a tie."""
    bench = await start(dut, in_pause=0.2, out_pause=0.2, seed=2)
    corners = corner_values(bench.width)
    tiles = np.resize(corners, (32, bench.lanes)).astype(np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    for value in corners:
        threshold = abs(int(value))
        for budget in (0, 1, 5, ALL_TIES):
            result = await bench.run_pass(tiles, valid, threshold, budget)
            bench.score(tiles, valid, threshold, budget, result)


@cocotb.test()
async def full_throughput_without_stalls(dut):
    """One beat per clock: the pass takes beats + pipeline latency cycles."""
    bench = await start(dut)
    rng = np.random.default_rng(3)
    tiles, valid = random_tiles(rng, 500, bench.lanes, bench.width)
    result = await bench.run_pass(tiles, valid, 3, ALL_TIES)
    bench.score(tiles, valid, 3, ALL_TIES, result)
    assert result[3] == len(tiles) + PIPELINE_LATENCY


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with beats in flight empties the pipeline; the restarted pass is exact."""
    bench = await start(dut, in_pause=0.25, out_pause=0.25, seed=4)
    rng = np.random.default_rng(5)
    tiles, valid = random_tiles(rng, 400, bench.lanes, bench.width)
    threshold, budget = 2, 19
    await bench.configure(threshold, budget)
    bench.start()
    bench.source.queue.extend(pack_tiles(tiles, valid, bench.width))
    while bench.source.sent < 150:
        await RisingEdge(dut.clk)
    bench.stop()
    await bench.reset()
    assert int(dut.o_stream__valid.value) == 0
    result = await bench.run_pass(tiles, valid, threshold, budget)
    bench.score(tiles, valid, threshold, budget, result)
