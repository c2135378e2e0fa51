"""Fuzz the verilated UART core with garbage: the decoder never hangs (it goes quiet within a
bounded number of cycles) and a valid pass afterwards is exact."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwprune.contract import MODELS, ThresholdJob
from hwprune.contract.protocol import MAX_PAYLOAD, Cmd
from hwprune.sim.stimulus import random_tiles
from hwprune.sim.uart_lib import UartCoreLib
from hwprune.uart import SimTransport, UartBackend, encode_frame

LANES, WIDTH = 16, 8
CMDS = [Cmd.INFO, Cmd.TE_CONFIG, Cmd.TE_DATA, Cmd.TE_STATUS, 0x00, 0x7F, 0xA5]


@pytest.fixture(scope="module")
def lib():
    return UartCoreLib(lanes=LANES, width=WIDTH)


@st.composite
def frame_like(draw):
    """A frame, possibly cut short or with a byte damaged (the bytes garbage is made of)."""
    frame = bytearray(encode_frame(draw(st.sampled_from(CMDS)), draw(st.binary(max_size=48))))
    cut = draw(st.integers(0, len(frame)))
    if draw(st.booleans()):
        frame = frame[:cut]
    elif frame and draw(st.booleans()):
        frame[cut % len(frame)] ^= draw(st.integers(1, 255))
    return bytes(frame)


chunks = st.lists(st.tuples(st.one_of(st.binary(max_size=64), frame_like()), st.booleans()),
                  max_size=6)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(garbage=chunks, seed=st.integers(0, 2**16))
def test_garbage_never_hangs_the_decoder(lib, garbage, seed):
    lib.reset()
    total = 0
    for data, bad_stop in garbage:
        lib.send(data, bad_stop=bad_stop)
        total += len(data)
    byte_cycles = 10 * lib.clocks_per_bit
    # Worst case: every byte answered by a frame as long as the longest one, then a timeout.
    bound = (total + MAX_PAYLOAD + 64) * byte_cycles * 2 + 8 * lib.timeout
    dropped = lib.drain(idle_cycles=2 * lib.timeout + 2 * byte_cycles, max_cycles=bound)
    assert dropped >= 0, f"the bridge still talks after {bound} cycles"
    busy, _ = lib.leds
    assert not busy, "the bridge is stuck inside a frame"

    backend = UartBackend(lanes=LANES, width=WIDTH, transport=SimTransport(lib), retries=0)
    rng = np.random.default_rng(seed)
    tiles, valid = random_tiles(rng, 9, LANES, WIDTH)
    job = ThresholdJob(tiles, valid, int(rng.integers(0, 128)), int(rng.integers(0, 20)))
    got, = backend.run("threshold_engine", [job])
    want = MODELS["threshold_engine"](job)
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.mask, want.mask)
    assert (got.kept, got.ties_left) == (want.kept, want.ties_left)
