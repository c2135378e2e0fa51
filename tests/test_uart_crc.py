"""The bridge's CRCs (``amaranth.lib.crc`` processors) and the contract's definitions against
the host's CRC functions and the catalogue check values."""

import binascii
import zlib

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hwprune.contract.protocol import CRC8_DEF, CRC16_DEF, CRC32_DEF
from hwprune.hw.crc import CRC8, CRC16, CRC32
from hwprune.uart import crc8, crc16, encode_frame, split_frames

DATA = bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8))
DEFS = [(CRC8_DEF, CRC8), (CRC16_DEF, CRC16), (CRC32_DEF, CRC32)]


def test_definitions_match_the_host_functions_and_check_values():
    assert CRC8_DEF.compute(DATA) == crc8(DATA) == CRC8.compute(DATA)
    assert CRC16_DEF.compute(DATA) == binascii.crc_hqx(DATA, 0xFFFF) == crc16(DATA) \
        == CRC16.compute(DATA)
    assert CRC16_DEF.compute(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert CRC32_DEF.compute(DATA) == zlib.crc32(DATA) == CRC32.compute(DATA)
    assert CRC32_DEF.compute(b"123456789") == 0xCBF43926  # CRC-32/ISO-HDLC check value
    assert CRC8_DEF.register(b"123456789", crc=0) == 0xF4  # CRC-8 (SMBus) check value


@pytest.mark.parametrize("definition,params", DEFS, ids=["crc8", "crc16", "crc32"])
def test_hardware_processor_matches_the_definition(definition, params):
    """Random bytes with restarts in between, through the processor the bridge instantiates."""
    m = Module()
    m.submodules.crc = proc = params.create()
    rng = np.random.default_rng(definition.width)
    chunks = [bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
              for _ in range(12)]

    async def bench(ctx):
        for chunk in chunks:
            ctx.set(proc.start, 1)
            await ctx.tick()
            ctx.set(proc.start, 0)
            for b in chunk:
                ctx.set(proc.data, b)
                ctx.set(proc.valid, 1)
                await ctx.tick()
            ctx.set(proc.valid, 0)
            assert ctx.get(proc.crc) == definition.compute(chunk), chunk.hex()

    sim = Simulator(m)
    sim.add_clock(1e-6)
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
