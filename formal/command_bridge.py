"""Formal properties of the UART command bridge's framing (docs/uart_protocol.md).

The CRCs are checked against an independent reference: ``amaranth.lib.crc`` processors in the
harness, fed the bytes seen on the stream. The header's CRC-8 follows its bytes, so the
reference's residue test (``match_detected``) says whether the header is a valid codeword; the
CRC-16 is sent low byte first, so the reference's CRC over command, length and payload is
compared with the two bytes received.
"""

from amaranth import *
from amaranth.hdl import Assert, Assume

from hwprune.contract.protocol import DEVICE_SYNC, HOST_SYNC
from hwprune.hw.crc import CRC8, CRC16
from hwprune.hw.framing import FrameEncoder, FrameParser

from . import Property

MAX_LEN = 1          # payload bytes a frame may have in the harness (depth)
TIMEOUT = 6


def _reference(m, name, params, *, start, valid, data):
    proc = params.create()
    m.submodules[name] = proc
    m.d.comb += [proc.start.eq(start), proc.valid.eq(valid), proc.data.eq(data)]
    return proc


def parser_accepts_only_valid_crcs(m, dut, env):
    """One frame arrives (SYNC, then any bytes): the header is accepted exactly when its CRC-8
    is right, and the trailer says ``crc_ok`` exactly when the CRC-16 is right."""
    i = dut.i_bytes
    env.assume_source(i)
    taken = env.counter(env.fire(i), 5)
    with m.If(i.valid & (taken == 0)):
        m.d.comb += [Assume(i.payload.data == HOST_SYNC), Assume(~i.payload.ferr)]
    m.d.comb += Assume(~i.valid | ~i.payload.ferr)
    length = Signal(16)
    with m.If(env.fire(i) & (taken == 2)):
        m.d.sync += length[:8].eq(i.payload.data)
    with m.If(env.fire(i) & (taken == 3)):
        m.d.sync += length[8:].eq(i.payload.data)
    with m.If(env.fire(i) & (taken == 3)):
        m.d.comb += Assume(Cat(length[:8], i.payload.data) <= MAX_LEN)
    byte = i.payload.data
    start = env.live & (env.cycle == 1)
    header_ok = _reference(m, "ref_crc8", CRC8, start=start,
                           valid=env.fire(i) & (taken >= 1) & (taken <= 4),
                           data=byte).match_detected
    crc16 = _reference(m, "ref_crc16", CRC16, start=start,
                       valid=env.fire(i) & (taken >= 1) & (taken != 4) & (taken < 5 + length),
                       data=byte).crc
    received = Signal(16)
    with m.If(env.fire(i) & (taken == 5 + length)):
        m.d.sync += received[:8].eq(byte)
    with m.If(env.fire(i) & (taken == 6 + length)):
        m.d.sync += received[8:].eq(byte)
    frame_ok = received == crc16
    accepted = Signal()
    with m.If(env.fire(dut.o_header)):
        m.d.sync += accepted.eq(dut.o_header.payload.error == 0)
    # The header: accepted iff its CRC-8 is right (the header's 4 bytes are in by then; a
    # header the host stopped sending is a timeout, whatever its bytes).
    from hwprune.hw.framing import ErrorCode
    with m.If(env.fire(dut.o_header) & (dut.o_header.payload.error != ErrorCode.TIMEOUT)):
        m.d.comb += Assert((dut.o_header.payload.error == 0) == header_ok)
    env.drive(dut.accept, 1)
    t = dut.o_trailer.payload
    env.reach(env.fire(dut.o_trailer) & accepted & t.crc_ok & (length != 0))
    with m.If(env.fire(dut.o_trailer) & accepted & ~t.timeout):
        m.d.comb += Assert(t.crc_ok == frame_ok)


def encoder_frames_carry_valid_crcs(m, dut, env):
    """Every frame the encoder sends starts with SYNC and carries a right CRC-8 over its header
    and a right CRC-16 over command, length and payload."""
    for s in (dut.i_frame, dut.i_small, dut.i_data, dut.i_status):
        env.assume_source(s)
    m.d.comb += Assume(~dut.i_frame.valid | (dut.i_frame.payload.length <= MAX_LEN))
    o = dut.o_tx
    env.drive(o.ready, 1)     # the transmitter's pace does not enter the CRCs (depth)
    pos = Signal(5)           # byte of the frame being sent
    length = Signal(16)
    last = Signal()
    fire = env.fire(o)
    byte = o.payload
    with m.If(fire):
        m.d.sync += pos.eq(pos + 1)
        with m.If(pos == 2):
            m.d.sync += length[:8].eq(byte)
        with m.If(pos == 3):
            m.d.sync += length[8:].eq(byte)
    m.d.comb += last.eq(fire & (pos >= 6) & (pos == length + 6))
    with m.If(last):
        m.d.sync += pos.eq(0)
    with m.If(fire & (pos == 0)):
        m.d.comb += Assert(byte == DEVICE_SYNC)
    start = fire & (pos == 0)
    header_ok = _reference(m, "ref_crc8", CRC8, start=start,
                           valid=fire & (pos >= 1) & (pos <= 4), data=byte).match_detected
    crc16 = _reference(m, "ref_crc16", CRC16, start=start,
                       valid=fire & (pos >= 1) & (pos != 4) & (pos < 5 + length), data=byte).crc
    header_done = env.past(fire & (pos == 4))
    frame_done = env.past(last)
    with m.If(fire & (pos >= 5) & (pos == 5 + length)):
        m.d.comb += Assert(byte == crc16[:8])
    with m.If(last):
        m.d.comb += Assert(byte == crc16[8:])
    env.reach(frame_done & (length != 0))
    with m.If(header_done):
        m.d.comb += Assert(header_ok)


PROPERTIES = [
    Property("command_bridge", "parser_accepts_only_valid_crcs",
             "a header is accepted iff its CRC-8 is right; crc_ok iff the CRC-16 is right",
             parser_accepts_only_valid_crcs, depth=14, fast=False,
             factory=lambda: FrameParser(timeout=TIMEOUT)),
    Property("command_bridge", "encoder_frames_carry_valid_crcs",
             "every answer frame starts with SYNC and carries right CRC-8 and CRC-16",
             encoder_frames_carry_valid_crcs, depth=24, fast=False, factory=FrameEncoder),
]
