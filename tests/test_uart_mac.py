"""The sparse MAC behind the UART bridge through ``uart-sim``: weights loaded once, activation
vectors and results over the simulated line, bit-identical with the golden model; jobs larger
than the device's weight memory or a frame's slot split into whole rows; bit flips, lost bytes
and device resets survived; ``hwprune.run`` with its layers on the bridge's unit."""

import numpy as np
import pytest
import torch

from hwprune.accelerate import reference, run
from hwprune.compress import compress, nm_mask
from hwprune.contract import sparse_mac as sm
from hwprune.sim.stimulus import corner_values, random_acts, random_layer
from hwprune.uart import BlockNotOnDevice, DeviceTimeout, UartSimBackend

LANES, WIDTH = 4, 8
PARAMS, MAX_BEATS = sm.bridge_mac(LANES, WIDTH)


def _backend(**options):
    return UartSimBackend(lanes=LANES, width=WIDTH, blocks=("sparse_mac",), **options)


def _job(rng, rows, k, *, fmt="unstructured", density=0.3, vectors=5):
    w = random_layer(rng, rows, k, WIDTH, density)
    if fmt != "unstructured":
        n, m = map(int, fmt.split(":"))
        w = w * nm_mask(w, n, m)
    return sm.make_job(compress(w, LANES, fmt), random_acts(rng, vectors, k, WIDTH))


def _check(backend, job):
    got = backend.run("sparse_mac", [job])[0]
    np.testing.assert_array_equal(got.out, sm.run(job).out)
    return got


@pytest.fixture(scope="module")
def backend():
    return _backend()


@pytest.mark.parametrize("fmt", ["unstructured", "2:4", "1:8"])
def test_uart_sim_is_bit_identical_with_golden(backend, rng, fmt):
    for rows, k, vectors in ((2, 4, 1), (7, 37, 6), (33, 200, 9)):
        job = _job(rng, rows, k, fmt=fmt, density=0.35, vectors=vectors)
        got = _check(backend, job)
        # the device counts the unit's own clocks: at most one weight beat a clock
        assert got.cycles >= len(job.value) * vectors
    assert backend.stats["host_jobs"] == 0 and backend.stats["retries"] == 0


def test_corner_values_and_zero_rows(backend, rng):
    """-128 weights times -128 activations on every slot, rows of zeros only (padding slots),
    and an activation vector of zeros."""
    lo = -2 ** (WIDTH - 1)
    assert lo in corner_values(WIDTH)
    w = np.full((6, 40), lo)
    w[2] = 0
    w[4, ::3] = 0
    acts = np.full((3, 40), lo)
    acts[1] = 0
    job = sm.make_job(compress(w, LANES), acts)
    got = _check(backend, job)
    assert got.out[0, 0] == 40 * lo * lo and not got.out[1].any()


def test_a_job_larger_than_the_device_runs_in_row_groups(backend, rng):
    """More weight beats than the device's memory holds, and more results a vector than a
    frame's slot holds: the host splits the rows, the results are exact."""
    job = _job(rng, 1100, 64, density=0.25, vectors=3)
    assert len(job.value) > MAX_BEATS
    assert int(job.end.sum()) * sm.RESULT_BYTES > backend.max_payload
    _check(backend, job)


@pytest.mark.parametrize("fmt", ["unstructured", "2:4"])
def test_rows_longer_than_the_device_unit_run_in_column_slices(backend, rng, fmt):
    """Rows of more inputs than the bridge unit's max_k: the host runs column slices of at most
    max_k (one of them split into row groups as well), adds their results, exact; a row
    longer than the backend's own limit is refused before anything is sent."""
    max_k = PARAMS["max_k"]
    k = 2 * max_k + 3 * LANES
    job = _job(rng, 6, k, fmt=fmt, density=0.4, vectors=3)
    # an extreme-valued row: the slices' partial sums must add, not saturate
    lo = -2 ** (WIDTH - 1)
    dense = sm.decode_stream(job.value, job.index, job.count, job.end, fmt=job.fmt,
                             n=job.nm_n, m=job.nm_m, k=k)
    dense[0] = 0
    dense[0, ::job.nm_m or 1] = lo
    acts = np.array(job.acts)
    acts[0] = lo
    job = sm.make_job(compress(dense, LANES, fmt), acts)
    sent = backend.link.line_sent
    got = _check(backend, job)
    assert got.out[0, 0] == (k // (job.nm_m or 1)) * lo * lo
    assert got.cycles >= len(job.value) * 3
    # every weight went over the line: each slice's program was loaded
    assert backend.link.line_sent - sent > len(job.value) * sm.program_beat_bytes(LANES, WIDTH)
    # one slice's weights exceed the device's memory: row groups inside the slice
    wide = _job(rng, 40, max_k + 8 * LANES, density=0.9, vectors=2)
    assert len(backend._mac_slices(wide, max_k)[0][0].value) > MAX_BEATS
    _check(backend, wide)
    with pytest.raises(ValueError, match=f"at most {backend.longest_row()}"):
        backend.run("sparse_mac", [_job(rng, 2, backend.longest_row() + LANES)])


def test_the_weights_are_sent_once(rng):
    backend = _backend()
    job = _job(rng, 40, 128, vectors=4)
    _check(backend, job)
    first = backend.link.line_sent
    assert first > len(job.value) * sm.program_beat_bytes(LANES, WIDTH)
    again = sm.SparseMacJob(**{**job.__dict__, "acts": job.acts[:2]})
    _check(backend, again)
    # the second run sends two vector slots and a few commands: the weights stayed on chip
    assert backend.link.line_sent - first < 2 * sm.run_slot(again) * 4 + 200


@pytest.mark.parametrize("faults", [dict(ber=1e-4), dict(drop=2e-4)], ids=["ber1e-4", "drops"])
def test_line_faults_are_survived_bit_exact(rng, faults):
    backend = _backend()
    backend.lib.set_faults(**faults, seed=int(rng.integers(1, 2 ** 31)))
    for _ in range(2):
        _check(backend, _job(rng, 60, 128, vectors=30))
    assert backend.lib.faults["flips"] + backend.lib.faults["drops"] > 0
    assert backend.stats["retries"] > 0


def test_a_device_reset_is_survived(rng):
    """A reset while the weights load, and one while vectors run: the host notices (SM_STATUS),
    loads the weights again and the results are exact."""
    backend = _backend()
    job = _job(rng, 120, 128, vectors=40)
    byte = 4 * 10                                     # clocks a byte takes on the line
    backend.lib.reset_device_after(1500 * byte)       # inside the weights' load
    _check(backend, job)
    assert backend.lib.faults["resets"] == 1 and backend.stats["retries"] >= 1
    sent = backend.link.line_sent
    backend.lib.reset_device_after(300 * byte)        # inside the first SM_RUN frame
    _check(backend, job)
    assert backend.lib.faults["resets"] == 2
    assert backend.link.line_sent - sent > len(job.value) * sm.program_beat_bytes(LANES, WIDTH)


def test_a_dead_line_times_out_with_a_clear_error(rng):
    backend = _backend(retries=1)
    backend.lib.set_link(False)
    with pytest.raises(DeviceTimeout, match="gave up after 2 failed attempts"):
        backend.run("sparse_mac", [_job(rng, 3, 8)])


def test_a_bitstream_without_the_mac_names_it(rng):
    backend = UartSimBackend(lanes=LANES, width=WIDTH, blocks=("threshold_engine",))
    with pytest.raises(BlockNotOnDevice, match="not sparse_mac"):
        backend.run("sparse_mac", [_job(rng, 3, 8)])


def test_hwprune_run_on_the_bridge_equals_the_reference(backend):
    """A pruned model's layers on the bridge's unit: the outputs equal the fake-quantized
    reference bit for bit, a layer with rows beyond the bridge unit's max_k among them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 12 * 12, 20), torch.nn.ReLU(), torch.nn.Linear(20, 10))
    with torch.no_grad():
        for layer in (model[0], model[3], model[5]):
            layer.weight[torch.rand_like(layer.weight) < 0.7] = 0
    x = torch.randn(2, 3, 12, 12)
    report = run(model, x, backend=backend, lanes=LANES, width=WIDTH, clock_mhz=60)
    assert torch.equal(report.output, reference(model, x, lanes=LANES, width=WIDTH))
    on_unit = {layer.name: layer.on_unit for layer in report.layers}
    assert 8 * 12 * 12 > PARAMS["max_k"]
    assert on_unit == {"0": True, "3": True, "5": True}
    assert all(layer.cycles > 0 for layer in report.unit_layers)
    assert backend.stats["host_jobs"] == 0


def test_a_frame_of_part_of_a_vector_slot_is_answered_with_zeros_and_runs_nothing(rng):
    """An SM_RUN frame that ends inside a vector slot, or a configuration whose activations do
    not fit the slot, would leave the unit waiting for a vector that never completes: the
    device answers zeros, runs nothing, and the next job is exact."""
    from hwprune.contract.protocol import Cmd
    backend = _backend()
    job = _job(rng, 9, 64, vectors=2)
    _check(backend, job)
    frame = sm.run_frame(job)
    before = backend._mac_status()
    backend.link.configure_block(Cmd.SM_CONFIG, sm.sm_config(job, lanes=LANES))
    raw, status = backend.link.data(frame.tobytes()[:frame.shape[1] + 4], Cmd.SM_RUN)
    assert status == 0 and not any(raw)
    bad = bytearray(sm.sm_config(job, lanes=LANES))
    bad[4:6] = (1).to_bytes(2, "little")              # a slot of one value: no room
    backend.link.configure_block(Cmd.SM_CONFIG, bytes(bad))
    raw, status = backend.link.data(frame.tobytes()[:4], Cmd.SM_RUN)
    assert status == 0 and not any(raw)
    assert backend._mac_status()["vectors"] == before["vectors"]
    _check(backend, job)
