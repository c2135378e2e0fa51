"""Block adapters of the UART command bridge: one per block the bridge can hold.

An adapter connects its block to the bridge's byte streams: it assembles the bytes of a DATA
payload into the block's input beats (the wire layout of :mod:`hwprune.contract.protocol`),
serialises the block's output beats back into bytes, keeps the pass checksums (CRC-32 of the
bytes in and out) and the pass's own cycle count, loads the block's configuration from a CONFIG
payload, and exposes the counters its STATUS answer reports. The bridge's parser and frame
encoder only move bytes and its dispatcher only routes commands (:mod:`hwprune.hw.bridge`);
putting a block behind the UART means adding its adapter here and to ``bridge.ADAPTERS``.

Every adapter has the same interface: class attributes ``block`` (the block's description),
``CONFIG`` / ``DATA`` / ``STATUS`` (its command codes), ``config_len`` (CONFIG payload bytes),
the ``beat_bytes`` of a DATA payload, and the ports ``config`` + ``load``, ``i_bytes`` and
``o_bytes``.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.block import COUNTER_WIDTH
from ..contract.protocol import CFG_LEN, Cmd, beat_bytes
from ..contract.threshold_engine import BLOCK as THRESHOLD_ENGINE
from .crc import CRC32, processor
from .threshold_engine import ThresholdEngine

__all__ = ["ThresholdEngineAdapter"]


class ThresholdEngineAdapter(wiring.Component):
    """The threshold engine behind the bridge.

    Attributes
    ----------
    i_bytes : In(stream.Signature(8))
        TE_DATA payload bytes; ``ready`` never waits on the engine (a completed beat waits in a
        hold register), so the parser's timing does not depend on the engine's.
    o_bytes : Out(stream.Signature(8))
        The pruned tiles' bytes (wire layout), ``valid`` from a register.
    config : In(8 * CFG_LEN)
        A TE_CONFIG payload: threshold u16, tie_budget u32 (little-endian).
    load : In(1)
        Strobe: take ``config``; one cycle later the pass starts (the engine's ``clear``: its
        counters zeroed, the checksums restarted).
    beats, kept, ties_left, in_crc, out_crc, cycles : Out(32)
        The engine's counters, the CRC-32 of the bytes taken in and sent out, and the engine
        clocks of the pass from its first input beat to its last output beat (inclusive).
    """

    block = THRESHOLD_ENGINE
    CONFIG, DATA, STATUS = Cmd.TE_CONFIG, Cmd.TE_DATA, Cmd.TE_STATUS
    config_len = CFG_LEN

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.beat_bytes = beat_bytes(lanes, width)
        self.engine = ThresholdEngine(lanes=lanes, width=width)
        super().__init__({
            "i_bytes": In(stream.Signature(8)),
            "o_bytes": Out(stream.Signature(8)),
            "config": In(8 * CFG_LEN),
            "load": In(1),
            "beats": Out(COUNTER_WIDTH), "kept": Out(COUNTER_WIDTH),
            "ties_left": Out(COUNTER_WIDTH), "in_crc": Out(32), "out_crc": Out(32),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        bpw = 2 if width == 16 else 1
        data_bytes = lanes * bpw
        nbytes = self.beat_bytes
        m.submodules.engine = engine = self.engine
        # The configuration registers load on ``load``; the engine samples them on ``clear``,
        # one cycle later.
        threshold = Signal(width)
        tie_budget = Signal(32)
        clear = Signal()
        m.d.sync += clear.eq(self.load)
        with m.If(self.load):
            m.d.sync += [threshold.eq(self.config[:width]), tie_budget.eq(self.config[16:48])]
        m.d.comb += [engine.threshold.eq(threshold), engine.tie_budget.eq(tie_budget),
                     engine.clear.eq(clear), self.beats.eq(engine.beats),
                     self.kept.eq(engine.kept), self.ties_left.eq(engine.ties_left)]

        # --- bytes -> beat assembler -> engine ------------------------------------------------
        asm = Signal(8 * nbytes)
        asm_pos = Signal(range(nbytes))
        hold = Signal(8 * nbytes)
        hold_valid = Signal()
        i = self.i_bytes
        # Room for the next byte unless it would complete a beat while the hold register is
        # full: a beat taken by the engine and a new beat completing never meet in one cycle.
        m.d.comb += i.ready.eq((asm_pos != nbytes - 1) | ~hold_valid)
        push = Signal()
        m.d.comb += push.eq(i.valid & i.ready)
        with m.If(push):
            m.d.sync += [asm.eq(Cat(asm[8:], i.payload)),
                         asm_pos.eq(Mux(asm_pos == nbytes - 1, 0, asm_pos + 1))]
            with m.If(asm_pos == nbytes - 1):
                m.d.sync += [hold.eq(Cat(asm[8:], i.payload)), hold_valid.eq(1)]
        with m.If(engine.i_stream.valid & engine.i_stream.ready):
            m.d.sync += hold_valid.eq(0)
        hold_bytes = [hold[8 * k:8 * k + 8] for k in range(nbytes)]
        m.d.comb += engine.i_stream.valid.eq(hold_valid)
        for k in range(lanes):
            lane = (Cat(hold_bytes[2 * k], hold_bytes[2 * k + 1]) if bpw == 2
                    else hold_bytes[k][:width])
            m.d.comb += engine.i_stream.payload.data[k].eq(lane)
        m.d.comb += engine.i_stream.payload.lane_valid.eq(Cat(*hold_bytes[data_bytes:])[:lanes])

        # --- engine -> serialiser -> bytes ----------------------------------------------------
        ser = Signal(8 * nbytes)
        ser_left = Signal(range(nbytes + 1))
        ser_full = Signal()  # ser_left != 0, as a register (timing)
        o = self.o_bytes
        m.d.comb += [engine.o_stream.ready.eq(~ser_full), o.valid.eq(ser_full),
                     o.payload.eq(ser[:8])]
        pop = Signal()
        m.d.comb += pop.eq(o.valid & o.ready)
        with m.If(engine.o_stream.valid & ~ser_full):
            out = engine.o_stream.payload
            lanes_out = []
            for k in range(lanes):
                wide = Signal(signed(8 * bpw), name=f"out_lane{k}")
                m.d.comb += wide.eq(out.data[k])  # sign-extends 4-bit weights to a byte
                lanes_out.append(wide)
            m.d.sync += [ser.eq(Cat(*lanes_out, out.mask)), ser_left.eq(nbytes), ser_full.eq(1)]
        with m.Elif(pop):
            m.d.sync += [ser.eq(ser[8:]), ser_left.eq(ser_left - 1), ser_full.eq(ser_left != 1)]

        # --- pass checksums and cycle count -------------------------------------------------
        m.d.comb += [
            self.in_crc.eq(processor(m, "in_crc", CRC32, start=clear, valid=push,
                                     data=i.payload)),
            self.out_crc.eq(processor(m, "out_crc", CRC32, start=clear, valid=pop,
                                      data=o.payload)),
        ]
        since_first = Signal(32)
        started = Signal()
        with m.If(clear):
            m.d.sync += [started.eq(0), since_first.eq(0), self.cycles.eq(0)]
        with m.Else():
            with m.If(started | (engine.i_stream.valid & engine.i_stream.ready)):
                m.d.sync += [started.eq(1), since_first.eq(since_first + 1)]
            with m.If(engine.o_stream.valid & engine.o_stream.ready):
                m.d.sync += self.cycles.eq(since_first + 1)
        return m
