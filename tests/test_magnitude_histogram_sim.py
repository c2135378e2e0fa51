"""Unit tests of the magnitude histogram / radix select in Amaranth's simulator."""

import gc

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwprune.contract import HistogramJob, select_threshold_passes, threshold_mask
from hwprune.contract.magnitude_histogram import run as golden_histogram
from hwprune.hw import MagnitudeHistogram
from hwprune.sim.stimulus import random_tiles


def run_histogram(lanes, width, passes, *, rng, in_stall=0.0, reset_after=None, banks=None):
    """Run a list of passes ``[(jobs_to_stream..., select_job)]`` on one unit.

    Each pass is a list of HistogramJobs streamed back to back (histograms accumulate), then
    one select with the last job's configuration and keep. Returns one result dict per pass.
    """
    dut = MagnitudeHistogram(lanes=lanes, width=width, banks=banks)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut
    results = []

    def payload(job, b):
        return {"data": [int(v) for v in job.data[b]],
                "lane_valid": int(sum(1 << i for i in range(lanes) if job.lane_valid[b, i]))}

    async def wait_idle(ctx):
        n = 0
        while ctx.get(dut.busy):
            await ctx.tick()
            n += 1
            assert n < 10000
        return n

    async def stream(ctx, job, limit=None):
        ctx.set(dut.shift, job.shift)
        ctx.set(dut.match_en, job.match_en)
        ctx.set(dut.match_value, job.match_value)
        b = 0
        while b < (job.data.shape[0] if limit is None else limit):
            if rng.random() < in_stall:
                ctx.set(dut.i_stream.valid, 0)
                await ctx.tick()
                continue
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, payload(job, b))
            _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
            b += bool(ready)
        ctx.set(dut.i_stream.valid, 0)

    async def bench(ctx):
        await wait_idle(ctx)                    # the clear walk after reset
        if reset_after is not None:
            await stream(ctx, passes[0][0], limit=reset_after)
            ctx.set(sync.rst, 1)
            await ctx.tick()
            ctx.set(sync.rst, 0)
            assert ctx.get(dut.busy)            # clearing the banks again
            await wait_idle(ctx)
        for jobs in passes:
            for job in jobs:
                await stream(ctx, job)
            ctx.set(dut.keep, jobs[-1].keep)
            ctx.set(dut.select, 1)
            await ctx.tick()
            ctx.set(dut.select, 0)
            await ctx.tick()
            await wait_idle(ctx)
            while not ctx.get(dut.done):
                await ctx.tick()
            results.append({k: ctx.get(getattr(dut, k))
                            for k in ("found_bin", "above", "ties", "counted")})

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def golden_pass(jobs):
    """Golden result of streaming ``jobs`` back to back, then selecting."""
    last = jobs[-1]
    data = np.concatenate([j.data for j in jobs])
    valid = np.concatenate([j.lane_valid for j in jobs])
    r = golden_histogram(HistogramJob(data, valid, last.width, last.shift, last.match_en,
                                      last.match_value, last.keep))
    return {"found_bin": r.found_bin, "above": r.above, "ties": r.ties, "counted": r.counted}


@pytest.mark.parametrize("lanes,width,banks", [(4, 4, None), (8, 8, None), (5, 16, None),
                                               (8, 8, 1), (8, 16, 2), (6, 4, 3)])
def test_select_matches_golden_with_stalls(lanes, width, banks):
    rng = np.random.default_rng(lanes + width + (banks or 0))
    passes = []
    for keep_fraction in (0.0, 0.1, 0.5, 1.0):
        tiles, valid = random_tiles(rng, 40, lanes, width)
        keep = int(round(keep_fraction * valid.sum()))
        passes.append([HistogramJob(tiles, valid, width, 8 if width == 16 else 0, 0, 0, keep)])
    # Width 16: a low-byte pass restricted to one high byte.
    if width == 16:
        tiles, valid = random_tiles(rng, 40, lanes, width)
        passes.append([HistogramJob(tiles, valid, width, 0, 1, 0, 17)])
    got = run_histogram(lanes, width, passes, rng=rng, in_stall=0.3, banks=banks)
    assert got == [golden_pass(p) for p in passes]


def test_histograms_accumulate_across_tensors_and_clear_after_select():
    lanes, width = 8, 8
    rng = np.random.default_rng(3)
    jobs = []
    for beats in (10, 33, 7):
        tiles, valid = random_tiles(rng, beats, lanes, width)
        jobs.append(HistogramJob(tiles, valid, width, 0, 0, 0, 100))
    again = HistogramJob(jobs[0].data, jobs[0].lane_valid, width, 0, 0, 0, 30)
    got = run_histogram(lanes, width, [jobs, [again]], rng=rng)
    assert got == [golden_pass(jobs), golden_pass([again])]


@pytest.mark.parametrize("banks", [None, 1])
def test_reset_mid_stream_clears_the_banks(banks):
    lanes, width = 8, 8
    rng = np.random.default_rng(4)
    tiles, valid = random_tiles(rng, 30, lanes, width)
    job = HistogramJob(tiles, valid, width, 0, 0, 0, 50)
    got = run_histogram(lanes, width, [[job]], rng=rng, reset_after=20, banks=banks)
    assert got == [golden_pass([job])]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_banks_must_divide_lanes():
    with pytest.raises(ValueError, match="banks \\(3\\) must divide lanes \\(8\\)"):
        MagnitudeHistogram(lanes=8, width=8, banks=3)
    gc.collect()   # its UnusedElaboratable warning is raised here, under this test's filter


@pytest.mark.parametrize("width", [4, 8, 16])
def test_two_pass_search_keeps_exactly_k(width):
    # The host-side orchestration over the golden model: threshold + ties keep exactly k.
    rng = np.random.default_rng(width)
    tiles, valid = random_tiles(rng, 300, 16, width)
    for keep in (0, 1, 977, int(valid.sum()) - 1, int(valid.sum())):
        threshold, ties, _ = select_threshold_passes(golden_histogram, tiles, valid, width, keep)
        assert threshold < 2 ** width
        assert threshold_mask(tiles, valid, threshold, ties).kept == keep
