"""cocotb 2.x checks of the magnitude histogram / radix select, on the one generic bench
(:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`: tiles with random idle cycles, then the
``select`` / ``done`` handshake, registers scored against the golden model)."""

import cocotb
import numpy as np

from hwprune.contract import HistogramJob
from hwprune.sim.cocotb_tb.block_bench import BlockBench, bench_beats
from hwprune.sim.stimulus import corner_values, random_tiles


@cocotb.test()
async def random_passes_with_stalls(dut):
    """Random tiles (corner values, ties, padding), idle cycles on the input, every keep."""
    bench = await BlockBench.start(dut, in_pause=0.3, seed=1)
    rng = np.random.default_rng(11)
    beats = bench_beats(5000) // 4
    shift = 8 if bench.width == 16 else 0
    for fraction in (0.0, 0.1, 0.9, 1.0):
        tiles, valid = random_tiles(rng, beats, bench.lanes, bench.width)
        keep = int(round(fraction * valid.sum()))
        await bench.check_job(HistogramJob(tiles, valid, bench.width, shift, 0, 0, keep))
    if bench.width == 16:
        await bench.check_job(HistogramJob(tiles, valid, bench.width, 0, 1, 0, 25))


@cocotb.test()
async def corner_values_only(dut):
    """All corner values, -2**(w-1) included: the top bin holds exactly the most negative;
    stall-free, the pass takes the golden model's cycles."""
    bench = await BlockBench.start(dut)
    tiles = np.resize(corner_values(bench.width), (20, bench.lanes)).astype(np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    shift = 8 if bench.width == 16 else 0
    for keep in (0, 1, 7, tiles.size):
        await bench.check_job(HistogramJob(tiles, valid, bench.width, shift, 0, 0, keep),
                              cycles=True)


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with counts in the banks clears them (the unit is busy while it does)."""
    bench = await BlockBench.start(dut, in_pause=0.2, seed=3)
    tiles, valid = random_tiles(np.random.default_rng(12), 200, bench.lanes, bench.width)
    job = HistogramJob(tiles, valid, bench.width, 8 if bench.width == 16 else 0, 0, 0, 333)
    await bench.reset_mid_stream(job, 120)
    await bench.check_job(job)
