"""Golden, verilator and cocotb backends give bit-identical channel norms."""

import numpy as np

from hwprune.contract import MODELS, ChannelJob
from hwprune.contract.channel_norms import PIPELINE_LATENCY
from hwprune.sim.cocotb_tb.channel_norms_tb import random_channels
from hwprune.sim.verilator_lib import LIBRARIES


def make_jobs(rng, lanes, width):
    jobs = [random_channels(rng, beats, lanes, width, max_beats=k)
            for beats, k in [(300, 5), (257, 40), (1, 1), (64, 64)]]
    empty = np.zeros((0, lanes), dtype=np.int16)
    jobs.append(ChannelJob(empty, np.zeros((0, lanes), dtype=bool), np.zeros(0, dtype=bool)))
    return jobs


def assert_same(want, got, *, cycles=True):
    np.testing.assert_array_equal(got.l1, want.l1)
    np.testing.assert_array_equal(got.l2, want.l2)
    assert got.l1.dtype == got.l2.dtype == np.int64
    assert got.beats == want.beats
    if cycles:
        assert got.cycles == want.cycles


def test_golden_verilator_cocotb_bit_identical(simulators_agree):
    lanes, width = 16, 8
    jobs = make_jobs(np.random.default_rng(31), lanes, width)
    simulators_agree("channel_norms", jobs, assert_same, lanes=lanes, width=width)


def test_verilator_with_stalls_changes_only_cycles():
    lanes, width = 16, 8
    lib = LIBRARIES["channel_norms"](lanes=lanes, width=width)
    job = random_channels(np.random.default_rng(32), 30000, lanes, width, max_beats=50)
    want = MODELS["channel_norms"](job)
    assert_same(want, lib.run_job(job))
    stalled = lib.run_job(job, stall_seed=9, in_stall=0.4, out_stall=0.4)
    assert_same(want, stalled, cycles=False)
    assert stalled.cycles > want.cycles


def test_two_to_the_24_most_negative_weights_do_not_overflow():
    # The documented bound, at width 16: one channel of 2**24 weights of -2**15 (2**21 beats).
    lanes, width = 8, 16
    beats = 2**24 // lanes
    tiles = np.full((beats, lanes), -2**15, dtype=np.int16)
    last = np.zeros(beats, dtype=bool)
    last[-1] = True
    job = ChannelJob(tiles, np.ones_like(tiles, dtype=bool), last)
    got = LIBRARIES["channel_norms"](lanes=lanes, width=width).run_job(job)
    assert got.l1.tolist() == [2**24 * 2**15]
    assert got.l2.tolist() == [2**24 * 2**30]
    assert (got.beats, got.cycles) == (beats, beats + PIPELINE_LATENCY)
