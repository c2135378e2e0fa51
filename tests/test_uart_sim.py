"""The UART path end to end: the board's UART core verilated (``uart-sim``), the serial backend's
timeout, error reporting, retries and the per-pass integrity check."""

import numpy as np
import pytest

from hwprune.backends import BACKENDS, VerilatorBackend, get_backend
from hwprune.contract import ALL_TIES, MODELS, ThresholdJob, threshold_mask
from hwprune.contract.protocol import Cmd, ErrorCode, Status, beat_bytes, mask_bytes
from hwprune.sim.stimulus import corner_values, random_tiles
from hwprune.sim.uart_lib import UartCoreLib
from hwprune.uart import (DeviceError, DeviceTimeout, IntegrityError, SerialBackend,
                          SimTransport, UartBackend, UartLink, UartSimBackend, encode_frame,
                          pack_beats)


def jobs_for(lanes, width, seed):
    rng = np.random.default_rng(seed)
    hi = 2 ** (width - 1)
    jobs = []
    # 300 beats: more than one TE_DATA frame at 16 x 8 bits (227 beats per frame).
    for beats, threshold, budget in [(300, 2, ALL_TIES), (40, hi // 4, 9), (0, 1, 3),
                                     (25, 1, 0)]:
        tiles, valid = random_tiles(rng, beats, lanes, width)
        jobs.append(ThresholdJob(tiles, valid, threshold, budget))
    corners = np.resize(corner_values(width), (12, lanes)).astype(np.int16)
    jobs.append(ThresholdJob(corners, np.ones_like(corners, dtype=bool), hi, 2))
    # Every weight a tie, budgets that run out across several multiples of 2**k (the engine
    # splits its tie budget at 2**k, k = lanes.bit_length() + 1).
    ties = np.where(rng.random((40, lanes)) < 0.5, 3, -3).astype(np.int16)
    k = lanes.bit_length() + 1
    for budget in (3 * 2**k + 5, 2**k, 2**k - 1):
        jobs.append(ThresholdJob(ties, np.ones_like(ties, dtype=bool), 3, budget))
    return jobs


def assert_same(got, want, *, line=None, store=False):
    """Bit-identical results; cycles equal, or for a pass through the UART bridge (``line`` =
    (lanes, width, clocks_per_bit)) the device's own count, which the line paces: at least the
    stall-free figure plus the line time of every beat after the first (from the weight store,
    ``store``: of every beat's mask bytes, less the two bytes the encoder and the transmitter
    hold)."""
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.mask, want.mask)
    assert (got.beats, got.kept, got.ties_left) == (want.beats, want.kept, want.ties_left)
    if line is None:
        assert got.cycles == want.cycles
    elif got.beats == 0:
        assert got.cycles == 0
    else:
        lanes, width, cpb = line
        if store:
            floor = max(0, (got.beats - 1) * mask_bytes(lanes) - 2) * 10 * cpb
        else:
            floor = ((got.beats - 1) * beat_bytes(lanes, width) * 10 * cpb + want.cycles
                     - got.beats)
        assert got.cycles >= floor, (got.cycles, floor)


@pytest.fixture(scope="module")
def lib16():
    return UartCoreLib(lanes=16, width=8)


def test_registered():
    assert BACKENDS["serial"] is SerialBackend and BACKENDS["uart-sim"] is UartSimBackend


@pytest.mark.parametrize("store", [True, False], ids=["store", "frames"])
@pytest.mark.parametrize("lanes,width", [(16, 8), (7, 4)])
def test_uart_sim_is_bit_identical(lanes, width, store):
    """Through the weight store (the tiles sent once, masks back as bits) and through TE_DATA
    frames (tiles both ways)."""
    jobs = jobs_for(lanes, width, seed=lanes)
    backend = get_backend("uart-sim", lanes=lanes, width=width, gap=0.3, use_store=store)
    assert bool(backend.store_capacity) == store
    got = backend.run("threshold_engine", jobs)
    for g, job in zip(got, jobs):
        assert_same(g, MODELS["threshold_engine"](job), line=(lanes, width, 4), store=store)
    assert backend.stats["retries"] == 0 and backend.stats["passes"] == len(jobs)
    assert (backend.stats["store_uploads"] > 0) == store
    if (lanes, width) == (16, 8):
        for g, v in zip(got, VerilatorBackend(lanes=lanes, width=width).run(
                "threshold_engine", jobs)):
            assert_same(g, v, line=(lanes, width, 4), store=store)


def test_errors_are_reported_and_counted(lib16):
    link = UartLink(SimTransport(lib16))
    link.resync()
    before = link.status()
    nbytes = beat_bytes(16, 8)

    def error_of(frame, **kw):
        lib16.send(frame, **kw)
        with pytest.raises(DeviceError) as exc:
            cmd, payload = link.read_frame()
            if cmd == Cmd.ERROR:
                raise DeviceError(payload[0], payload[1])
        return exc.value.code, exc.value.cmd

    bad = bytearray(encode_frame(Cmd.INFO))
    bad[4] ^= 0xFF
    assert error_of(bad) == (ErrorCode.BAD_HEADER, 0)
    assert error_of(encode_frame(0x33)) == (ErrorCode.UNKNOWN_CMD, 0x33)
    assert error_of(encode_frame(Cmd.TE_DATA, bytes(nbytes - 1))) == \
        (ErrorCode.BAD_LENGTH, Cmd.TE_DATA)
    link.configure(5, 77)
    bad = bytearray(encode_frame(Cmd.TE_CONFIG, bytes(6)))
    bad[-2] ^= 1
    assert error_of(bad) == (ErrorCode.BAD_CRC, Cmd.TE_CONFIG)
    assert link.status()["ties_left"] == 77  # the damaged TE_CONFIG changed nothing
    frame = encode_frame(Cmd.TE_CONFIG, bytes(6))
    lib16.send(frame[:6])
    lib16.send(frame[6:7], bad_stop=True)  # a byte with its stop bit low
    lib16.send(frame[7:])
    assert error_of(b"") == (ErrorCode.FRAMING, Cmd.TE_CONFIG)
    assert error_of(encode_frame(Cmd.INFO)[:4]) == (ErrorCode.TIMEOUT, 0)

    bad = bytearray(encode_frame(Cmd.TE_DATA, bytes(2 * nbytes)))
    bad[7] ^= 0x10
    lib16.send(bad)
    cmd, payload = link.read_frame()
    assert cmd == Cmd.TE_DATA | 0x80 and payload[-1] == Status.BAD_CRC
    lib16.send(encode_frame(Cmd.TE_DATA, bytes(3 * nbytes))[:5 + nbytes])
    cmd, payload = link.read_frame()
    assert cmd == Cmd.TE_DATA | 0x80 and len(payload) == 3 * nbytes + 1
    assert payload[-1] & Status.TIMEOUT

    after = link.status()
    assert after["header_errors"] == before["header_errors"] + 1
    assert after["crc_errors"] == before["crc_errors"] + 2
    assert after["framing_errors"] == before["framing_errors"] + 1
    assert after["timeouts"] == before["timeouts"] + 2
    assert lib16.leds == (False, True)  # idle, error LED on


class CorruptOnce:
    """A transport that flips one payload bit of the first ``cmd`` frame it sends."""

    def __init__(self, inner, cmd=Cmd.TE_DATA):
        self.inner, self.done, self.cmd = inner, False, cmd

    def write(self, data):
        data = bytearray(data)
        if not self.done and data[1] == self.cmd:
            data[9] ^= 0x04
            self.done = True
        self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("cmd", [Cmd.TE_DATA, Cmd.WS_DATA])
def test_damaged_pass_is_retried(lib16, cmd):
    # A damaged TE_DATA frame (tiles both ways), or a damaged WS_DATA frame (the weight store
    # keeps nothing of it, and the host sends it again).
    job = jobs_for(16, 8, seed=3)[1]
    store = cmd == Cmd.WS_DATA
    backend = UartBackend(lanes=16, width=8, transport=CorruptOnce(SimTransport(lib16), cmd),
                          use_store=store)
    got, = backend.run("threshold_engine", [job])
    assert backend.link.transport.done
    assert backend.stats["retries"] == 1
    assert_same(got, MODELS["threshold_engine"](job), line=(16, 8, 4), store=store)


def test_integrity_check_catches_a_duplicated_beat(lib16):
    job = jobs_for(16, 8, seed=4)[1]
    backend = UartBackend(lanes=16, width=8, transport=SimTransport(lib16), retries=0,
                          use_store=False)
    real = backend.link.data
    nbytes = beat_bytes(16, 8)

    def duplicate_first_beat(payload):
        raw, status = real(payload)
        return raw[:nbytes] + raw[:-nbytes], status  # same length, one beat lost, one doubled

    backend.link.data = duplicate_first_beat
    with pytest.raises(IntegrityError, match="pass check failed"):
        backend.run("threshold_engine", [job])


def test_host_times_out_when_the_device_is_silent(lib16):
    backend = UartBackend(lanes=16, width=8, transport=SimTransport(lib16))
    lib16.set_link(False)
    try:
        with pytest.raises(DeviceTimeout, match="no answer from the device"):
            backend.run("threshold_engine", jobs_for(16, 8, seed=5)[1:2])
    finally:
        lib16.set_link(True)
        backend.link.resync()
    assert backend.link.info()["lanes"] == 16  # the link works again


def test_serial_backend_times_out_on_a_port_nobody_answers():
    # pyserial's loop:// echoes our own frames back: no device SYNC ever arrives.
    with pytest.raises(DeviceTimeout, match="serial port 'loop://'"):
        SerialBackend(lanes=8, width=8, port="loop://", timeout=0.2)


def test_wire_format_round_trip():
    from hwprune.uart import unpack_beats
    rng = np.random.default_rng(9)
    for lanes, width in [(5, 16), (7, 4), (16, 8), (64, 16)]:
        tiles, valid = random_tiles(rng, 30, lanes, width)
        packed = pack_beats(tiles, valid, width)
        assert packed.shape == (30, beat_bytes(lanes, width))
        data, mask = unpack_beats(packed, lanes, width)
        np.testing.assert_array_equal(data, tiles)
        np.testing.assert_array_equal(mask, valid)


def test_prune_through_the_uart_matches_golden():
    import torch

    import hwprune
    from hwprune.hw.boards import DEFAULT_BLOCKS

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, 10))

    board, ref = model(), model()
    # the backend's options pass through: the ULX3S's default bitstream (at 4 clocks a bit)
    report = hwprune.prune(board, amount=0.5, backend="uart-sim", lanes=16, width=8,
                           blocks=DEFAULT_BLOCKS["ulx3s"])
    hwprune.prune(ref, amount=0.5, backend="golden", lanes=16, width=8)
    masks = dict(board.named_buffers())
    for name, want in ref.named_buffers():
        assert torch.equal(masks[name], want), name
    assert report.kept == sum(int(m.sum()) for m in masks.values())


def test_long_passes_at_eight_lanes_match_golden():
    # Regression: a 512-beat pass at 8 lanes (4.6 KB) used to end in a device TIMEOUT.
    rng = np.random.default_rng(9)
    tiles, valid = random_tiles(rng, 512, 8, 8)
    job = ThresholdJob(tiles, valid, 3, 5)
    got, = get_backend("uart-sim", lanes=8, width=8).run("threshold_engine", [job])
    want = threshold_mask(tiles, valid, 3, 5)
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.data, want.data)
    assert (got.beats, got.kept, got.ties_left) == (want.beats, want.kept, want.ties_left)


@pytest.mark.parametrize("lanes", [4, 8])
def test_full_size_frames_lose_no_byte(lanes):
    # Frames of the device's whole max_payload (4 KiB) at 4 and 8 lanes, where the answer once
    # fell behind the incoming bytes (the transmitter took 10 * cpb + 1 clocks a byte) until the
    # 64-byte receive FIFO overflowed and the frame ended in TIMEOUT: now exact, no overflow.
    rng = np.random.default_rng(lanes)
    # TE_DATA frames (the weight store off): the answer echoes the request at line rate.
    backend = get_backend("uart-sim", lanes=lanes, width=8, use_store=False)
    beats = 2 * (backend.max_payload // beat_bytes(lanes, 8)) + 7   # two full frames and a bit
    tiles, valid = random_tiles(rng, beats, lanes, 8)
    got, = backend.run("threshold_engine", [ThresholdJob(tiles, valid, 3, 5)])
    want = threshold_mask(tiles, valid, 3, 5)
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.data, want.data)
    assert backend.stats["bytes_sent"] == beats * beat_bytes(lanes, 8)
    status = backend.link.status()
    assert (status["overflows"], status["timeouts"]) == (0, 0)
