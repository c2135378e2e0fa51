"""cocotb 2.x checks of the threshold engine (run by pytest through ``cocotb_tools.runner``).

The one generic bench (:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`) drives the
engine from its description: a source and a sink with random pauses, payloads packed and read
by the contract's layouts, results scored field by field against the golden model.
"""

import cocotb
import numpy as np

from hwprune.contract import ALL_TIES, ThresholdJob
from hwprune.sim.cocotb_tb.block_bench import BlockBench, bench_beats, standard_tests
from hwprune.sim.stimulus import corner_values, random_tiles


@cocotb.test()
async def random_tiles_with_stalls(dut):
    """20,000 random beats (corner values, ties, padding) with random stalls on both streams."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    per_pass = bench_beats(20000) // 4
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


full_throughput_without_stalls, reset_mid_stream = standard_tests(
    __name__, lambda rng, size, bench: ThresholdJob(
        *random_tiles(rng, size, bench.lanes, bench.width), 2, 19))
