"""cocotb 2.x checks of the channel-norm accumulator, on the one generic bench
(:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`)."""

import cocotb
import numpy as np

from hwprune.contract import ChannelJob
from hwprune.sim.cocotb_tb.block_bench import BlockBench, bench_beats, standard_tests
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


@cocotb.test()
async def random_channels_with_stalls(dut):
    """Random channels of 1-6 and 1-40 beats (corner values, padded tails), random stalls."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    for max_beats in (6, 40):
        job = random_channels(rng, bench_beats(8000) // 2, bench.lanes, bench.width,
                              max_beats=max_beats)
        await bench.check_job(job)


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


full_throughput_without_stalls, reset_mid_stream = standard_tests(
    __name__, lambda rng, size, bench: random_channels(rng, size, bench.lanes, bench.width,
                                                        max_beats=9))
