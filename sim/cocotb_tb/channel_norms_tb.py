"""cocotb 2.x checks of the channel-norm accumulator, on the one generic bench
(:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`)."""

import os

import cocotb
import numpy as np

from hwprune.contract import ChannelJob
from hwprune.sim.cocotb_tb.block_bench import BlockBench
from hwprune.sim.stimulus import corner_values, random_tiles


def random_channels(rng, beats, lanes, width, *, max_beats=6):
    """A ChannelJob of random channels of 1 to ``max_beats`` beats, tails padded at random."""
    tiles, valid = random_tiles(rng, beats, lanes, width, pad_fraction=0.0)
    last = np.zeros(beats, dtype=bool)
    b = -1
    while b < beats - 1:
        b = min(beats - 1, b + int(rng.integers(1, max_beats + 1)))
        last[b] = True
        if rng.random() < 0.5:
            valid[b, rng.integers(1, lanes + 1):] = False
    return ChannelJob(tiles, valid, last)


def _beats():
    return int(os.environ.get("HWPRUNE_TB_BEATS", "8000"))


@cocotb.test()
async def random_channels_with_stalls(dut):
    """Random channels of 1-6 and 1-40 beats (corner values, padded tails), random stalls."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    for max_beats in (6, 40):
        await bench.check_job(random_channels(rng, _beats() // 2, bench.lanes, bench.width,
                                              max_beats=max_beats))


@cocotb.test()
async def corner_values_and_long_channels(dut):
    """0, +-1, extremes, -2**(w-1): one-beat channels and a 3000-beat channel of -2**(w-1)."""
    bench = await BlockBench.start(dut, in_pause=0.2, out_pause=0.2, seed=2)
    lanes, corners = bench.lanes, corner_values(bench.width)
    tiles = np.array([np.full(lanes, v) for v in corners] + [np.resize(corners, lanes)],
                     dtype=np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    valid[-1, 1:] = False
    await bench.check_job(ChannelJob(tiles, valid, np.ones(len(tiles), dtype=bool)))
    extreme = np.full((3000, lanes), corners[5], dtype=np.int16)   # -2**(w-1)
    last = np.zeros(3000, dtype=bool)
    last[[999, 2999]] = True
    await bench.check_job(ChannelJob(extreme, np.ones_like(extreme, dtype=bool), last))


@cocotb.test()
async def full_throughput_without_stalls(dut):
    """One beat per clock: the pass takes beats + pipeline latency cycles (the golden figure)."""
    bench = await BlockBench.start(dut)
    job = random_channels(np.random.default_rng(3), 500, bench.lanes, bench.width)
    await bench.check_job(job, cycles=True)


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with beats in flight empties the pipeline and the sums; the restart is exact."""
    bench = await BlockBench.start(dut, in_pause=0.25, out_pause=0.25, seed=4)
    job = random_channels(np.random.default_rng(5), 400, bench.lanes, bench.width, max_beats=9)
    await bench.reset_mid_stream(job, 150)
    await bench.check_job(job)
