"""cocotb 2.x checks of the N:M selector, on the one generic bench
(:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`)."""

import cocotb
import numpy as np

from hwprune.contract import NMJob
from hwprune.sim.cocotb_tb.block_bench import BlockBench, bench_beats, standard_tests
from hwprune.sim.stimulus import corner_values, random_tiles


PATTERNS = [(4, 2), (8, 4), (4, 1), (8, 7), (4, 3), (8, 1), (8, 2)]


@cocotb.test()
async def random_tiles_with_stalls(dut):
    """Random beats (corner values, ties, padding) for every pattern, random stalls both sides."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    per_pass = max(1, bench_beats(8000) // len(PATTERNS))
    for m, n in PATTERNS:
        tiles, valid = random_tiles(rng, per_pass, bench.lanes, bench.width)
        await bench.check_job(NMJob(tiles, valid, m, n))


@cocotb.test()
async def corner_values_ties_and_padding(dut):
    """0, +-1, extremes and -2**(w-1); groups of all-equal magnitudes; padding lanes; all n."""
    bench = await BlockBench.start(dut, in_pause=0.2, out_pause=0.2, seed=2)
    lanes, corners = bench.lanes, corner_values(bench.width)
    rows = [np.resize(corners, lanes), np.resize(corners[::-1], lanes),
            np.resize(np.repeat(corners, 3), lanes)]
    rows += [np.full(lanes, v) for v in corners]                     # all-ties groups
    rows += [np.resize([v, -v], lanes) for v in corners if v > corners[5]]  # +-v ties
    rows += [np.resize([corners[5], -corners[3]], lanes)]           # -2**(w-1) beats 2**(w-1)-1
    tiles = np.array(rows * 2, dtype=np.int16)
    valid = np.ones_like(tiles, dtype=bool)
    half = len(rows)
    valid[half:] = np.random.default_rng(3).random((half, lanes)) < 0.6  # padding everywhere
    valid[half, :] = False                                            # an all-padding beat
    for m in (4, 8):
        for n in range(m + 1):
            await bench.check_job(NMJob(tiles, valid, m, n))


full_throughput_without_stalls, reset_mid_stream = standard_tests(
    __name__, lambda rng, size, bench: NMJob(
        *random_tiles(rng, size, bench.lanes, bench.width), 8, 3))
