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
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract.block import COUNTER_WIDTH
from ..contract.magnitude_histogram import BLOCK as MAGNITUDE_HISTOGRAM
from ..contract.magnitude_histogram import histogram_bins
from ..contract.protocol import (CFG_LEN, MAX_PAYLOAD, MH_CFG_LEN, MH_SELECT_FIELDS,
                                 MH_STATUS_FIELDS, STATUS_FIELDS, Cmd, beat_bytes)
from ..contract.threshold_engine import BLOCK as THRESHOLD_ENGINE
from .crc import CRC32, processor
from .magnitude_histogram import MagnitudeHistogram
from .threshold_engine import ThresholdEngine

__all__ = ["ThresholdEngineAdapter", "MagnitudeHistogramAdapter"]


def _assemble_beats(m, i_bytes, sink, lanes, width, nbytes, hold_back=C(0)):
    """DATA payload bytes (the wire layout of a tile) into beats on ``sink`` (a block's tile
    stream). ``i_bytes.ready`` never waits on the block: a completed beat waits in a hold
    register (and is not offered while ``hold_back``). Returns the strobe of a byte taken (for
    the pass's CRC-32)."""
    bpw = 2 if width == 16 else 1
    data_bytes = lanes * bpw
    asm = Signal(8 * nbytes)
    asm_pos = Signal(range(nbytes))
    hold = Signal(8 * nbytes)
    hold_valid = Signal()
    # Room for the next byte unless it would complete a beat while the hold register is full:
    # a beat taken by the block and a new beat completing never meet in one cycle.
    m.d.comb += i_bytes.ready.eq((asm_pos != nbytes - 1) | ~hold_valid)
    push = Signal()
    m.d.comb += push.eq(i_bytes.valid & i_bytes.ready)
    with m.If(push):
        m.d.sync += [asm.eq(Cat(asm[8:], i_bytes.payload)),
                     asm_pos.eq(Mux(asm_pos == nbytes - 1, 0, asm_pos + 1))]
        with m.If(asm_pos == nbytes - 1):
            m.d.sync += [hold.eq(Cat(asm[8:], i_bytes.payload)), hold_valid.eq(1)]
    with m.If(sink.valid & sink.ready):
        m.d.sync += hold_valid.eq(0)
    hold_bytes = [hold[8 * k:8 * k + 8] for k in range(nbytes)]
    m.d.comb += sink.valid.eq(hold_valid & ~hold_back)
    for k in range(lanes):
        lane = (Cat(hold_bytes[2 * k], hold_bytes[2 * k + 1]) if bpw == 2
                else hold_bytes[k][:width])
        m.d.comb += sink.payload.data[k].eq(lane)
    m.d.comb += sink.payload.lane_valid.eq(Cat(*hold_bytes[data_bytes:])[:lanes])
    return push


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
    status_fields = STATUS_FIELDS
    #: no finishing command: STATUS reads the counters as they are
    FINISH, finish_fields = None, ()
    #: a DATA answer carries the output beats (as many bytes as the request) and the status byte
    echo = True

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
            "cycles": Out(32), "finish": In(1), "finished": Out(1),
            "frame_end": In(1), "frame_ok": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.finished.eq(1)      # STATUS reads the counters as they are
        lanes, width = self.lanes, self.width
        bpw = 2 if width == 16 else 1
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
        push = _assemble_beats(m, self.i_bytes, engine.i_stream, lanes, width, nbytes)

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
                                     data=self.i_bytes.payload)),
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


class MagnitudeHistogramAdapter(wiring.Component):
    """The magnitude histogram behind the bridge: the threshold search on the board.

    A pass is MH_CONFIG (binning and ``keep``; it also empties the bins, by a select walk if
    anything was counted since the last one), MH_DATA frames, and MH_SELECT (the select walk, if
    anything was counted or configured since the last one, and its results; asked again, it
    answers the same results). A DATA frame's bytes wait in a frame buffer and reach the unit
    only once the frame's CRC-16 checked out (a damaged or cut frame counts nothing), and its
    answer (the status byte alone) leaves only after that: so each frame counts once or not at
    all, and MH_STATUS (the beats counted and the CRC-32 of their bytes since MH_CONFIG) tells
    the host which, after a lost answer.

    Attributes
    ----------
    i_bytes : In(stream.Signature(8))
        MH_DATA payload bytes (the tile wire layout).
    o_bytes : Out(stream.Signature(8))
        Never valid: a DATA answer carries no beats.
    frame_end, frame_ok : In(1)
        Strobe at the end of a DATA frame, and whether its CRC checked out.
    config : In(8 * MH_CFG_LEN)
        shift u8, match_en u8, match_value u8, keep u32 (little-endian).
    load, finish : In(1)
        Strobes: take ``config`` (a new pass); run the select walk if needed.
    finished : Out(1)
        No frame being counted and no walk pending or running.
    beats, in_crc, found_bin, above, ties, counted, cycles : Out
        Beats counted and the CRC-32 of their bytes since MH_CONFIG; the select's results; the
        unit's clocks from the pass's first counted beat to the end of its walk.
    """

    block = MAGNITUDE_HISTOGRAM
    CONFIG, DATA, STATUS, FINISH = Cmd.MH_CONFIG, Cmd.MH_DATA, Cmd.MH_STATUS, Cmd.MH_SELECT
    config_len = MH_CFG_LEN
    status_fields = MH_STATUS_FIELDS
    finish_fields = MH_SELECT_FIELDS
    echo = False

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.beat_bytes = beat_bytes(lanes, width)
        self.unit = MagnitudeHistogram(lanes=lanes, width=width)
        bins = histogram_bins(width)
        super().__init__({
            "i_bytes": In(stream.Signature(8)),
            "o_bytes": Out(stream.Signature(8)),
            "frame_end": In(1), "frame_ok": In(1),
            "config": In(8 * MH_CFG_LEN),
            "load": In(1), "finish": In(1), "finished": Out(1),
            "beats": Out(COUNTER_WIDTH), "in_crc": Out(32),
            "found_bin": Out(bins.bit_length() - 1), "above": Out(COUNTER_WIDTH),
            "ties": Out(COUNTER_WIDTH), "counted": Out(COUNTER_WIDTH), "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        m.submodules.unit = unit = self.unit
        cfg = self.config
        with m.If(self.load):
            m.d.sync += [unit.shift.eq(cfg[0:8]), unit.match_en.eq(cfg[8]),
                         unit.match_value.eq(cfg[16:24]), unit.keep.eq(cfg[24:56])]
        m.d.comb += [self.found_bin.eq(unit.found_bin), self.above.eq(unit.above),
                     self.ties.eq(unit.ties), self.counted.eq(unit.counted)]

        # The dispatcher's strobes, registered (timing: its state decoding does not reach into
        # the unit's walk control).
        load, finish, frame_end, frame_ok = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [load.eq(self.load), finish.eq(self.finish), frame_end.eq(self.frame_end),
                     frame_ok.eq(self.frame_ok)]

        # --- the frame buffer: a frame's bytes, replayed into the unit once the frame is good --
        m.submodules.frame = frame = Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        wp = frame.write_port()
        rp = frame.read_port()
        written = Signal(range(MAX_PAYLOAD + 1))
        replaying = Signal()
        read = Signal(range(MAX_PAYLOAD + 1))
        replay = stream.Signature(8).create()     # replayed bytes, towards the assembler
        i = self.i_bytes
        m.d.comb += [i.ready.eq(~replaying & (written != MAX_PAYLOAD)),
                     wp.addr.eq(written), wp.data.eq(i.payload), wp.en.eq(i.valid & i.ready)]
        with m.If(i.valid & i.ready):
            m.d.sync += written.eq(written + 1)
        with m.If(frame_end):
            with m.If(frame_ok):
                m.d.sync += [replaying.eq(written != 0), read.eq(0)]
            with m.Else():
                m.d.sync += written.eq(0)          # a damaged or cut frame: nothing counts
        # The read port's data is the byte at the address of the last enabled read: fetch when
        # the output register is empty or being taken.
        fetch = Signal()
        m.d.comb += [fetch.eq(replaying & (read != written) & (~replay.valid | replay.ready)),
                     rp.addr.eq(read), rp.en.eq(fetch), replay.payload.eq(rp.data)]
        with m.If(fetch):
            m.d.sync += [read.eq(read + 1), replay.valid.eq(1)]
        with m.Elif(replay.ready):
            m.d.sync += replay.valid.eq(0)
        with m.If(replaying & (read == written) & ~replay.valid):
            m.d.sync += [replaying.eq(0), written.eq(0)]

        # Walks: a *clearing* walk after a load if anything was counted since the last walk
        # (an abandoned pass's counts; new beats wait until it is done), and a *result* walk on
        # finish if anything was counted or configured since the last result walk. A walk
        # starts once the unit is idle.
        counted_since = Signal()
        configured = Signal()
        want_clear = Signal()
        want_result = Signal()
        walking = Signal()
        clearing = Signal()                  # the walk running is a clearing walk
        push = _assemble_beats(m, replay, unit.i_stream, lanes, width, self.beat_bytes,
                               hold_back=want_clear | (walking & clearing))
        took = Signal()
        m.d.comb += took.eq(unit.i_stream.valid & unit.i_stream.ready)
        m.d.comb += self.in_crc.eq(processor(m, "in_crc", CRC32, start=load, valid=push,
                                             data=replay.payload))
        start_clear, start_result = Signal(), Signal()
        quiet = ~unit.busy & ~walking & ~unit.i_stream.valid & ~load & ~finish
        m.d.comb += [start_clear.eq(quiet & want_clear),
                     start_result.eq(quiet & ~want_clear & want_result & ~replaying),
                     unit.select.eq(start_clear | start_result),
                     self.finished.eq(~want_result & ~walking & ~replaying & ~finish
                                      & ~frame_end & ~unit.i_stream.valid)]
        with m.If(took):
            m.d.sync += counted_since.eq(1)
        with m.If(load):
            m.d.sync += [want_clear.eq(counted_since), configured.eq(1)]
        with m.Elif(finish):
            m.d.sync += want_result.eq(want_result | counted_since | configured)
        with m.Elif(start_clear):
            m.d.sync += [want_clear.eq(0), counted_since.eq(0), walking.eq(1), clearing.eq(1)]
        with m.Elif(start_result):
            m.d.sync += [want_result.eq(0), counted_since.eq(0), configured.eq(0),
                         walking.eq(1), clearing.eq(0)]
        with m.If(walking & unit.done):
            m.d.sync += walking.eq(0)

        beats = Signal(COUNTER_WIDTH)
        since_first = Signal(32)
        started = Signal()
        with m.If(load):
            m.d.sync += [beats.eq(0), started.eq(0), since_first.eq(0), self.cycles.eq(0)]
        with m.Else():
            with m.If(took):
                m.d.sync += beats.eq(beats + 1)
            with m.If(started | took):
                m.d.sync += [started.eq(1), since_first.eq(since_first + 1)]
            with m.If(walking & ~clearing & unit.done):
                m.d.sync += self.cycles.eq(since_first + 1)
        m.d.comb += self.beats.eq(beats)
        m.d.comb += self.o_bytes.valid.eq(0)
        return m
