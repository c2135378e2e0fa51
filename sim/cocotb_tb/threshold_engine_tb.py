"""cocotb 2.x checks of the threshold engine (run by pytest through ``cocotb_tools.runner``).

The one generic bench (:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`) drives the
engine from its description: a source and a sink with random pauses, payloads packed and read
by the contract's layouts, results scored field by field against the golden model.
"""

import os

import cocotb
import numpy as np

from hwprune.contract import ALL_TIES, ThresholdJob
from hwprune.sim.cocotb_tb.block_bench import BlockBench
from hwprune.sim.stimulus import corner_values, random_tiles


def _beats():
    return int(os.environ.get("HWPRUNE_TB_BEATS", "20000"))


@cocotb.test()
async def random_tiles_with_stalls(dut):
    """20,000 random beats (corner values, ties, padding) with random stalls on both streams."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    per_pass = _beats() // 4
    hi = 2 ** (bench.width - 1)
    for threshold, budget in [(int(rng.integers(1, hi)), ALL_TIES), (hi // 4, 37),
                              (1, 0), (0, ALL_TIES)]:
        tiles, valid = random_tiles(rng, per_pass, bench.lanes, bench.width)
        await bench.check_job(ThresholdJob(tiles, valid, threshold, budget))


@cocotb.test()
async def corner_values_and_ties(dut):
    """Zero, +-1, extremes and -2**(w-1), at thresholds that make every one of them a tie."""
    bench = await BlockBench.start(dut, in_pause=0.2, out_pause=0.2, seed=2)
    corners = corner_values(bench.width)
    tiles = np.resize(corners, (32, bench.lanes)).astype(np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    for value in corners:
        for budget in (0, 1, 5, ALL_TIES):
            await bench.check_job(ThresholdJob(tiles, valid, abs(int(value)), budget))


@cocotb.test()
async def full_throughput_without_stalls(dut):
    """One beat per clock: the pass takes beats + pipeline latency cycles (the golden figure)."""
    bench = await BlockBench.start(dut)
    tiles, valid = random_tiles(np.random.default_rng(3), 500, bench.lanes, bench.width)
    await bench.check_job(ThresholdJob(tiles, valid, 3, ALL_TIES), cycles=True)


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with beats in flight empties the pipeline; the restarted pass is exact."""
    bench = await BlockBench.start(dut, in_pause=0.25, out_pause=0.25, seed=4)
    tiles, valid = random_tiles(np.random.default_rng(5), 400, bench.lanes, bench.width)
    job = ThresholdJob(tiles, valid, 2, 19)
    await bench.reset_mid_stream(job, 150)
    await bench.check_job(job)
