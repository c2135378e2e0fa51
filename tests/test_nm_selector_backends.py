"""Golden, verilator and cocotb backends give bit-identical N:M selections."""

import numpy as np
import pytest

from hwprune import get_backend
from hwprune.contract import NMJob
from hwprune.sim.stimulus import random_tiles
from hwprune.sim.verilator_lib import LIBRARIES

FIELDS = ("data", "mask", "values", "index", "beats", "kept")


def make_jobs(rng, lanes, width):
    jobs = []
    for beats, m, n in [(300, 4, 2), (257, 8, 3), (1, 4, 1), (64, 8, 7), (90, 4, 0), (0, 8, 4)]:
        tiles, valid = random_tiles(rng, beats, lanes, width)
        jobs.append(NMJob(tiles, valid, m, n))
    return jobs


def assert_same(want, got, *, cycles=True):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    if cycles:
        assert got.cycles == want.cycles


def test_golden_verilator_cocotb_bit_identical(simulators_agree):
    lanes, width = 16, 8
    jobs = make_jobs(np.random.default_rng(21), lanes, width)
    simulators_agree("nm_selector", jobs, assert_same, lanes=lanes, width=width)


@pytest.mark.parametrize("lanes,width", [(8, 4), (16, 8)])
def test_verilator_with_stalls_and_large_tensor(lanes, width):
    # A whole layer's worth of beats per call, with random stalls on both streams.
    lib = LIBRARIES["nm_selector"](lanes=lanes, width=width)
    golden = get_backend("golden", lanes=lanes, width=width)
    rng = np.random.default_rng(lanes + width)
    for m, n in [(4, 2), (8, 4), (8, 1), (4, 3)]:
        tiles, valid = random_tiles(rng, 10000, lanes, width)
        job = NMJob(tiles, valid, m, n)
        want, = golden.run("nm_selector", [job])
        assert_same(want, lib.run_job(job))
        stalled = lib.run_job(job, stall_seed=m * 10 + n, in_stall=0.3, out_stall=0.3)
        assert_same(want, stalled, cycles=False)
        assert stalled.cycles > want.cycles


def test_bad_pattern_is_rejected_by_every_backend():
    tiles = np.zeros((2, 16), dtype=np.int16)
    job = NMJob(tiles, np.ones_like(tiles, dtype=bool), 4, 5)
    for backend in (get_backend("golden", lanes=16, width=8), LIBRARIES["nm_selector"](
            lanes=16, width=8)):
        run = backend.run_job if hasattr(backend, "run_job") else (
            lambda j: backend.run("nm_selector", [j]))
        with pytest.raises(ValueError, match=r"^n must be an integer from 0 to m=4, not 5$"):
            run(job)
