"""The UART link on a real line: full-size frames, a host clock 2 % off the board's, 3 Mbit/s
divisors, bit flips, lost bytes, a device reset in mid-pass and a dead line, through the
verilated UART core (``uart-sim``). Every pass must come back bit-exact with golden, every beat
counted once (the tie budget is the witness: a beat applied twice would spend it twice), and
the retries reported; a host that gets no answer gives up with a clear error and the model is
left as it was."""

import numpy as np
import pytest
import torch

import hwprune
from hwprune.hw.boards import BOARDS, board_clock
from hwprune.contract import ThresholdJob, threshold_mask
from hwprune.contract.protocol import MAX_PAYLOAD, beat_bytes
from hwprune.sim.stimulus import random_tiles
from hwprune.uart import DeviceTimeout, UartSimBackend

#: Clocks per bit at 3 Mbit/s: iCEBreaker's 36 MHz exactly; ULX3S's 125 MHz rounds 41.67 to 42.
CPB_3M = {"icebreaker": 12, "ulx3s": 42}


def full_frames_job(rng, lanes, width, frames=3, budget=7):
    """Enough beats for ``frames`` full MAX_PAYLOAD frames, ties at the threshold so that the
    budget runs out inside the pass."""
    beats = frames * (MAX_PAYLOAD // beat_bytes(lanes, width))
    tiles, valid = random_tiles(rng, beats, lanes, width)
    tiles[rng.random(tiles.shape) < 0.2] = 3
    return ThresholdJob(tiles, valid, 3, budget)


def check(backend, job):
    got, = backend.run("threshold_engine", [job])
    want = threshold_mask(job.data, job.lane_valid, job.threshold, job.tie_budget)
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.data, want.data)
    assert (got.kept, got.ties_left, got.beats) == (want.kept, want.ties_left, want.beats)
    return got


@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("skew", [0.02, -0.02])
def test_full_frames_with_the_host_clock_two_percent_off(rng, lanes, skew):
    """Full MAX_PAYLOAD frames, the host's bits 2 % longer or shorter than the board's, at the
    iCEBreaker's 3 Mbit/s divisor: no byte lost (the device counts no overflow), bit-exact."""
    backend = UartSimBackend(lanes=lanes, width=8, clocks_per_bit=CPB_3M["icebreaker"])
    backend.lib.set_skew(skew)
    got = check(backend, full_frames_job(rng, lanes, 8))
    status = backend.link.status()
    assert status["overflows"] == 0 and status["framing_errors"] == 0
    assert backend.stats["retries"] == 0
    assert got.cycles > 0


def test_the_ulx3s_divisor_at_3_mbit(rng):
    backend = UartSimBackend(lanes=16, width=8, clocks_per_bit=CPB_3M["ulx3s"])
    backend.lib.set_skew(0.02)
    check(backend, full_frames_job(rng, 16, 8, frames=2))
    assert backend.stats["retries"] == 0


@pytest.mark.parametrize("faults", [dict(ber=1e-4), dict(drop=2e-4),
                                    dict(ber=1e-4, drop=1e-4)],
                         ids=["ber1e-4", "drops", "both"])
@pytest.mark.parametrize("store", [True, False], ids=["store", "frames"])
def test_line_faults_are_survived_bit_exact(rng, faults, store):
    """Through the weight store (WS_DATA frames, TE_RUN answers) and through TE_DATA frames."""
    backend = UartSimBackend(lanes=8, width=8, clocks_per_bit=8, use_store=store)
    backend.lib.set_faults(**faults, seed=int(rng.integers(1, 2**31)))
    for _ in range(3):
        check(backend, full_frames_job(rng, 8, 8, frames=2, budget=int(rng.integers(0, 40))))
    injected = backend.lib.faults
    assert injected["flips"] + injected["drops"] > 0
    assert backend.stats["retries"] > 0


@pytest.mark.parametrize("store", [True, False], ids=["store", "frames"])
def test_a_device_reset_in_mid_pass_is_survived(rng, store):
    backend = UartSimBackend(lanes=8, width=8, clocks_per_bit=8, use_store=store)
    job = full_frames_job(rng, 8, 8, frames=3, budget=11)
    line = beat_bytes(8, 8) * 10 * 8
    backend.lib.reset_device_after(line * 500)       # inside the second frame
    check(backend, job)
    assert backend.lib.faults["resets"] == 1 and backend.stats["retries"] >= 1
    if store:
        # The reset emptied the store in mid-upload: the host noticed and sent it again.
        assert backend.stats["store_uploads"] == 1 and backend.store_capacity > 0
        check(backend, job)                           # now from the store, not sent again
        assert backend.stats["store_uploads"] == 1 and backend.stats["store_hits"] >= 1


def test_a_dead_line_times_out_with_a_clear_error_and_changes_nothing():
    backend = UartSimBackend(lanes=8, width=8, retries=2)
    backend.lib.set_link(False)
    model = torch.nn.Linear(16, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DeviceTimeout, match=r"no answer from the device.*gave up after 3 "
                                            r"failed attempts"):
        hwprune.prune(model, 0.5, backend=backend, lanes=8, width=8)
    assert not hasattr(model, "weight_mask")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def small_model():
    torch.manual_seed(6)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 10))


@pytest.mark.parametrize("scope,width,hist_banks", [("layer", 8, 0), ("global", 8, 0),
                                                    ("layer", 16, 0), ("global", 16, 1)])
def test_prune_runs_every_pass_on_the_device(scope, width, hist_banks):
    """With the histogram behind the bridge, an unstructured prune through uart-sim runs the
    threshold search and the masking passes in the RTL: no job falls back to the host (with
    one counter bank, as the UP5K builds it, too)."""
    import copy
    model = small_model()
    want = copy.deepcopy(model)
    hwprune.prune(want, 0.7, scope=scope, backend="golden", lanes=8, width=width)
    backend = UartSimBackend(lanes=8, width=width, hist_banks=hist_banks)
    assert "magnitude_histogram" in backend.device_blocks
    # INFO reports the unit's counter banks (one a lane when hist_banks is 0); the host's
    # description of the block takes them.
    banks = hist_banks or 8
    assert backend.device_info()["blocks"]["magnitude_histogram"] == {"banks": banks}
    assert backend.params("magnitude_histogram")[1]["banks"] == banks
    report = hwprune.prune(model, 0.7, scope=scope, backend=backend, lanes=8, width=width)
    assert backend.stats["host_jobs"] == 0 and backend.stats["passes"] > 0
    for a, b in ((model[0], want[0]), (model[2], want[2])):
        assert torch.equal(a.weight_mask, b.weight_mask)
    assert report.cycles > 0


def test_histogram_passes_survive_line_faults(rng):
    from hwprune.contract.magnitude_histogram import run, select_threshold_passes
    backend = UartSimBackend(lanes=8, width=16, clocks_per_bit=8)
    backend.lib.set_faults(ber=1e-4, drop=1e-4, seed=3)
    tiles, valid = random_tiles(rng, 1500, 8, 16)
    for keep in (7, 4000):
        got = select_threshold_passes(lambda job: backend.run("magnitude_histogram", [job])[0],
                                      tiles, valid, 16, keep)
        want = select_threshold_passes(run, tiles, valid, 16, keep)
        assert got[:2] == want[:2]
    assert backend.stats["retries"] > 0 and backend.stats["host_jobs"] == 0
