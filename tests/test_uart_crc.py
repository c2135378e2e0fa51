"""The bridge's CRC logic (derived symbolically) against the host's CRC functions."""

import binascii
import zlib

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hwprune.hw.crc import CRC8, CRC16, CRC32
from hwprune.uart import crc8, crc16, encode_frame, split_frames

DATA = bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8))


def test_software_models_match_the_host_functions():
    assert CRC8.software(DATA) == crc8(DATA)
    assert CRC16.software(DATA) == binascii.crc_hqx(DATA, 0xFFFF) == crc16(DATA)
    assert CRC16.software(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert CRC32.software(DATA) ^ 0xFFFFFFFF == zlib.crc32(DATA)
    assert CRC8.software(b"123456789", crc=0) == 0xF4  # CRC-8 (SMBus) check value


@pytest.mark.parametrize("spec", [CRC8, CRC16, CRC32], ids=["crc8", "crc16", "crc32"])
def test_hardware_update_matches_the_software_model(spec):
    m = Module()
    crc, byte, out = Signal(spec.width), Signal(8), Signal(spec.width)
    m.d.comb += out.eq(spec.next(crc, byte))
    rng = np.random.default_rng(spec.width)
    cases = [(int(rng.integers(0, 2**spec.width)), int(rng.integers(0, 256)))
             for _ in range(200)]

    async def bench(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == spec.software(bytes([b]), crc=c), (c, b)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_frames_split_back_out_of_junk():
    frames = [encode_frame(0x91, b"\x00", sync=0x5A),
              encode_frame(0x92, bytes(range(40)), sync=0x5A)]
    stream = b"\x5a\x01junk" + frames[0] + b"\x00\x5a" + frames[1] + frames[0][:4]
    got, rest = split_frames(stream)
    assert [(c, p) for c, p, ok in got] == [(0x91, b"\x00"), (0x92, bytes(range(40)))]
    assert all(ok for *_, ok in got)
    assert rest == frames[0][:4]
