"""cocotb 2.x bench of the UART command bridge at the byte level (run by pytest through
``cocotb_tools.runner``, see :func:`hwprune.sim.uart_lib.bridge_cocotb_test`).

A :class:`StreamSource` feeds host bytes (bit 8: framing error) into ``i_rx`` with random idle
cycles, a :class:`StreamSink` takes answer bytes from ``o_tx`` with random backpressure; the
host side is :mod:`hwprune.uart`'s frame encoder and splitter, and the pass results are scored
against the one golden model.
"""

import os
import zlib

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hwprune.contract import ALL_TIES, threshold_mask
from hwprune.contract.protocol import MAX_PAYLOAD, STATUS_FIELDS, Cmd, ErrorCode, Status, beat_bytes
from hwprune.sim.cocotb_tb.streams import StreamSink, StreamSource, random_pauses
from hwprune.sim.stimulus import random_tiles
from hwprune.uart import encode_frame, pack_beats, split_frames, unpack_beats

FERR = 0x100


class BridgeBench:
    def __init__(self, dut, *, in_pause, out_pause, seed):
        self.dut = dut
        self.lanes = int(os.environ["HWPRUNE_TB_LANES"])
        self.width = int(os.environ["HWPRUNE_TB_WIDTH"])
        self.timeout = int(os.environ["HWPRUNE_TB_TIMEOUT"])
        self.nbytes = beat_bytes(self.lanes, self.width)
        self.source = StreamSource(dut, "i_rx", dut.clk, random_pauses(in_pause, seed))
        self.sink = StreamSink(dut, "o_tx", dut.clk, random_pauses(out_pause, seed + 1))
        self.taken = 0  # answer bytes already parsed

    def send(self, data, *, ferr_at=()):
        self.source.queue.extend(b | (FERR if i in ferr_at else 0) for i, b in enumerate(data))

    async def frame(self, limit=200_000):
        """The next answer frame: (cmd, payload); fails after `limit` cycles."""
        for _ in range(limit):
            frames, _ = split_frames(bytes(self.sink.received[self.taken:]))
            if frames:
                cmd, payload, crc_ok = frames[0]
                assert crc_ok, "answer CRC-16 mismatch"
                # Consume exactly this frame's bytes (SYNC .. CRC).
                start = bytes(self.sink.received[self.taken:]).index(0x5A)
                self.taken += start + 5 + len(payload) + 2
                return cmd, payload
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"no answer frame within {limit} cycles")

    async def command(self, cmd, payload=b""):
        self.send(encode_frame(cmd, payload))
        return await self.frame()

    async def status(self):
        cmd, payload = await self.command(Cmd.TE_STATUS)
        assert cmd == Cmd.TE_STATUS | 0x80
        out, pos = {}, 0
        for name, n in STATUS_FIELDS:
            out[name] = int.from_bytes(payload[pos:pos + n], "little")
            pos += n
        return out

    async def run_pass(self, tiles, valid, threshold, budget, *, beats_per_frame):
        cmd, payload = await self.command(Cmd.TE_CONFIG, threshold.to_bytes(2, "little")
                                          + budget.to_bytes(4, "little"))
        assert (cmd, payload) == (Cmd.TE_CONFIG | 0x80, b"\0")
        packed = pack_beats(tiles, valid, self.width)
        answers, in_crc, out_crc = [], 0, 0
        for start in range(0, len(packed), beats_per_frame):
            sent = packed[start:start + beats_per_frame].tobytes()
            cmd, payload = await self.command(Cmd.TE_DATA, sent)
            assert cmd == Cmd.TE_DATA | 0x80 and len(payload) == len(sent) + 1
            assert payload[-1] == 0, f"status {payload[-1]:#x}"
            answers.append(payload[:-1])
            in_crc, out_crc = zlib.crc32(sent, in_crc), zlib.crc32(payload[:-1], out_crc)
        raw = np.frombuffer(b"".join(answers), np.uint8).reshape(-1, self.nbytes)
        data, mask = unpack_beats(raw, self.lanes, self.width)
        want = threshold_mask(tiles, valid, threshold, budget)
        np.testing.assert_array_equal(data, want.data)
        np.testing.assert_array_equal(mask, want.mask)
        st = await self.status()
        assert (st["beats"], st["kept"], st["ties_left"]) == (want.beats, want.kept,
                                                                want.ties_left)
        assert (st["in_crc"], st["out_crc"]) == (in_crc, out_crc)


async def start(dut, **kwargs):
    Clock(dut.clk, 10, unit="ns").start()
    dut.overflow.value = 0
    dut.rst.value = 1
    bench = BridgeBench(dut, **kwargs)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    return bench


@cocotb.test()
async def passes_with_random_stalls(dut):
    """Three passes (several frames each, ties, padding) with stalls on both byte streams."""
    bench = await start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    cmd, info = await bench.command(Cmd.INFO)
    assert cmd == Cmd.INFO | 0x80
    assert (info[2], info[3]) == (bench.lanes, bench.width)
    rng = np.random.default_rng(11)
    hi = 2 ** (bench.width - 1)
    for beats, threshold, budget, per_frame in [(60, 2, ALL_TIES, 25), (33, hi // 4, 7, 8),
                                               (1, 0, 0, 1)]:
        tiles, valid = random_tiles(rng, beats, bench.lanes, bench.width)
        await bench.run_pass(tiles, valid, threshold, budget, beats_per_frame=per_frame)


@cocotb.test()
async def errors_are_reported_and_the_bridge_resynchronises(dut):
    """Garbage, a bad header, an unknown command, a bad length, a bad CRC, a framing error and a
    truncated frame each get their answer; a valid pass afterwards is exact."""
    bench = await start(dut, in_pause=0.2, out_pause=0.2, seed=3)
    bench.send(bytes([0x00, 0xFF, 0x13, 0x37, 0x5A, 0x42]))  # junk without a host SYNC

    bad_header = bytearray(encode_frame(Cmd.INFO))
    bad_header[4] ^= 0x01
    bench.send(bad_header)
    assert await bench.frame() == (Cmd.ERROR, bytes([ErrorCode.BAD_HEADER, 0]))

    assert await bench.command(0x7E, b"abc") == (Cmd.ERROR, bytes([ErrorCode.UNKNOWN_CMD, 0x7E]))
    assert await bench.command(Cmd.TE_DATA, bytes(bench.nbytes + 1)) == \
        (Cmd.ERROR, bytes([ErrorCode.BAD_LENGTH, Cmd.TE_DATA]))
    assert await bench.command(Cmd.TE_DATA, bytes(MAX_PAYLOAD + bench.nbytes)) == \
        (Cmd.ERROR, bytes([ErrorCode.BAD_LENGTH, Cmd.TE_DATA]))

    bad_crc = bytearray(encode_frame(Cmd.TE_CONFIG, bytes(6)))
    bad_crc[-1] ^= 0x80
    bench.send(bad_crc)
    assert await bench.frame() == (Cmd.ERROR, bytes([ErrorCode.BAD_CRC, Cmd.TE_CONFIG]))

    bench.send(encode_frame(Cmd.TE_CONFIG, bytes(6)), ferr_at=(7,))
    assert await bench.frame() == (Cmd.ERROR, bytes([ErrorCode.FRAMING, Cmd.TE_CONFIG]))

    # A TE_DATA frame whose payload CRC is wrong: answered in full, status says BAD_CRC.
    data = bytearray(encode_frame(Cmd.TE_DATA, bytes(2 * bench.nbytes)))
    data[-2] ^= 0x01
    bench.send(data)
    cmd, payload = await bench.frame()
    assert cmd == Cmd.TE_DATA | 0x80 and payload[-1] == Status.BAD_CRC

    # A TE_DATA frame that stops half way: the idle timeout ends it, status says TIMEOUT.
    bench.send(encode_frame(Cmd.TE_DATA, bytes(3 * bench.nbytes))[:5 + bench.nbytes + 2])
    cmd, payload = await bench.frame(limit=20 * bench.timeout)
    assert cmd == Cmd.TE_DATA | 0x80 and len(payload) == 3 * bench.nbytes + 1
    assert payload[-1] & Status.TIMEOUT

    # A frame header that stops half way: ERROR TIMEOUT.
    bench.send(encode_frame(Cmd.INFO)[:3])
    assert await bench.frame(limit=20 * bench.timeout) == \
        (Cmd.ERROR, bytes([ErrorCode.TIMEOUT, 0]))

    st = await bench.status()
    assert st["header_errors"] == 1 and st["crc_errors"] == 2
    assert st["framing_errors"] == 1 and st["timeouts"] == 2
    assert int(dut.error.value) == 1

    rng = np.random.default_rng(5)
    tiles, valid = random_tiles(rng, 20, bench.lanes, bench.width)
    await bench.run_pass(tiles, valid, 1, 3, beats_per_frame=7)
    await ClockCycles(dut.clk, 10)
    assert int(dut.busy.value) == 0


@cocotb.test()
async def store_runs_with_random_stalls(dut):
    """The weight store: beats written with WS_DENSE (all lanes valid, no bitmap) and WS_DATA
    frames, a damaged frame that leaves the store as it was, then TE_RUN (the keep mask as
    bits) and MH_RUN over stored ranges, with stalls on both byte streams; every answer scored
    against the golden models."""
    from hwprune.contract.magnitude_histogram import HistogramJob, run as histogram
    from hwprune.contract.protocol import (MH_SELECT_FIELDS, WS_STATUS_FIELDS, data_bytes,
                                           mask_bytes)
    bench = await start(dut, in_pause=0.3, out_pause=0.3, seed=5)
    lanes, width = bench.lanes, bench.width

    def fields(spec, payload):
        out, pos = {}, 0
        for name, n in spec:
            out[name] = int.from_bytes(payload[pos:pos + n], "little")
            pos += n
        return out

    async def ok(cmd, payload=b""):
        got, answer = await bench.command(cmd, payload)
        assert got == cmd | 0x80, (cmd, got, answer)
        return answer

    rng = np.random.default_rng(12)
    full, _ = random_tiles(rng, 20, lanes, width)
    full_valid = np.ones_like(full, dtype=bool)
    part, part_valid = random_tiles(rng, 9, lanes, width)
    part_valid[0, -1] = False
    tiles = np.concatenate([full, part])
    valid = np.concatenate([full_valid, part_valid])
    packed = pack_beats(tiles, valid, width)
    assert await ok(Cmd.WS_CONFIG) == b"\0"
    nd = data_bytes(lanes, width)
    assert await ok(Cmd.WS_DENSE, packed[:12, :nd].tobytes()) == b"\0"
    bad = bytearray(encode_frame(Cmd.WS_DENSE, packed[12:20, :nd].tobytes()))
    bad[7] ^= 0x01                                    # a damaged frame: nothing of it stays
    bench.send(bytes(bad))
    cmd, answer = await bench.frame()
    assert cmd == Cmd.WS_DENSE | 0x80 and answer[0] & Status.BAD_CRC
    assert fields(WS_STATUS_FIELDS, await ok(Cmd.WS_STATUS))["beats"] == 12
    assert await ok(Cmd.WS_DENSE, packed[12:20, :nd].tobytes()) == b"\0"
    assert await ok(Cmd.WS_DATA, packed[20:].tobytes()) == b"\0"
    st = fields(WS_STATUS_FIELDS, await ok(Cmd.WS_STATUS))
    assert st["beats"] == len(packed) and st["capacity"] > len(packed)

    # The masking pass over beats 3 .. 25 of the store.
    first, count, threshold, budget = 3, 23, 2 ** (width - 3), 4
    assert await ok(Cmd.TE_CONFIG, threshold.to_bytes(2, "little")
                    + budget.to_bytes(4, "little")) == b"\0"
    answer = await ok(Cmd.TE_RUN, first.to_bytes(4, "little") + count.to_bytes(4, "little"))
    mb = mask_bytes(lanes)
    assert len(answer) == count * mb + 1 and answer[-1] == 0
    bits = np.unpackbits(np.frombuffer(answer[:-1], np.uint8).reshape(count, mb), axis=1,
                         bitorder="little")[:, :lanes].astype(bool)
    want = threshold_mask(tiles[first:first + count], valid[first:first + count], threshold,
                          budget)
    np.testing.assert_array_equal(bits, want.mask)
    st = await bench.status()
    assert (st["beats"], st["kept"], st["ties_left"]) == (count, want.kept, want.ties_left)
    assert st["in_crc"] == zlib.crc32(packed[first:first + count].tobytes())
    assert st["out_crc"] == zlib.crc32(answer[:-1])

    # The histogram over the whole store, and a RUN past its end refused.
    keep = int(valid.sum()) // 2
    shift = 8 if width == 16 else 0                   # the first pass: the top bits
    assert await ok(Cmd.MH_CONFIG, bytes([shift, 0, 0]) + keep.to_bytes(4, "little")) == b"\0"
    assert await ok(Cmd.MH_RUN, (0).to_bytes(4, "little")
                    + len(packed).to_bytes(4, "little")) == b"\0"
    got = fields(MH_SELECT_FIELDS, await ok(Cmd.MH_SELECT))
    ref = histogram(HistogramJob(tiles, valid, width, shift, False, 0, keep))
    assert (got["found_bin"], got["above"], got["ties"], got["counted"]) == \
        (ref.found_bin, ref.above, ref.ties, ref.counted)
    assert got["in_crc"] == zlib.crc32(packed.tobytes())
    cmd, answer = await bench.command(Cmd.TE_RUN, (20).to_bytes(4, "little")
                                      + (10).to_bytes(4, "little"))
    assert (cmd, answer[0], answer[1]) == (Cmd.ERROR, ErrorCode.BAD_LENGTH, Cmd.TE_RUN)


@cocotb.test()
async def net_engine_with_random_stalls(dut):
    """The network engine behind the bridge (a deploy bitstream): a program loaded in NE_LOAD
    frames (one damaged: not written, then sent again), checked by NE_STATUS; NE_RUN frames of
    vector slots scored against the golden model; a damaged NE_RUN frame answered with zeros
    and not run; stalls on both byte streams."""
    from hwprune.contract import net_engine as ne
    from hwprune.contract.protocol import NE_STATUS_FIELDS, result_bytes
    from hwprune.deploy import build_program
    from hwprune.sim.stimulus import random_network
    bench = await start(dut, in_pause=0.3, out_pause=0.3, seed=7)
    lanes, width = bench.lanes, bench.width
    params = ne.bridge_engine(lanes, width)

    async def ok(cmd, payload=b""):
        got, answer = await bench.command(cmd, payload)
        assert got == cmd | 0x80, (cmd, got, answer)
        return answer

    async def status():
        answer, out, pos = await ok(Cmd.NE_STATUS), {}, 0
        for name, n in NE_STATUS_FIELDS:
            out[name] = int.from_bytes(answer[pos:pos + n], "little")
            pos += n
        return out

    rng = np.random.default_rng(17)
    program, _ = build_program(random_network(rng, [24, 30, 6], width), lanes=lanes,
                               width=width)
    packed = ne.program_bytes(program, **params)
    total = len(packed)
    assert await ok(Cmd.NE_CONFIG, ne.ne_config(program, new_program=True)) == b"\0"
    half = total // 2
    assert await ok(Cmd.NE_LOAD, packed[:half].tobytes()) == b"\0"
    bad = bytearray(encode_frame(Cmd.NE_LOAD, packed[half:].tobytes()))
    bad[9] ^= 0x10                                   # a damaged frame: nothing of it is written
    bench.send(bytes(bad))
    cmd, answer = await bench.frame()
    assert cmd == Cmd.NE_LOAD | 0x80 and answer[0] & Status.BAD_CRC
    st = await status()
    assert (st["program"], st["program_beats"]) == (0, half)
    assert await ok(Cmd.NE_LOAD, packed[half:].tobytes()) == b"\0"
    st = await status()
    assert (st["program"], st["program_beats"]) == (1, total)
    assert st["program_crc"] == zlib.crc32(packed.tobytes())

    x = rng.integers(-2 ** (width - 1), 2 ** (width - 1), size=(5, program.in_features))
    x[rng.random(x.shape) < 0.4] = 0
    frame = ne.run_frame(program, x)
    out_bytes = program.layers[-1].out_words * result_bytes(lanes)
    for skip in (1, 0):
        assert await ok(Cmd.NE_CONFIG, ne.ne_config(program, skip_zero=skip)) == b"\0"
        answer = await ok(Cmd.NE_RUN, frame.tobytes())
        assert len(answer) == frame.size + 1 and answer[-1] == 0
        np.testing.assert_array_equal(ne.run_results(program, answer[:-1], 5),
                                      ne.run(ne.NetJob(program, x, bool(skip))).out)
        slots = np.frombuffer(answer[:-1], dtype=np.uint8).reshape(5, -1)
        assert not slots[:, out_bytes:].any()        # the rest of each slot is zeros
    before = await status()
    bad = bytearray(encode_frame(Cmd.NE_RUN, frame.tobytes()))
    bad[12] ^= 0x01
    bench.send(bytes(bad))
    cmd, answer = await bench.frame()
    assert cmd == Cmd.NE_RUN | 0x80 and answer[-1] & Status.BAD_CRC
    assert not any(answer[:-1])                      # zeros, and nothing ran
    assert (await status())["vectors"] == before["vectors"] == 10
