"""The network engine behind the UART bridge (the deploy bitstream) through ``uart-sim``: the
program loaded once, inputs and logits over the simulated line, bit-identical with the golden
model and the verilated engine (counters too), through bit flips, lost bytes and device
resets; a deployed model on uart-sim."""

import numpy as np
import pytest
import torch

from hwprune import get_backend
from hwprune.contract import net_engine as ne
from hwprune.contract.protocol import program_beat_bytes
from hwprune.deploy import build_program, deploy
from hwprune.sim.stimulus import random_network
from hwprune.uart import DeviceTimeout, UartSimBackend

LANES, WIDTH = 4, 8
#: bytes of one program beat on the line, for the deploy bitstream's engine
BEAT_BYTES = program_beat_bytes(LANES, WIDTH, **{
    k: v for k, v in ne.bridge_engine(LANES, WIDTH).items() if k not in ("lanes", "width")})


def _job(rng, sizes, vectors=7, skip=True):
    layers = random_network(rng, sizes, WIDTH)
    program, _ = build_program(layers, lanes=LANES, width=WIDTH)
    x = rng.integers(-128, 128, size=(vectors, sizes[0]))
    x[rng.random(x.shape) < 0.5] = 0
    return ne.NetJob(program, x, skip)


def _backend(**options):
    # the iCEBreaker's deploy bitstream (9 clocks a bit at 3 Mbit/s), as deploy builds it
    return UartSimBackend(lanes=LANES, width=WIDTH, blocks=("net_engine",), board="icebreaker",
                          **options)


def _same(got, want):
    np.testing.assert_array_equal(got.out, want.out)
    assert (got.columns, got.beats, got.vectors) == (want.columns, want.beats, want.vectors)


def test_uart_sim_is_bit_identical_with_golden_and_verilator(rng):
    backend = _backend()
    verilator = get_backend("verilator", lanes=LANES, width=WIDTH)
    for sizes in ([20, 30, 7], [64, 100, 40, 10], [3, 9]):
        for skip in (True, False):
            job = _job(rng, sizes, skip=skip)
            got = backend.run("net_engine", [job])[0]
            _same(got, ne.run(job))
            # the cycles come from the device's counter, the same as the verilated engine's
            assert got.busy_cycles == verilator.run("net_engine", [job])[0].busy_cycles
    assert backend.stats["host_jobs"] == 0 and backend.stats["retries"] == 0


def test_the_program_is_sent_once(rng):
    backend = _backend()
    job = _job(rng, [64, 80, 10])
    backend.run("net_engine", [job])
    first = backend.link.line_sent
    assert first > len(job.program.value) * BEAT_BYTES    # at least the weight beats
    again = ne.NetJob(job.program, job.inputs[:3], True)
    _same(backend.run("net_engine", [again])[0], ne.run(again))
    # the second run sends three vector slots and a few commands: the program stayed on chip
    assert backend.link.line_sent - first < 3 * 64 + 200


@pytest.mark.parametrize("faults", [dict(ber=1e-4), dict(drop=2e-4)], ids=["ber1e-4", "drops"])
def test_line_faults_are_survived_bit_exact(rng, faults):
    backend = _backend()
    backend.lib.set_faults(**faults, seed=int(rng.integers(1, 2 ** 31)))
    for _ in range(2):
        job = _job(rng, [64, 100, 30, 10], vectors=40)
        _same(backend.run("net_engine", [job])[0], ne.run(job))
    assert backend.lib.faults["flips"] + backend.lib.faults["drops"] > 0
    assert backend.stats["retries"] > 0


def test_a_device_reset_is_survived(rng):
    """A reset while the program loads, and one while a deployed program runs: the host notices
    (NE_STATUS), loads the program again and the results are exact."""
    backend = _backend()
    job = _job(rng, [64, 100, 30, 10], vectors=60)
    byte = 9 * 10                                     # clocks a byte takes on the line
    backend.lib.reset_device_after(2000 * byte)       # inside the program's load
    _same(backend.run("net_engine", [job])[0], ne.run(job))
    assert backend.lib.faults["resets"] == 1 and backend.stats["retries"] >= 1
    sent = backend.link.line_sent
    backend.lib.reset_device_after(300 * byte)        # inside the first NE_RUN frame
    _same(backend.run("net_engine", [job])[0], ne.run(job))
    assert backend.lib.faults["resets"] == 2
    program = len(job.program.value) * BEAT_BYTES
    assert backend.link.line_sent - sent > program    # the program went again


def test_a_dead_line_times_out_with_a_clear_error():
    backend = _backend(retries=1)
    backend.lib.set_link(False)
    with pytest.raises(DeviceTimeout, match="gave up after 2 failed attempts"):
        backend.run("net_engine", [_job(np.random.default_rng(0), [8, 4])])


def test_a_model_deployed_on_uart_sim_equals_the_integer_reference():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 48), torch.nn.ReLU(),
                                torch.nn.Linear(48, 10))
    with torch.no_grad():
        model[1].weight[torch.rand(48, 64) < 0.8] = 0
    x = torch.rand(30, 1, 8, 8) * (torch.rand(30, 1, 8, 8) > 0.4)
    board = deploy(model, x, backend="uart-sim", board="icebreaker")
    ref = deploy(model, x, backend="golden", board="icebreaker").run(x)
    got = board.run(x)
    np.testing.assert_array_equal(got.out, ref.out)
    assert got.cycles > 0 and board.backend.stats["host_jobs"] == 0
