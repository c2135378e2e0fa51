"""The weight store behind the UART bridge: tensors sent once, read by every pass.

The host writes a tensor's beats (the wire layout of a tile) into the store with WS_DATA frames;
the threshold search (MH_RUN) and the masking pass (TE_RUN) then stream them out of the store
into their blocks as often as they need, and the masking pass answers the keep mask as bits.
So a tensor crosses the line once, and its mask comes back at one bit per weight.

A WS_DATA frame's bytes are written at the store's end but become part of it only once the
frame's CRC-16 checked out and it held whole beats (a damaged or cut frame leaves the store as
it was); WS_STATUS reports the beats held, so after a lost answer the host knows whether the
frame counted. WS_CONFIG empties the store.

Memory: ``lib.memory.Memory`` (block RAM on the ECP5, and in simulation); on the iCE40 UP5K the
store lives in the single-port SPRAM (two SB_SPRAM256KA: 64 KiB), leaving its 30 block RAMs to
the blocks.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract.block import COUNTER_WIDTH
from ..contract.protocol import (STORE_BIT, STORE_BYTES, WS_STATUS_FIELDS, Cmd, beat_bytes,
                                 data_bytes, pack_beats)

__all__ = ["StoreBlock", "WeightStore", "STORE_BYTES"]


class StoreBlock:
    """The store's entry in INFO's ``blocks`` bitmap (it is not a stream block)."""

    name = "weight_store"
    bridge_bit = STORE_BIT


class _ByteMemory(wiring.Component):
    """A byte-wide memory with one write port and one read port (data one clock after
    ``r_en``). Block RAM through ``lib.memory``, or the UP5K's SPRAM (one port: a write takes
    the clock, so reads wait while ``w_en``)."""

    def __init__(self, depth):
        self.depth = depth
        super().__init__({"w_addr": In(range(depth)), "w_data": In(8), "w_en": In(1),
                          "r_addr": In(range(depth)), "r_en": In(1), "r_data": Out(8)})

    def elaborate(self, platform):
        m = Module()
        if str(getattr(platform, "family", "")).lower() == "ice40" and self.depth == 65536:
            return self._spram(m)
        m.submodules.mem = mem = Memory(shape=8, depth=self.depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                     rp.addr.eq(self.r_addr), rp.en.eq(self.r_en), self.r_data.eq(rp.data)]
        return m

    def _spram(self, m):
        addr = Mux(self.w_en, self.w_addr, self.r_addr)
        lane = Signal()                  # the byte of the 16-bit word read last
        bank = Signal()                  # the SPRAM read last
        with m.If(self.r_en & ~self.w_en):
            m.d.sync += [lane.eq(self.r_addr[0]), bank.eq(self.r_addr[15])]
        outs = []
        for k in range(2):
            out = Signal(16, name=f"spram{k}_out")
            m.submodules[f"spram{k}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr[1:15], i_DATAIN=Cat(self.w_data, self.w_data),
                i_MASKWREN=Mux(addr[0], C(0b1100, 4), C(0b0011, 4)),
                i_WREN=self.w_en, i_CHIPSELECT=addr[15] == k, i_CLOCK=ClockSignal(),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=out)
            outs.append(out)
        word = Mux(bank, outs[1], outs[0])
        m.d.comb += self.r_data.eq(Mux(lane, word[8:], word[:8]))
        return m


class WeightStore(wiring.Component):
    """The store, as a bridge adapter (WS_CONFIG / WS_DATA / WS_STATUS) with a replay port.

    Attributes
    ----------
    i_bytes : In(stream.Signature(8))
        WS_DATA payload bytes (whole beats of the tile wire layout).
    o_bytes : Out(stream.Signature(8))
        Never valid: a WS_DATA answer is the status byte alone.
    frame_end, frame_ok : In(1)
        Strobe at the end of a DATA frame, and whether its CRC checked out.
    load : In(1)
        WS_CONFIG: empty the store.
    beats, capacity : Out(32)
        Beats held; beats the store can hold.
    replay_start : In(1)
        Strobe: stream beats ``replay_first`` .. ``+ replay_count`` out of ``r_bytes``.
    r_bytes : Out(stream.Signature(8))
        The replayed beats' bytes.
    replay_done : Out(1)
        No replay running.
    """

    block = StoreBlock
    CONFIG, DATA, STATUS, DENSE = Cmd.WS_CONFIG, Cmd.WS_DATA, Cmd.WS_STATUS, Cmd.WS_DENSE
    FINISH, finish_fields, RUN = None, (), None
    config_len = 0
    status_fields = WS_STATUS_FIELDS
    echo = False

    @classmethod
    def fits(cls, lanes, width):
        return True

    def __init__(self, *, lanes, width, store_bytes=STORE_BYTES):
        self.lanes, self.width = lanes, width
        self.beat_bytes = beat_bytes(lanes, width)
        #: a WS_DENSE beat: its weight bytes (the store writes the all-valid lane bitmap)
        self.data_bytes = data_bytes(lanes, width)
        self.store_bytes = store_bytes
        self.capacity_beats = store_bytes // self.beat_bytes
        super().__init__({
            "i_bytes": In(stream.Signature(8)),
            "o_bytes": Out(stream.Signature(8)),
            "frame_end": In(1), "frame_ok": In(1), "dense": In(1),
            "config": In(8), "load": In(1), "finish": In(1), "finished": Out(1),
            "beats": Out(COUNTER_WIDTH), "capacity": Out(COUNTER_WIDTH),
            "replay_start": In(1), "replay_first": In(16), "replay_count": In(16),
            "r_bytes": Out(stream.Signature(8)), "replay_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes, size = self.beat_bytes, self.capacity_beats * self.beat_bytes
        m.submodules.mem = mem = _ByteMemory(self.store_bytes)
        m.d.comb += [self.capacity.eq(self.capacity_beats), self.o_bytes.valid.eq(0),
                     self.finished.eq(1)]

        # --- writes: a frame's bytes go in at `end`, and count once its CRC checked out ------
        end = Signal(range(size + 1))         # bytes held (whole beats)
        at = Signal(range(size + 1))          # where the frame's next byte goes
        in_beat = Signal(range(nbytes))       # the frame's bytes modulo a beat
        frame_beats = Signal(COUNTER_WIDTH)   # whole beats the frame brought
        overflow = Signal()                   # the frame did not fit
        # A WS_DENSE beat brings its weight bytes only: the store writes the lane bitmap of a
        # beat whose every lane is valid after them, one byte a clock (`fill` bytes left).
        ndata = self.data_bytes
        bitmap = list(pack_beats([[0] * self.lanes], [[True] * self.lanes], self.width)[0,
                                                                                     ndata:])
        fill = Signal(range(len(bitmap) + 1))
        i = self.i_bytes
        byte = Signal(8)
        write = Signal()
        m.d.comb += [i.ready.eq(fill == 0),
                     byte.eq(Mux(fill != 0,
                                 Array(C(b, 8) for b in bitmap)[len(bitmap) - fill],
                                 i.payload)),
                     write.eq((i.valid & i.ready) | (fill != 0))]
        # The memory writes a clock later, from registers (timing: on the UP5K the write enable,
        # which the SPRAM's single port also steers its reads with, followed the payload's
        # handshake). A replay starts only after the frame has ended.
        m.d.sync += [mem.w_addr.eq(at), mem.w_data.eq(byte), mem.w_en.eq(write & (at != size))]
        beat_end = Signal()        # the byte written ends a beat
        m.d.comb += beat_end.eq(Mux(self.dense, fill == 1, in_beat == nbytes - 1))
        with m.If(write):
            with m.If(at == size):
                m.d.sync += overflow.eq(1)
            with m.Else():
                m.d.sync += at.eq(at + 1)
            with m.If(beat_end):
                m.d.sync += frame_beats.eq(frame_beats + 1)
        with m.If(i.valid & i.ready):
            with m.If(self.dense):
                m.d.sync += in_beat.eq(Mux(in_beat == ndata - 1, 0, in_beat + 1))
                with m.If(in_beat == ndata - 1):
                    m.d.sync += fill.eq(len(bitmap))
            with m.Else():
                m.d.sync += in_beat.eq(Mux(in_beat == nbytes - 1, 0, in_beat + 1))
        with m.Elif(fill != 0):
            m.d.sync += fill.eq(fill - 1)
        with m.If(self.load):
            m.d.sync += [end.eq(0), at.eq(0), in_beat.eq(0), frame_beats.eq(0),
                         overflow.eq(0), self.beats.eq(0), fill.eq(0)]
        with m.Elif(self.frame_end):
            # A frame counts if its CRC checked out, it held whole beats, and they all fit.
            with m.If(self.frame_ok & (in_beat == 0) & (fill == 0) & ~overflow):
                m.d.sync += [end.eq(at), self.beats.eq(self.beats + frame_beats)]
            with m.Else():
                m.d.sync += at.eq(end)
            m.d.sync += [in_beat.eq(0), frame_beats.eq(0), overflow.eq(0), fill.eq(0)]

        # --- replay: beats first .. first+count out as bytes --------------------------------
        addr = Signal(range(size + 1))
        stop = Signal(range(size + 1))
        running = Signal()
        out = self.r_bytes
        # The request is registered first, its addresses computed the clock after (timing: the
        # multiplications by the beat size do not follow the dispatcher's strobe).
        r_first = Signal(16)
        r_count = Signal(16)
        preparing = Signal()
        with m.If(self.replay_start):
            m.d.sync += [r_first.eq(self.replay_first), r_count.eq(self.replay_count),
                         preparing.eq(1)]
        with m.If(preparing):
            first = r_first * nbytes
            m.d.sync += [addr.eq(first), stop.eq(first + r_count * nbytes),
                         running.eq(r_count != 0), preparing.eq(0)]
        # Two stages (timing: the read data, muxed over the memory's blocks, goes into a
        # register before anything uses it): a read issued (its byte on the read port the next
        # clock, held there while no new read is enabled), then the output register.
        issued = Signal()
        advance = Signal()
        fetch = Signal()
        out_data = Signal(8)
        m.d.comb += [advance.eq(~out.valid | out.ready),
                     fetch.eq(running & (advance | ~issued) & ~mem.w_en),
                     mem.r_addr.eq(addr), mem.r_en.eq(fetch), out.payload.eq(out_data)]
        m.d.comb += self.replay_done.eq(~preparing & ~running & ~issued & ~out.valid)
        with m.If(advance):
            m.d.sync += [out.valid.eq(issued), out_data.eq(mem.r_data)]
        with m.If(fetch):
            m.d.sync += [addr.eq(addr + 1), issued.eq(1), running.eq(addr + 1 != stop)]
        with m.Elif(advance):
            m.d.sync += issued.eq(0)
        return m
