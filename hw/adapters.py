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
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract.block import COUNTER_WIDTH
from ..contract.magnitude_histogram import BLOCK as MAGNITUDE_HISTOGRAM
from ..contract.magnitude_histogram import histogram_bins
from ..contract.channel_norms import BLOCK as CHANNEL_NORMS
from ..contract.net_engine import BLOCK as NET_ENGINE
from ..contract.net_engine import bridge_engine, geometry
from ..contract.nm_selector import BLOCK as NM_SELECTOR
from ..contract import sparse_mac as mac_protocol
from ..contract.sparse_mac import BLOCK as SPARSE_MAC
from ..contract.protocol import (CFG_LEN, CN_CFG_LEN, CN_STATUS_FIELDS, MAX_PAYLOAD, MH_CFG_LEN,
                                 MH_SELECT_FIELDS, MH_STATUS_FIELDS, NE_CFG_LEN,
                                 NE_STATUS_FIELDS, NM_CFG_LEN, NM_STATUS_FIELDS, SM_CFG_LEN,
                                 SM_STATUS_FIELDS, STATUS_FIELDS,
                                 Cmd, beat_bytes, mask_bytes, norm_bytes, program_beat_bytes,
                                 result_bytes)
from ..contract.threshold_engine import BLOCK as THRESHOLD_ENGINE
from .channel_norms import ChannelNorms, ChannelTileLayout
from .component import NO_RW_CHECK
from .crc import CRC32, processor
from .magnitude_histogram import MagnitudeHistogram
from .net_engine import NetEngine
from .nm_selector import NMSelector
from .sparse_mac import SparseMac, WeightBeatLayout
from .threshold_engine import ThresholdEngine

__all__ = ["ThresholdEngineAdapter", "MagnitudeHistogramAdapter", "NMSelectorAdapter",
           "ChannelNormsAdapter", "NetEngineAdapter", "SparseMacAdapter"]


def _byte_assembler(m, valid, byte, nbytes, taken, name="asm", hold=True):
    """Bytes (``byte`` on ``valid``) shifted into a beat of ``8 * nbytes`` bits, first byte
    lowest; a completed beat waits in a hold register until ``taken``. Returns ``(room, push,
    hold, hold_valid, pos)``: a byte can go in (unless it would complete a beat while the hold
    register is full: a beat taken and a new one completing never meet in one cycle), a byte
    went in, the beat, its valid flag, and the next byte's place in its beat.

    ``hold=False``: no hold register (``8 * nbytes`` flip-flops fewer); the completed beat waits
    in the shift register itself and no byte goes in until it is taken (one clock a beat where
    the sink takes it at once)."""
    asm = Signal(8 * nbytes, name=f"{name}_shift")
    pos = Signal(range(nbytes), name=f"{name}_pos")
    held = Signal(8 * nbytes, name=f"{name}_hold") if hold else asm
    hold_valid = Signal(name=f"{name}_hold_valid")
    room, push = Signal(name=f"{name}_room"), Signal(name=f"{name}_push")
    if hold:
        m.d.comb += room.eq((pos != nbytes - 1) | ~hold_valid)
    else:
        m.d.comb += room.eq(~hold_valid)
    m.d.comb += push.eq(valid & room)
    with m.If(push):
        m.d.sync += [asm.eq(Cat(asm[8:], byte)), pos.eq(Mux(pos == nbytes - 1, 0, pos + 1))]
        with m.If(pos == nbytes - 1):
            m.d.sync += hold_valid.eq(1)
            if hold:
                m.d.sync += held.eq(Cat(asm[8:], byte))
    with m.If(taken):
        m.d.sync += hold_valid.eq(0)
    return room, push, held, hold_valid, pos


def _assemble_beats(m, i_bytes, sink, lanes, width, nbytes, hold_back=C(0)):
    """DATA payload bytes (the wire layout of a tile) into beats on ``sink`` (a block's tile
    stream). ``i_bytes.ready`` never waits on the block: a completed beat waits in a hold
    register (and is not offered while ``hold_back``). Returns the strobe of a byte taken (for
    the pass's CRC-32)."""
    bpw = 2 if width == 16 else 1
    data_bytes = lanes * bpw
    taken = Signal()
    room, push, hold, hold_valid, _ = _byte_assembler(m, i_bytes.valid, i_bytes.payload,
                                                      nbytes, taken)
    m.d.comb += [i_bytes.ready.eq(room), taken.eq(sink.valid & sink.ready)]
    hold_bytes = [hold[8 * k:8 * k + 8] for k in range(nbytes)]
    m.d.comb += sink.valid.eq(hold_valid & ~hold_back)
    for k in range(lanes):
        lane = (Cat(hold_bytes[2 * k], hold_bytes[2 * k + 1]) if bpw == 2
                else hold_bytes[k][:width])
        m.d.comb += sink.payload.data[k].eq(lane)
    m.d.comb += sink.payload.lane_valid.eq(Cat(*hold_bytes[data_bytes:])[:lanes])
    return push


def _serialiser(m, o, nbytes, load, value, count=None):
    """Bytes out of a beat: ``value`` (``8 * nbytes`` bits) loaded on ``load`` while the shift
    register is empty, its first ``count`` bytes (default all) shifted out on ``o`` (``valid``
    from a register). Returns (room, pop): the register is empty, a byte was taken."""
    ser = Signal(8 * nbytes)
    ser_left = Signal(range(nbytes + 1))
    ser_full = Signal()  # ser_left != 0, as a register (timing)
    m.d.comb += [o.valid.eq(ser_full), o.payload.eq(ser[:8])]
    pop = Signal()
    m.d.comb += pop.eq(o.valid & o.ready)
    with m.If(load & ~ser_full):
        m.d.sync += [ser.eq(value), ser_left.eq(nbytes if count is None else count),
                     ser_full.eq(1)]
    with m.Elif(pop):
        m.d.sync += [ser.eq(ser[8:]), ser_left.eq(ser_left - 1), ser_full.eq(ser_left != 1)]
    return ~ser_full, pop


def _byte_select(m, o, nbytes, offer, value):
    """Bytes out of a beat that holds still while it is offered (``value``, ``8 * nbytes``
    bits, steady while ``offer``): each byte picked by its index, no shift register. Returns
    the strobe of the beat's last byte taken (the beat is done)."""
    pos = Signal(range(nbytes))
    done = Signal()
    m.d.comb += [o.valid.eq(offer), o.payload.eq(value.word_select(pos, 8)),
                 done.eq(o.valid & o.ready & (pos == nbytes - 1))]
    with m.If(o.valid & o.ready):
        m.d.sync += pos.eq(Mux(pos == nbytes - 1, 0, pos + 1))
    return done


def _run_source(m, i_bytes, r_bytes, run):
    """The bytes a block takes: a DATA frame's (``i_bytes``), or while ``run`` the weight
    store's replay (``r_bytes``). Returns the stream to assemble beats from."""
    src = stream.Signature(8).flip().create()
    m.d.comb += [src.valid.eq(Mux(run, r_bytes.valid, i_bytes.valid)),
                 src.payload.eq(Mux(run, r_bytes.payload, i_bytes.payload)),
                 i_bytes.ready.eq(src.ready & ~run), r_bytes.ready.eq(src.ready & run)]
    return src


def _masked_bytes(m, out, lanes, width):
    """A pruned tile (``data`` and ``mask`` of a block's output beat) in the wire layout."""
    bpw = 2 if width == 16 else 1
    lanes_out = []
    for k in range(lanes):
        wide = Signal(signed(8 * bpw), name=f"out_lane{k}")
        m.d.comb += wide.eq(out.data[k])  # sign-extends 4-bit weights to a byte
        lanes_out.append(wide)
    return Cat(*lanes_out, out.mask)


class _EchoAdapter(wiring.Component):
    """A block whose DATA answer carries one output beat per input beat (``echo``), behind the
    bridge: bytes -> beat assembler -> block -> serialiser -> bytes, the pass checksums and the
    pass's clock count. The block restarts on ``load`` (a CONFIG): it is held in reset for that
    clock, so a pass cut by a line fault leaves nothing behind in it. A subclass names the
    block's component (``_unit``), loads its configuration (``_configure``), sets what enters
    and leaves it (``_enter``, ``_leave``) and names its counters (``counters``).

    Attributes
    ----------
    i_bytes : In(stream.Signature(8))
        DATA payload bytes; ``ready`` never waits on the block (a completed beat waits in a
        hold register), so the parser's timing does not depend on the block's.
    o_bytes : Out(stream.Signature(8))
        The answer's bytes, one beat's worth per input beat, ``valid`` from a register.
    config : In(8 * config_len)
        The CONFIG payload.
    load : In(1)
        Strobe: take ``config``; one cycle later the pass starts (the block's counters zeroed,
        the checksums restarted).
    in_crc, out_crc, cycles : Out(32)
        The CRC-32 of the bytes taken in and sent out, and the block's clocks of the pass from
        its first input beat to its last output beat (inclusive).
    """

    #: a DATA answer carries the output beats (as many bytes as the request) and the status byte
    echo = True
    #: no finishing command: STATUS reads the counters as they are
    FINISH, finish_fields = None, ()
    #: the block's counters the STATUS answer reports (besides the checksums and cycles)
    counters = ()
    #: a RUN command (the block fed from the weight store), and its answer bytes per beat
    RUN, run_bytes = None, 0

    @classmethod
    def fits(cls, lanes, width):
        """Whether this adapter can hold its block at these parameters."""
        try:
            cls.block.check(lanes=lanes, width=width)
        except ValueError:
            return False
        return True

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.beat_bytes = beat_bytes(lanes, width)
        self.unit = self._unit(lanes, width)
        super().__init__({
            "i_bytes": In(stream.Signature(8)),
            "o_bytes": Out(stream.Signature(8)),
            "config": In(8 * self.config_len),
            "load": In(1),
            **{name: Out(COUNTER_WIDTH) for name in self.counters},
            "in_crc": Out(32), "out_crc": Out(32),
            "cycles": Out(32), "finish": In(1), "finished": Out(1),
            "frame_end": In(1), "frame_ok": In(1),
            "r_bytes": In(stream.Signature(8)), "run": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.finished.eq(1)      # STATUS reads the counters as they are
        lanes, width = self.lanes, self.width
        nbytes = self.beat_bytes
        # The block restarts on `load` (its pipeline emptied); the configuration registers load
        # on `load`, and the block samples them and its `clear` one cycle later.
        m.submodules.unit = unit = ResetInserter(self.load)(self.unit)
        clear = Signal()
        m.d.sync += clear.eq(self.load)
        self._configure(m, self.unit, self.config, self.load, clear)
        for name in self.counters:
            m.d.comb += getattr(self, name).eq(getattr(self.unit, name))

        # --- bytes -> beat assembler -> block ---------------------------------------------
        sink, hold_back = self._enter(m, self.unit, clear)
        source = _run_source(m, self.i_bytes, self.r_bytes, self.run if self.RUN else C(0))
        push = _assemble_beats(m, source, sink, lanes, width, nbytes, hold_back=hold_back)

        # --- block -> serialiser -> bytes -------------------------------------------------
        took_out = Signal()
        pop = self._leave(m, self.unit, self.o_bytes, nbytes, took_out)

        # --- pass checksums and cycle count -------------------------------------------------
        m.d.comb += [
            self.in_crc.eq(processor(m, "in_crc", CRC32, start=clear, valid=push,
                                     data=source.payload)),
            self.out_crc.eq(processor(m, "out_crc", CRC32, start=clear, valid=pop,
                                      data=self.o_bytes.payload)),
        ]
        since_first = Signal(32)
        started = Signal()
        with m.If(clear):
            m.d.sync += [started.eq(0), since_first.eq(0), self.cycles.eq(0)]
        with m.Else():
            with m.If(started | (sink.valid & sink.ready)):
                m.d.sync += [started.eq(1), since_first.eq(since_first + 1)]
            with m.If(took_out):
                m.d.sync += self.cycles.eq(since_first + 1)
        return m

    def _enter(self, m, unit, clear):
        """The block's input stream, and a signal that holds a completed beat back."""
        return unit.i_stream, C(0)

    def _leave(self, m, unit, o, nbytes, took_out):
        """Output beats as masked tiles (in a RUN, the keep mask alone); drive ``took_out``
        when the block hands one over."""
        out = unit.o_stream
        tile = _masked_bytes(m, out.payload, self.lanes, self.width)
        if self.RUN:
            # The mask bytes first, then the tile: one shift register serves both answers.
            value = Mux(self.run, Cat(out.payload.mask, C(0, 8 * nbytes))[:8 * nbytes], tile)
            count = Mux(self.run, C(self.run_bytes, range(nbytes + 1)), nbytes)
        else:
            value, count = tile, None
        room, pop = _serialiser(m, o, nbytes, out.valid, value, count)
        m.d.comb += [out.ready.eq(room), took_out.eq(out.valid & out.ready)]
        return pop


class ThresholdEngineAdapter(_EchoAdapter):
    """The threshold engine behind the bridge: TE_CONFIG (threshold u16, tie_budget u32,
    little-endian), TE_DATA (tiles in, pruned tiles out), TE_STATUS (``beats``, ``kept``,
    ``ties_left``, the checksums and the cycles)."""

    block = THRESHOLD_ENGINE
    CONFIG, DATA, STATUS, RUN = Cmd.TE_CONFIG, Cmd.TE_DATA, Cmd.TE_STATUS, Cmd.TE_RUN
    config_len = CFG_LEN
    status_fields = STATUS_FIELDS
    counters = ("beats", "kept", "ties_left")

    def __init__(self, *, lanes, width):
        #: a TE_RUN answer: the keep mask of each beat, as bits
        self.run_bytes = mask_bytes(lanes)
        super().__init__(lanes=lanes, width=width)

    @staticmethod
    def _unit(lanes, width):
        return ThresholdEngine(lanes=lanes, width=width)

    def _configure(self, m, unit, config, load, clear):
        threshold = Signal(self.width)
        tie_budget = Signal(32)
        with m.If(load):
            m.d.sync += [threshold.eq(config[:self.width]), tie_budget.eq(config[16:48])]
        m.d.comb += [unit.threshold.eq(threshold), unit.tie_budget.eq(tie_budget),
                     unit.clear.eq(clear)]


class NMSelectorAdapter(_EchoAdapter):
    """The N:M selector behind the bridge: NM_CONFIG (m u8, 4 or 8; n u8), NM_DATA (tiles in,
    pruned tiles out: the kept weights and the keep mask, as TE_DATA), NM_STATUS (``beats``,
    ``kept``, the checksums and the cycles). The compacted values and their in-group indices
    the selector also computes stay on the chip: the host derives them from the mask
    (:func:`hwprune.contract.nm_selector.nm_compact`)."""

    block = NM_SELECTOR
    CONFIG, DATA, STATUS = Cmd.NM_CONFIG, Cmd.NM_DATA, Cmd.NM_STATUS
    config_len = NM_CFG_LEN
    status_fields = NM_STATUS_FIELDS
    counters = ("beats", "kept")

    @staticmethod
    def _unit(lanes, width):
        return NMSelector(lanes=lanes, width=width)

    def _configure(self, m, unit, config, load, clear):
        m8 = Signal()
        n = Signal(4)
        with m.If(load):
            m.d.sync += [m8.eq(config[:8] == 8), n.eq(config[8:12])]
        m.d.comb += [unit.m8.eq(m8), unit.n.eq(n), unit.clear.eq(clear)]


class ChannelNormsAdapter(_EchoAdapter):
    """The channel norms behind the bridge: CN_CONFIG (beats_per_channel u32: every channel of
    the pass has this many beats; the adapter marks each channel's last beat), CN_DATA (tiles
    in; one answer slot of ``beat_bytes`` per input beat: in the slot of a channel's last beat
    its L1 then its L2 sum, little-endian, :func:`hwprune.contract.protocol.norm_bytes`, the
    other slots zero), CN_STATUS (``beats``, ``channels``, the checksums and the cycles).

    The block needs an answer slot wide enough for a channel's two sums (lanes >= 8 at
    width 8, see :meth:`fits`)."""

    block = CHANNEL_NORMS
    CONFIG, DATA, STATUS = Cmd.CN_CONFIG, Cmd.CN_DATA, Cmd.CN_STATUS
    config_len = CN_CFG_LEN
    status_fields = CN_STATUS_FIELDS
    counters = ("beats", "channels")
    #: slots in flight: beats inside the block (its pipeline) and one waiting
    SLOTS = 8

    @classmethod
    def fits(cls, lanes, width):
        return super().fits(lanes, width) and sum(norm_bytes(width)) <= beat_bytes(lanes, width)

    @staticmethod
    def _unit(lanes, width):
        return ChannelNorms(lanes=lanes, width=width)

    def _configure(self, m, unit, config, load, clear):
        self._per_channel = per_channel = Signal(32)
        with m.If(load):
            m.d.sync += per_channel.eq(config[:32])
        m.d.comb += unit.clear.eq(clear)

    def _enter(self, m, unit, clear):
        # The beats of a channel counted to mark its last; the same flag, in a FIFO, tells the
        # serialiser which answer slots wait for a norm.
        m.submodules.slots = slots = ResetInserter(self.load)(
            SyncFIFOBuffered(width=1, depth=self.SLOTS))
        self._slots = slots
        sink = stream.Signature(ChannelTileLayout(self.lanes, self.width)).flip().create()
        pos = Signal(32)
        last = Signal()
        m.d.comb += [last.eq(pos + 1 >= self._per_channel),
                     unit.i_stream.valid.eq(sink.valid & slots.w_rdy),
                     sink.ready.eq(unit.i_stream.ready & slots.w_rdy),
                     unit.i_stream.payload.data.eq(sink.payload.data),
                     unit.i_stream.payload.lane_valid.eq(sink.payload.lane_valid),
                     unit.i_stream.payload.last.eq(last),
                     slots.w_data.eq(last), slots.w_en.eq(sink.valid & sink.ready)]
        with m.If(clear):
            m.d.sync += pos.eq(0)
        with m.Elif(sink.valid & sink.ready):
            m.d.sync += pos.eq(Mux(last, 0, pos + 1))
        return sink, C(0)

    def _leave(self, m, unit, o, nbytes, took_out):
        slots, out = self._slots, unit.o_stream
        n1, _ = norm_bytes(self.width)
        # The norms wait in a two-entry FIFO: the unit's `ready` (which stalls its whole
        # pipeline) comes from the FIFO's level register, not from the serialiser's decision.
        norm_bits = 8 * n1 + len(out.payload.l2)
        m.submodules.norms = norms = ResetInserter(self.load)(
            SyncFIFOBuffered(width=norm_bits, depth=2))
        m.d.comb += [norms.w_data.eq(Cat(out.payload.l1, C(0, 8 * n1 - len(out.payload.l1)),
                                         out.payload.l2)),
                     norms.w_en.eq(out.valid), out.ready.eq(norms.w_rdy),
                     took_out.eq(out.valid & out.ready)]
        # The head slot: a zero slot leaves at once, a channel's slot with its norm.
        ready_slot = slots.r_rdy & (~slots.r_data | norms.r_rdy)
        room, pop = _serialiser(m, o, nbytes, ready_slot,
                                Mux(slots.r_data, Cat(norms.r_data, C(0, 8 * nbytes))[:8 * nbytes],
                                    0))
        take = Signal()
        m.d.comb += [take.eq(ready_slot & room), slots.r_en.eq(take),
                     norms.r_en.eq(take & slots.r_data)]
        return pop


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
    #: MH_RUN: count the store's beats (the answer is the status byte)
    RUN, run_bytes = Cmd.MH_RUN, 0
    config_len = MH_CFG_LEN
    status_fields = MH_STATUS_FIELDS
    finish_fields = MH_SELECT_FIELDS
    echo = False
    fits = classmethod(_EchoAdapter.fits.__func__)
    #: the bridge's parameter this adapter takes: its unit's counter banks (0: one a lane)
    bridge_params = ("hist_banks",)

    def __init__(self, *, lanes, width, hist_banks=0):
        self.lanes, self.width = lanes, width
        self.beat_bytes = beat_bytes(lanes, width)
        self.unit = MagnitudeHistogram(lanes=lanes, width=width, banks=hist_banks or None)
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
            "r_bytes": In(stream.Signature(8)), "run": In(1),
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
        # written while a frame comes in, read while it is replayed (never both: `replaying`)
        m.submodules.frame = frame = Memory(shape=8, depth=MAX_PAYLOAD, init=[],
                                            attrs=NO_RW_CHECK)
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
        # A frame's bytes from the frame buffer, or in an MH_RUN the store's (already checked).
        source = _run_source(m, replay, self.r_bytes, self.run)
        push = _assemble_beats(m, source, unit.i_stream, lanes, width, self.beat_bytes,
                               hold_back=want_clear | (walking & clearing))
        took = Signal()
        m.d.comb += took.eq(unit.i_stream.valid & unit.i_stream.ready)
        m.d.comb += self.in_crc.eq(processor(m, "in_crc", CRC32, start=load, valid=push,
                                             data=source.payload))
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


class _FrameBuffer:
    """A DATA frame held whole before anything acts on it: the buffer of the adapters that load
    a program and then run vectors through it (the network engine's, the sparse MAC's).

    A load frame (a DENSE command) is replayed into the block (``loading``) only once its CRC
    checked out; a damaged one is dropped. A run frame (a DATA command) is replayed
    (``running``) once complete, if its CRC checked out and ``ready_to_run``; either way it is
    answered (``answering``; ``zeros``: with zeros, nothing ran) in ``units_left`` units of
    ``unit_bytes``, which the adapter counts down as it answers. ``run_start`` strobes when a
    run frame's fate is decided (the adapter resets its per-frame positions then); ``replay``
    carries the frame's bytes, ``busy`` is set from the frame's end to its answer's."""

    def __init__(self, m, adapter, *, ready_to_run, unit_bytes):
        frame_end, frame_ok, dense = Signal(), Signal(), Signal()
        m.d.sync += [frame_end.eq(adapter.frame_end), frame_ok.eq(adapter.frame_ok),
                     dense.eq(adapter.dense)]
        # written while a frame comes in, read while it is replayed (never both: `busy`)
        m.submodules.frame = frame = Memory(shape=8, depth=MAX_PAYLOAD, init=[],
                                            attrs=NO_RW_CHECK)
        wp, rp = frame.write_port(), frame.read_port()
        written = Signal(range(MAX_PAYLOAD + 1))
        read = Signal(range(MAX_PAYLOAD + 1))
        loading = Signal()       # replaying a load frame into the program
        running = Signal()       # replaying a run frame into the block's input
        answering = Signal()     # a run frame's answer is being sent
        zeros = Signal()         # ... made of zeros (a damaged frame, or no program)
        words_left = Signal(range(MAX_PAYLOAD // unit_bytes + 1))
        run_start = Signal()
        i = adapter.i_bytes
        busy = loading | running | answering
        m.d.comb += [i.ready.eq(~busy & (written != MAX_PAYLOAD)),
                     wp.addr.eq(written), wp.data.eq(i.payload), wp.en.eq(i.valid & i.ready)]
        with m.If(i.valid & i.ready):
            m.d.sync += written.eq(written + 1)
        with m.If(frame_end):
            m.d.sync += read.eq(0)
            with m.If(dense):
                with m.If(frame_ok):
                    m.d.sync += loading.eq(written != 0)
                with m.Else():
                    m.d.sync += written.eq(0)          # a damaged frame: nothing is written
            with m.Else():
                good = frame_ok & ready_to_run
                m.d.comb += run_start.eq(1)
                m.d.sync += [running.eq(good & (written != 0)), answering.eq(written != 0),
                             zeros.eq(~good),
                             words_left.eq(written >> (unit_bytes.bit_length() - 1))]

        replay = stream.Signature(8).create()
        fetch = Signal()
        m.d.comb += [fetch.eq((loading | running) & (read != written)
                              & (~replay.valid | replay.ready)),
                     rp.addr.eq(read), rp.en.eq(fetch), replay.payload.eq(rp.data)]
        with m.If(fetch):
            m.d.sync += [read.eq(read + 1), replay.valid.eq(1)]
        with m.Elif(replay.ready):
            m.d.sync += replay.valid.eq(0)
        with m.If((loading | running) & (read == written) & ~replay.valid):
            m.d.sync += [loading.eq(0), running.eq(0)]
            with m.If(loading):
                m.d.sync += written.eq(0)
        with m.If(answering & (words_left == 0) & ~running):
            m.d.sync += [answering.eq(0), written.eq(0)]

        self.frame_end, self.replay, self.run_start = frame_end, replay, run_start
        self.loading, self.running, self.answering, self.zeros = loading, running, answering, zeros
        self.units_left, self.busy, self.written = words_left, busy, written


class NetEngineAdapter(wiring.Component):
    """The network engine behind the bridge: a deployed network on the board.

    NE_CONFIG (:data:`~hwprune.contract.protocol.NE_CFG_LEN`: the run's geometry, ``skip_zero``,
    and ``new_program``, which makes the engine forget its program and zero its counters),
    NE_LOAD frames (program beats, the engine's program layout packed into
    ``data_bytes`` each), NE_RUN frames (vector slots of ``slot`` result words: a vector's input
    words, ``lanes`` bytes each, at the slot's start, the rest ignored; the answer holds, per
    slot, the vector's result words, ``lanes`` little-endian 32-bit values each, then zero
    words), NE_STATUS (the program flag, the program beats committed and their CRC-32, the
    engine's counters).

    Both kinds of frame wait in a frame buffer: an NE_LOAD frame reaches the engine only once
    its CRC checked out (writing the same beats again is harmless, so a frame whose answer was
    lost can be sent again); an NE_RUN frame runs once it is complete, and a damaged one (or one
    that arrives while no program is loaded) is answered with zeros without running.
    """

    block = NET_ENGINE
    CONFIG, DATA, STATUS, DENSE = Cmd.NE_CONFIG, Cmd.NE_RUN, Cmd.NE_STATUS, Cmd.NE_LOAD
    FINISH, finish_fields = None, ()
    config_len = NE_CFG_LEN
    status_fields = NE_STATUS_FIELDS
    #: an NE_RUN answer has the request's bytes; an NE_LOAD answer the status byte alone
    echo, dense_echo = True, False
    #: only in a bitstream that names it (the deploy bitstreams), not in every one it fits
    default = False

    @classmethod
    def fits(cls, lanes, width):
        try:
            params = bridge_engine(lanes, width)
        except ValueError:
            return False
        return geometry(**params).acc_width <= 32      # results travel as 32-bit values

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.params = bridge_engine(lanes, width)
        depths = {k: v for k, v in self.params.items() if k not in ("lanes", "width")}
        self.beat_bytes = result_bytes(lanes)                       # the NE_RUN unit
        self.data_bytes = program_beat_bytes(lanes, width, **depths)  # the NE_LOAD unit
        self.unit = NetEngine(**self.params)
        super().__init__({
            "i_bytes": In(stream.Signature(8)),
            "o_bytes": Out(stream.Signature(8)),
            "config": In(8 * NE_CFG_LEN),
            "load": In(1), "finish": In(1), "finished": Out(1),
            "frame_end": In(1), "frame_ok": In(1), "dense": In(1),
            "program": Out(1), "program_beats": Out(COUNTER_WIDTH), "program_crc": Out(32),
            "vectors": Out(COUNTER_WIDTH), "compute": Out(COUNTER_WIDTH),
            "beats": Out(COUNTER_WIDTH), "columns": Out(COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        m.submodules.unit = unit = self.unit
        for name in ("program", "vectors", "compute", "beats", "columns"):
            m.d.comb += getattr(self, name).eq(getattr(unit, name))

        # --- configuration -------------------------------------------------------------------
        cfg = self.config
        in_words, out_words, slot = Signal(16), Signal(16), Signal(16)
        skip = Signal()
        new_program = Signal()
        with m.If(self.load):
            m.d.sync += [in_words.eq(cfg[0:16]), out_words.eq(cfg[16:32]), slot.eq(cfg[32:48]),
                         skip.eq(cfg[56])]
        m.d.sync += new_program.eq(self.load & cfg[48])
        m.d.comb += [unit.skip_zero.eq(skip), unit.clear.eq(new_program)]

        shift = self.beat_bytes.bit_length() - 1
        vbyte = Signal(16 + shift)           # an NE_RUN byte's place in its vector slot
        xpos = Signal(range(lanes))          # ... in its input word
        oword = Signal(16)                   # an answer word's place in its slot

        # --- the frame buffer ----------------------------------------------------------------
        fb = _FrameBuffer(m, self, ready_to_run=unit.program, unit_bytes=self.beat_bytes)
        replay, loading, running, answering = fb.replay, fb.loading, fb.running, fb.answering
        zeros, words_left, busy, written = fb.zeros, fb.units_left, fb.busy, fb.written
        with m.If(fb.run_start):
            # every NE_RUN frame starts at a vector slot's first byte
            m.d.sync += [vbyte.eq(0), xpos.eq(0), oword.eq(0)]

        # --- NE_LOAD: bytes -> program beats -------------------------------------------------
        p = unit.p_stream
        p_taken = Signal()
        _, to_p, hold, hold_valid, asm_pos = _byte_assembler(
            m, replay.valid & loading, replay.payload, self.data_bytes, p_taken, "program",
            hold=False)
        m.d.comb += [p_taken.eq(p.valid & p.ready), p.valid.eq(hold_valid),
                     p.payload.eq(hold[:len(Value.cast(p.payload))])]
        program_beats = Signal(COUNTER_WIDTH)
        with m.If(new_program):
            m.d.sync += [program_beats.eq(0), asm_pos.eq(0), hold_valid.eq(0)]
        with m.Elif(p.valid & p.ready):
            m.d.sync += program_beats.eq(program_beats + 1)
        m.d.comb += [self.program_beats.eq(program_beats),
                     self.program_crc.eq(processor(m, "program_crc", CRC32, start=new_program,
                                                   valid=to_p, data=replay.payload))]

        # --- NE_RUN: bytes -> input words; result words -> bytes -----------------------------
        x = unit.x_stream
        slot_bytes = Signal(16 + shift)
        in_bytes = Signal(16 + lanes.bit_length())
        m.d.comb += [slot_bytes.eq(slot << shift), in_bytes.eq(in_words * lanes)]
        # an input word is assembled in place and offered from there (no byte goes into it
        # until the engine took it)
        xhold = Signal(8 * lanes)
        xhold_valid, xhold_last = Signal(), Signal()
        is_input = Signal()
        to_x = Signal()
        m.d.comb += [is_input.eq(vbyte < in_bytes),
                     to_x.eq(replay.valid & running & (~is_input | ~xhold_valid))]
        with m.If(to_x):
            m.d.sync += vbyte.eq(Mux(vbyte == slot_bytes - 1, 0, vbyte + 1))
            with m.If(is_input):
                m.d.sync += [xhold.eq(Cat(xhold[8:], replay.payload)),
                             xpos.eq(Mux(xpos == lanes - 1, 0, xpos + 1))]
                with m.If(xpos == lanes - 1):
                    m.d.sync += [xhold_valid.eq(1), xhold_last.eq(vbyte == in_bytes - 1)]
        with m.If(x.valid & x.ready):
            m.d.sync += xhold_valid.eq(0)
        m.d.comb += [x.valid.eq(xhold_valid), x.payload.last.eq(xhold_last)]
        for k in range(lanes):
            m.d.comb += x.payload.data[k].eq(xhold[8 * k:8 * k + width])
        with m.If(self.load):
            m.d.sync += [vbyte.eq(0), xpos.eq(0), xhold_valid.eq(0)]
        m.d.comb += replay.ready.eq(to_p | to_x)

        # The answer: per slot, the vector's result words from the engine, then zero words.
        y = unit.y_stream
        from_y = Signal()
        m.d.comb += from_y.eq(~zeros & (oword < out_words))
        values = []
        for k in range(lanes):
            v = Signal(signed(32), name=f"result{k}")
            m.d.comb += v.eq(Mux(y.payload.valid[k], y.payload.value[k], 0))
            values.append(v)
        word = Mux(from_y, Cat(*values), 0)
        offer_word = Signal()
        m.d.comb += offer_word.eq(answering & (words_left != 0) & (~from_y | y.valid))
        took = Signal()
        m.d.comb += [took.eq(_byte_select(m, self.o_bytes, self.beat_bytes, offer_word, word)),
                     y.ready.eq(took & from_y)]
        with m.If(took):
            m.d.sync += [words_left.eq(words_left - 1),
                         oword.eq(Mux(oword == slot - 1, 0, oword + 1))]
        with m.If(self.load):
            m.d.sync += oword.eq(0)

        m.d.comb += self.finished.eq(~busy & ~fb.frame_end & ~self.frame_end & ~hold_valid
                                     & ~xhold_valid)
        return m


class SparseMacAdapter(wiring.Component):
    """The sparse MAC behind the bridge: ``hwprune.run`` with a board's layers on the chip.

    SM_CONFIG (:data:`~hwprune.contract.protocol.SM_CFG_LEN`: activation beats and results a
    vector, the vector slot, the weight format, and ``new_program``, which makes the adapter
    forget its weights and zero its counters), SM_LOAD frames (compressed weight beats, the
    unit's weight beat layout packed into ``data_bytes`` each, written into the adapter's weight
    memory in order), SM_RUN frames (vector slots of ``slot`` 32-bit values: a vector's
    activations, a signed byte each, at the slot's start, the rest ignored; the answer holds,
    per slot, the vector's results as little-endian 32-bit values, then zeros), SM_STATUS (the
    weights-loaded flag, the weight beats committed and their CRC-32, vectors run and the
    unit's clocks).

    The weights cross the line once: for every vector of a run frame, the adapter replays the
    weight memory from its first beat to the one marked ``final`` into the unit, while the next
    vector's activations load into the unit's other bank. Both kinds of frame wait in a frame
    buffer (:class:`_FrameBuffer`): an SM_LOAD frame is written only once its CRC checked out
    (writing the same beats again is harmless); a damaged SM_RUN frame, or one that arrives
    while no weights are loaded, is answered with zeros without running.
    """

    block = SPARSE_MAC
    CONFIG, DATA, STATUS, DENSE = Cmd.SM_CONFIG, Cmd.SM_RUN, Cmd.SM_STATUS, Cmd.SM_LOAD
    FINISH, finish_fields = None, ()
    config_len = SM_CFG_LEN
    status_fields = SM_STATUS_FIELDS
    #: an SM_RUN answer has the request's bytes; an SM_LOAD answer the status byte alone
    echo, dense_echo = True, False
    #: only in a bitstream that names it (the ULX3S's default), not in every one it fits
    default = False
    #: the SM_RUN unit: one 32-bit value
    beat_bytes = mac_protocol.RESULT_BYTES

    @classmethod
    def fits(cls, lanes, width):
        try:
            mac_protocol.bridge_mac(lanes, width)
        except ValueError:
            return False
        return True

    def __init__(self, *, lanes, width):
        self.lanes, self.width = lanes, width
        self.params, self.max_beats = mac_protocol.bridge_mac(lanes, width)
        self.data_bytes = mac_protocol.program_beat_bytes(lanes, width)   # the SM_LOAD unit
        self.unit = SparseMac(**self.params)
        super().__init__({
            "i_bytes": In(stream.Signature(8)),
            "o_bytes": Out(stream.Signature(8)),
            "config": In(8 * SM_CFG_LEN),
            "load": In(1), "finish": In(1), "finished": Out(1),
            "frame_end": In(1), "frame_ok": In(1), "dense": In(1),
            "program": Out(1), "program_beats": Out(COUNTER_WIDTH), "program_crc": Out(32),
            "vectors": Out(COUNTER_WIDTH), "cycles": Out(COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, act_width = self.lanes, self.params["act_width"]
        m.submodules.unit = unit = self.unit
        beat_shape = WeightBeatLayout(lanes, self.width)
        beat_bits = Shape.cast(beat_shape).width

        # --- configuration -------------------------------------------------------------------
        cfg = self.config
        act_beats, rows, slot = Signal(16), Signal(16), Signal(16)
        form = Signal(8)
        new_program = Signal()
        with m.If(self.load):
            m.d.sync += [act_beats.eq(cfg[0:16]), rows.eq(cfg[16:32]), slot.eq(cfg[32:48]),
                         form.eq(cfg[56:64])]
        m.d.sync += new_program.eq(self.load & cfg[48])
        m.d.comb += [unit.fmt.eq(form[0]), unit.nm_n.eq(form[1:4]), unit.nm_m_log2.eq(form[4:6])]

        # --- the weight memory ---------------------------------------------------------------
        m.submodules.weights = weights = Memory(shape=beat_bits, depth=self.max_beats, init=[],
                                                attrs=NO_RW_CHECK)
        w_wr, w_rd = weights.write_port(), weights.read_port()
        program = Signal()                            # a beat with `final` is committed
        program_beats = Signal(COUNTER_WIDTH)
        last_beat = Signal(range(self.max_beats))     # the `final` beat's address

        # --- the frame buffer ----------------------------------------------------------------
        # A run frame runs only if it holds whole vector slots and the configuration makes sense
        # (a vector's activations inside its slot and the unit's rows, its results inside it):
        # anything else would leave the unit waiting for a vector that never completes. It is
        # answered with zeros instead, and the host's vector count check fails.
        slot_bytes = Signal(16 + 2)
        act_bytes = Signal(16 + lanes.bit_length())
        m.d.comb += [slot_bytes.eq(slot << 2), act_bytes.eq(act_beats * lanes)]
        rx_pos = Signal(16 + 2)       # a received byte's place in its vector slot
        i = self.i_bytes
        with m.If(i.valid & i.ready):
            m.d.sync += rx_pos.eq(Mux(rx_pos == slot_bytes - 1, 0, rx_pos + 1))
        with m.If(self.load | self.frame_end):
            m.d.sync += rx_pos.eq(0)
        sane = Signal()
        m.d.sync += sane.eq((act_beats != 0) & (act_beats <= self.params["max_k"] // lanes)
                            & (act_bytes <= slot_bytes) & (rows != 0) & (rows <= slot))
        whole = Signal()
        with m.If(self.frame_end):
            m.d.sync += whole.eq(rx_pos == 0)
        fb = _FrameBuffer(m, self, ready_to_run=program & sane & whole,
                          unit_bytes=self.beat_bytes)
        replay = fb.replay
        abyte = Signal(16 + 2)        # an SM_RUN byte's place in its vector slot
        apos = Signal(range(lanes))   # ... in its activation beat
        ovalue = Signal(16)           # an answer value's place in its slot
        with m.If(fb.run_start):
            m.d.sync += [abyte.eq(0), apos.eq(0), ovalue.eq(0)]

        # --- SM_LOAD: bytes -> weight beats --------------------------------------------------
        w_taken = Signal()                            # a completed beat is written at once
        _, to_w, hold, hold_valid, asm_pos = _byte_assembler(
            m, replay.valid & fb.loading, replay.payload, self.data_bytes, w_taken, "weights",
            hold=False)
        m.d.comb += w_taken.eq(hold_valid)
        beat = Value.cast(hold[:beat_bits])
        room = program_beats < self.max_beats         # beats past the memory are not kept
        final = beat_shape(beat).final
        m.d.comb += [w_wr.addr.eq(program_beats), w_wr.data.eq(beat),
                     w_wr.en.eq(hold_valid & room)]
        with m.If(new_program):
            m.d.sync += [program_beats.eq(0), program.eq(0), asm_pos.eq(0), hold_valid.eq(0)]
        with m.Elif(hold_valid & room):
            m.d.sync += program_beats.eq(program_beats + 1)
            with m.If(final):
                m.d.sync += [program.eq(1), last_beat.eq(program_beats)]
        m.d.comb += [self.program.eq(program), self.program_beats.eq(program_beats),
                     self.program_crc.eq(processor(m, "program_crc", CRC32, start=new_program,
                                                   valid=to_w, data=replay.payload))]

        # --- SM_RUN: bytes -> activation beats -----------------------------------------------
        a = unit.a_stream
        # an activation beat is assembled in place and offered from there
        ahold = Signal(8 * lanes)
        ahold_valid, ahold_last = Signal(), Signal()
        is_act, to_a = Signal(), Signal()
        m.d.comb += [is_act.eq(abyte < act_bytes),
                     to_a.eq(replay.valid & fb.running & (~is_act | ~ahold_valid))]
        with m.If(to_a):
            m.d.sync += abyte.eq(Mux(abyte == slot_bytes - 1, 0, abyte + 1))
            with m.If(is_act):
                m.d.sync += [ahold.eq(Cat(ahold[8:], replay.payload)),
                             apos.eq(Mux(apos == lanes - 1, 0, apos + 1))]
                with m.If(apos == lanes - 1):
                    m.d.sync += [ahold_valid.eq(1), ahold_last.eq(abyte == act_bytes - 1)]
        a_fire = Signal()
        m.d.comb += a_fire.eq(a.valid & a.ready)
        with m.If(a_fire):
            m.d.sync += ahold_valid.eq(0)
        m.d.comb += [a.valid.eq(ahold_valid), a.payload.last.eq(ahold_last)]
        for k in range(lanes):
            m.d.comb += a.payload.data[k].eq(ahold[8 * k:8 * k + act_width])
        with m.If(self.load):
            m.d.sync += [abyte.eq(0), apos.eq(0), ahold_valid.eq(0)]
        m.d.comb += replay.ready.eq(to_w | to_a)

        # --- the weights, replayed once for every vector loaded ------------------------------
        w = unit.w_stream
        todo = Signal(range(MAX_PAYLOAD + 1))    # vectors loaded whose weights are not issued
        waddr = Signal(range(self.max_beats))
        w_valid = Signal()
        issue = Signal()
        m.d.comb += [issue.eq((todo != 0) & (~w_valid | w.ready)),
                     w_rd.addr.eq(waddr), w_rd.en.eq(issue),
                     w.valid.eq(w_valid), w.payload.eq(w_rd.data)]
        vector_issued = Signal()
        m.d.comb += vector_issued.eq(issue & (waddr == last_beat))
        with m.If(issue):
            m.d.sync += [w_valid.eq(1), waddr.eq(Mux(vector_issued, 0, waddr + 1))]
        with m.Elif(w.ready):
            m.d.sync += w_valid.eq(0)
        m.d.sync += todo.eq(todo + (a_fire & a.payload.last) - vector_issued)
        with m.If(self.load):
            m.d.sync += [todo.eq(0), waddr.eq(0), w_valid.eq(0)]

        # --- results -> bytes ----------------------------------------------------------------
        # The valid results of a result beat go into a FIFO one a clock; it holds a whole
        # frame's (an answer has at most MAX_PAYLOAD / 4 values), so the line's pace never
        # holds the unit up.
        o = unit.o_stream
        r_value = Signal.like(o.payload.value)
        r_valid = Signal(lanes)
        m.d.comb += o.ready.eq(r_valid == 0)
        sel = Signal(range(lanes))
        for k in reversed(range(lanes)):             # the lowest valid slot
            with m.If(r_valid[k]):
                m.d.comb += sel.eq(k)
        m.submodules.results = results = SyncFIFOBuffered(
            width=32, depth=MAX_PAYLOAD // self.beat_bytes)
        m.d.comb += [results.w_data.eq(r_value[sel]), results.w_en.eq(r_valid.any())]
        with m.If(o.valid & o.ready):
            m.d.sync += [r_value.eq(o.payload.value), r_valid.eq(o.payload.valid)]
        with m.Elif(results.w_en & results.w_rdy):
            m.d.sync += r_valid.eq(r_valid & ~(C(1, lanes) << sel))
        from_o = Signal()
        m.d.comb += from_o.eq(~fb.zeros & (ovalue < rows))
        offer = Signal()
        m.d.comb += offer.eq(fb.answering & (fb.units_left != 0) & (~from_o | results.r_rdy))
        # the value goes into a shift register, its bytes out of it (timing: the FIFO's block
        # RAM output, the byte's pick, the dispatcher's multiplexer and the frame encoder's
        # CRC-16 were one path of 18.1 ns, the ULX3S top's critical one)
        empty, _ = _serialiser(m, self.o_bytes, self.beat_bytes, offer,
                               Mux(from_o, results.r_data, 0))
        took = Signal()
        m.d.comb += [took.eq(offer & empty), results.r_en.eq(took & from_o)]
        with m.If(took):
            m.d.sync += [fb.units_left.eq(fb.units_left - 1),
                         ovalue.eq(Mux(ovalue == slot - 1, 0, ovalue + 1))]
        with m.If(self.load):
            m.d.sync += [ovalue.eq(0), r_valid.eq(0)]

        # --- counters ------------------------------------------------------------------------
        # cycles: clocks in which the unit holds work: a weight beat offered, a beat inside its
        # pipeline, or a result it gave not yet in the FIFO (not the clocks it waits for the
        # next vector's activations from the frame buffer, nor for the line)
        vectors, cycles = Signal(COUNTER_WIDTH), Signal(COUNTER_WIDTH)
        inflight = Signal(mac_protocol.PIPELINE_LATENCY)
        m.d.sync += inflight.eq(Cat(w.valid & w.ready, inflight[:-1]))
        with m.If(w.valid | inflight.any() | o.valid | r_valid.any()):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(a_fire & a.payload.last):
            m.d.sync += vectors.eq(vectors + 1)
        with m.If(new_program):
            m.d.sync += [vectors.eq(0), cycles.eq(0)]
        m.d.comb += [self.vectors.eq(vectors), self.cycles.eq(cycles)]

        m.d.comb += self.finished.eq(~fb.busy & ~fb.frame_end & ~self.frame_end & ~hold_valid
                                     & ~ahold_valid & empty)
        return m
