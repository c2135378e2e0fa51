"""cocotb 2.x test bench of the channel-norm accumulator (run by pytest through
``cocotb_tools.runner``).

A :class:`~hwprune.sim.cocotb_tb.pass_bench.PassBench` streams channels in and takes one
``{l1, l2}`` beat per channel out, both sides with random pauses; the results are scored against
the one golden model, :data:`hwprune.golden.MODELS` ``["channel_norms"]``.

The ``backend_pass`` test is not a check: it is how :class:`hwprune.backends.CocotbBackend` runs
the RTL for the host driver. It reads a job folder named by ``HWPRUNE_COCOTB_JOB``.
"""

import os

import cocotb
import numpy as np

from hwprune.contract import MODELS, ChannelJob, ChannelResult
from hwprune.contract.channel_norms import PIPELINE_LATENCY, l1_width, l2_width
from hwprune.sim.cocotb_tb.pass_bench import PassBench, field, pack_lanes
from hwprune.sim.stimulus import corner_values, random_tiles

channel_norms = MODELS["channel_norms"]


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


class ChannelNormsBench(PassBench):
    """Stream a job of channels, unpack the norms, score them."""

    def __init__(self, dut, **kwargs):
        super().__init__(dut, **kwargs)
        # Output: (width+24) + (2*width+23) bits; input: lanes*(width+1) + 1 bits.
        self.width = (len(dut.o_stream__payload) - 47) // 3
        self.lanes = (len(dut.i_stream__payload) - 1) // (self.width + 1)

    def pack(self, job):
        words = pack_lanes(job.data, self.width)
        bitmaps = pack_lanes(job.lane_valid.astype(int), 1)
        shift = self.lanes * self.width
        return [w | (b << shift) | (int(last) << (shift + self.lanes))
                for w, b, last in zip(words, bitmaps, job.last)]

    async def run_job(self, job):
        """Stream one :class:`ChannelJob`; return the :class:`ChannelResult` the RTL produced."""
        channels = int(np.count_nonzero(job.last))
        beats, cycles = await self.run_pass(self.pack(job), channels)
        l1_bits, l2_bits = l1_width(self.width), l2_width(self.width)
        l1 = np.array([field(w, 0, l1_bits) for w in beats], dtype=np.int64)
        l2 = np.array([field(w, l1_bits, l2_bits) for w in beats], dtype=np.int64)
        assert int(self.dut.channels.value) == channels
        return ChannelResult(l1=l1, l2=l2, beats=int(self.dut.beats.value), cycles=cycles)

    async def check_job(self, job):
        got, want = await self.run_job(job), channel_norms(job)
        np.testing.assert_array_equal(got.l1, want.l1)
        np.testing.assert_array_equal(got.l2, want.l2)
        assert got.beats == want.beats
        return got


def _beats():
    return int(os.environ.get("HWPRUNE_TB_BEATS", "8000"))


@cocotb.test()
async def random_channels_with_stalls(dut):
    """Random channels of 1-6 and 1-40 beats (corner values, padded tails), random stalls."""
    bench = await ChannelNormsBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    for max_beats in (6, 40):
        job = random_channels(rng, _beats() // 2, bench.lanes, bench.width, max_beats=max_beats)
        await bench.check_job(job)


@cocotb.test()
async def corner_values_and_long_channels(dut):
    """0, +-1, extremes, -2**(w-1): one-beat channels and a 3000-beat channel of -2**(w-1)."""
    bench = await ChannelNormsBench.start(dut, in_pause=0.2, out_pause=0.2, seed=2)
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
    """One beat per clock: the pass takes beats + pipeline latency cycles."""
    bench = await ChannelNormsBench.start(dut)
    job = random_channels(np.random.default_rng(3), 500, bench.lanes, bench.width)
    got = await bench.check_job(job)
    assert got.cycles == len(job.data) + PIPELINE_LATENCY


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with beats in flight empties the pipeline and the sums; the restart is exact."""
    bench = await ChannelNormsBench.start(dut, in_pause=0.25, out_pause=0.25, seed=4)
    job = random_channels(np.random.default_rng(5), 400, bench.lanes, bench.width, max_beats=9)
    await bench.reset_mid_stream(bench.pack(job), 150)
    await bench.check_job(job)
