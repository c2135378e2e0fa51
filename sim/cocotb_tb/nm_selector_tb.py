"""cocotb 2.x test bench of the N:M selector (run by pytest through ``cocotb_tools.runner``).

A :class:`~hwprune.sim.cocotb_tb.pass_bench.PassBench` streams tiles in and takes selected tiles
out, both sides with random pauses; every received beat is scored in order against the one golden
model, :data:`hwprune.golden.MODELS` ``["nm_selector"]``.

The ``backend_pass`` test is not a check: it is how :class:`hwprune.backends.CocotbBackend` runs
the RTL for the host driver. It reads a job folder named by ``HWPRUNE_COCOTB_JOB``.
"""

import os

import cocotb
import numpy as np

from hwprune.contract import MODELS, NMJob, NMResult
from hwprune.contract.nm_selector import check_job
from hwprune.contract.nm_selector import INDEX_BITS, PIPELINE_LATENCY
from hwprune.sim.cocotb_tb.pass_bench import PassBench, field, pack_lanes, signed_field
from hwprune.sim.stimulus import corner_values, random_tiles

nm_select = MODELS["nm_selector"]


class NMSelectorBench(PassBench):
    """Configure the pattern, stream a job, unpack and score the selected tiles."""

    def __init__(self, dut, **kwargs):
        super().__init__(dut, **kwargs)
        # Input payload: lanes*(width+1) bits; output: lanes*(2*width+4) bits.
        in_bits, out_bits = len(dut.i_stream__payload), len(dut.o_stream__payload)
        self.lanes = (out_bits - 2 * in_bits) // 2
        self.width = in_bits // self.lanes - 1

    def pack(self, job):
        words = pack_lanes(job.data, self.width)
        bitmaps = pack_lanes(job.lane_valid.astype(int), 1)
        shift = self.lanes * self.width
        return [w | (b << shift) for w, b in zip(words, bitmaps)]

    def unpack(self, beats):
        lanes, width = self.lanes, self.width
        mask_lo = lanes * width
        values_lo = mask_lo + lanes
        index_lo = values_lo + lanes * width
        out = {k: np.zeros((len(beats), lanes), dtype=t) for k, t in
               [("data", np.int16), ("mask", bool), ("values", np.int16), ("index", np.uint8)]}
        for b, word in enumerate(beats):
            for i in range(lanes):
                out["data"][b, i] = signed_field(word, i * width, width)
                out["mask"][b, i] = field(word, mask_lo + i, 1)
                out["values"][b, i] = signed_field(word, values_lo + i * width, width)
                out["index"][b, i] = field(word, index_lo + i * INDEX_BITS, INDEX_BITS)
        return out

    async def run_job(self, job):
        """Stream one :class:`NMJob`; return the :class:`NMResult` the RTL produced."""
        check_job(job)
        self.dut.m8.value = int(job.m == 8)
        self.dut.n.value = int(job.n)
        beats, cycles = await self.run_pass(self.pack(job), len(job.data))
        return NMResult(**self.unpack(beats), beats=int(self.dut.beats.value),
                        kept=int(self.dut.kept.value), cycles=cycles)

    async def check_job(self, job):
        got, want = await self.run_job(job), nm_select(job)
        for name in ("data", "mask", "values", "index"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert (got.beats, got.kept) == (want.beats, want.kept)
        return got


def _beats():
    return int(os.environ.get("HWPRUNE_TB_BEATS", "8000"))


PATTERNS = [(4, 2), (8, 4), (4, 1), (8, 7), (4, 3), (8, 1), (8, 2)]


@cocotb.test()
async def random_tiles_with_stalls(dut):
    """Random beats (corner values, ties, padding) for every pattern, random stalls both sides."""
    bench = await NMSelectorBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(7)
    per_pass = max(1, _beats() // len(PATTERNS))
    for m, n in PATTERNS:
        tiles, valid = random_tiles(rng, per_pass, bench.lanes, bench.width)
        await bench.check_job(NMJob(tiles, valid, m, n))


@cocotb.test()
async def corner_values_ties_and_padding(dut):
    """0, +-1, extremes and -2**(w-1); groups of all-equal magnitudes; padding lanes; all n."""
    bench = await NMSelectorBench.start(dut, in_pause=0.2, out_pause=0.2, seed=2)
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


@cocotb.test()
async def full_throughput_without_stalls(dut):
    """One beat per clock: the pass takes beats + pipeline latency cycles."""
    bench = await NMSelectorBench.start(dut)
    tiles, valid = random_tiles(np.random.default_rng(3), 500, bench.lanes, bench.width)
    got = await bench.check_job(NMJob(tiles, valid, 4, 2))
    assert got.cycles == len(tiles) + PIPELINE_LATENCY


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with beats in flight empties the pipeline; the restarted pass is exact."""
    bench = await NMSelectorBench.start(dut, in_pause=0.25, out_pause=0.25, seed=4)
    tiles, valid = random_tiles(np.random.default_rng(5), 400, bench.lanes, bench.width)
    job = NMJob(tiles, valid, 8, 3)
    dut.m8.value, dut.n.value = 1, 3
    await bench.reset_mid_stream(bench.pack(job), 150)
    await bench.check_job(job)
