"""The frames of the UART protocol (docs/uart_protocol.md) on byte streams, in both directions.

Frame (both directions)::

    SYNC | CMD | LEN_L | LEN_H | HCRC8(CMD, LEN) | PAYLOAD[LEN] | CRC16_L | CRC16_H

CRC16 covers CMD, LEN and PAYLOAD. :class:`ReceiveQueue` buffers the received bytes,
:class:`FrameParser` turns them into a header, the payload bytes and a trailer (the CRC verdict),
knowing nothing of what the commands mean; :class:`FrameEncoder` frames an answer. The command
codes and error codes are the contract's (:mod:`hwprune.contract.protocol`), as shaped enums.
"""

from amaranth import *
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract import protocol as wire
from ..contract.protocol import DEVICE_SYNC, HOST_SYNC
from .crc import CRC8, CRC16, processor
from .uart import RxByte

__all__ = ["Cmd", "ErrorCode", "Header", "PayloadByte", "Trailer", "AnswerFrame",
           "SkidQueue", "ReceiveQueue", "FrameParser", "FrameEncoder", "offer", "one_hot"]


def offer(m, stream, then):
    """In an FSM state: offer ``stream``'s beat; once it is taken, go to state ``then``."""
    m.d.comb += stream.valid.eq(1)
    with m.If(stream.ready):
        m.next = then


def one_hot(fsm):
    """Ask synthesis to encode ``fsm``'s state one-hot (timing: a state is one flip-flop to
    test, not a decode of the state number). Yosys's FSM pass skips a state register with an
    initial value, as Amaranth's are, unless its ``fsm_encoding`` attribute names one; the
    recoded register ignores that initial value, so the FSM must start from its domain's
    reset (the board tops hold the core in reset until the PLL locks)."""
    fsm.state.attrs["fsm_encoding"] = "one-hot"


def shaped_enum(py_enum, width, **extra):
    """An ``amaranth.lib.enum.IntEnum`` of ``width`` bits with the members of the contract's
    ``enum.IntEnum`` ``py_enum`` (and ``extra`` ones): one definition of the codes, a shaped
    enum for the RTL."""
    namespace = enum.EnumType.__prepare__(py_enum.__name__, (enum.IntEnum,), shape=width)
    for name, value in {**{m.name: m.value for m in py_enum}, **extra}.items():
        namespace[name] = value
    return enum.EnumType(py_enum.__name__, (enum.IntEnum,), namespace, shape=width)


#: Command and error codes as shaped enums (``amaranth.lib.enum``), from the contract's
#: (``ErrorCode.NONE``, 0: no error).
Cmd = shaped_enum(wire.Cmd, 8)
ErrorCode = shaped_enum(wire.ErrorCode, 8, NONE=0)

#: A received frame's header; ``error`` is not NONE when the header itself failed (its CRC, a
#: framing error, a timeout): such a frame has no payload or trailer.
Header = data.StructLayout({"cmd": 8, "length": 16, "error": ErrorCode})
#: One payload byte; ``timeout``: the host stopped, this is a zero byte filling the payload.
PayloadByte = data.StructLayout({"data": 8, "ferr": 1, "timeout": 1})
#: The end of a frame: the CRC-16 bytes matched, some byte had a framing error, the host
#: stopped sending (the idle timeout ended the frame).
Trailer = data.StructLayout({"crc_ok": 1, "ferr": 1, "timeout": 1})
#: An answer frame to send: command byte, payload length, and where the payload comes from
#: (``small``: the short-answer stream, else the data stream then the status byte).
AnswerFrame = data.StructLayout({"cmd": 8, "length": 16, "small": 1})


class SkidQueue(wiring.Component):
    """A two-entry queue of flip-flops on a stream (timing: a register stage in both
    directions). ``o.valid`` and ``i.ready`` come from its count alone, so neither side's
    handshake reaches the other through logic. Slots are written and read through pointers,
    so what the consumer takes never steers the slots' data inputs. ``empty``: no beat held.

    Parameters
    ----------
    shape : shape-like
        The payload's shape.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        slots = [Signal(self._shape, name=f"slot{k}") for k in range(2)]
        count = Signal(range(3))
        wr = Signal()
        rd = Signal()
        push = Signal()
        pop = Signal()
        m.d.comb += [self.i.ready.eq(count != 2), push.eq(self.i.valid & self.i.ready),
                     self.o.valid.eq(count != 0), pop.eq(self.o.valid & self.o.ready),
                     self.o.payload.eq(Mux(rd, slots[1], slots[0])),
                     self.empty.eq(count == 0)]
        with m.If(push):
            m.d.sync += wr.eq(~wr)
            with m.If(wr):
                m.d.sync += slots[1].eq(self.i.payload)
            with m.Else():
                m.d.sync += slots[0].eq(self.i.payload)
        with m.If(pop):
            m.d.sync += rd.eq(~rd)
        m.d.sync += count.eq(count + push - pop)
        return m


class ReceiveQueue(wiring.Component):
    """The received bytes' queue: a FIFO (the host's bytes wait here while the engine or the
    answer is behind), then a :class:`SkidQueue` (timing: the parser sees bytes from
    flip-flops, not from the FIFO's RAM output, and the FIFO's read enable depends on
    flip-flops only). ``dropped`` strobes when a byte arrives at a full FIFO (counted as an
    overflow)."""

    i_rx: In(stream.Signature(RxByte))
    o_bytes: Out(stream.Signature(RxByte))
    dropped: Out(1)

    def __init__(self, *, depth):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"the receive FIFO needs a depth of at least 2 bytes, not {depth!r}")
        self._depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = rx_fifo = fifo.SyncFIFOBuffered(width=9, depth=self._depth)
        m.submodules.queue = queue = SkidQueue(RxByte)
        m.d.comb += [
            rx_fifo.w_data.eq(Cat(self.i_rx.payload.data, self.i_rx.payload.ferr)),
            rx_fifo.w_en.eq(self.i_rx.valid),
            self.i_rx.ready.eq(rx_fifo.w_rdy),
            queue.i.payload.eq(rx_fifo.r_data),
            queue.i.valid.eq(rx_fifo.r_rdy),
            rx_fifo.r_en.eq(queue.i.ready),
            self.dropped.eq(self.i_rx.valid & ~rx_fifo.w_rdy),
        ]
        wiring.connect(m, queue.o, wiring.flipped(self.o_bytes))
        return m


class FrameParser(wiring.Component):
    """Received bytes -> frames: a header, then (if the dispatcher accepts it) the payload
    bytes, then the trailer.

    The parser hunts for ``SYNC``, reads the header and checks its CRC-8, and offers the header
    on ``o_header``. The dispatcher takes it with ``accept`` high (the payload comes out on
    ``o_payload``, exactly LEN bytes) or low (the payload is dropped here); either way the frame
    ends with one beat on ``o_trailer``: the CRC-16 verdict, framing errors seen, and whether the
    idle timeout ended the frame. A host that stops in the middle of an accepted payload gets
    its payload completed with zero bytes flagged ``timeout`` (a streaming block can finish its
    beat and the answer keeps its announced length), and no CRC is read.

    Parameters
    ----------
    timeout : int
        Clock cycles without a received byte, while a frame waits for one, after which the
        frame is ended.

    Attributes
    ----------
    framing : Out(1)
        Strobe: a byte with a framing error arrived outside any frame.
    busy : Out(1)
        A frame is being parsed.
    """

    i_bytes: In(stream.Signature(RxByte))
    o_header: Out(stream.Signature(Header))
    accept: In(1)
    o_payload: Out(stream.Signature(PayloadByte))
    o_trailer: Out(stream.Signature(Trailer))
    framing: Out(1)
    busy: Out(1)

    def __init__(self, *, timeout):
        if not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"the idle timeout must be at least 2 cycles, not {timeout!r}")
        self._timeout = timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        b = self.i_bytes
        take = Signal()
        m.d.comb += b.ready.eq(take)

        waiting = Signal()    # inside a frame, waiting for host bytes
        fill = Signal()       # the host stopped inside an accepted payload: feed zero bytes
        idle = Signal(range(self._timeout + 1))
        timed_out = Signal()  # a register (timing): the wide compare feeds only this flip-flop
        with m.If(~waiting | b.valid | fill):
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle == self._timeout - 1)]

        header = Signal(Header)
        trailer = Signal(Trailer)
        idx = Signal(2)
        start = Signal()             # the CRCs restart (a SYNC)
        hdr = Signal()               # a header byte (CRC-8 and CRC-16) is taken
        pay = Signal()               # a payload byte (CRC-16) is taken
        crc8 = processor(m, "crc8", CRC8, start=start, valid=hdr, data=b.payload.data)
        crc16 = processor(m, "crc16", CRC16, start=start, valid=hdr | pay, data=b.payload.data)
        left = Signal(17)
        last = Signal()      # left == 1, kept in a register beside left (timing)
        hcrc_ok = Signal()
        m.d.comb += [self.o_header.payload.eq(header), self.o_trailer.payload.eq(trailer)]

        def fail(code):
            return [header.error.eq(code), header.cmd.eq(0)]

        with m.FSM(name="parser") as fsm:
            with m.State("HUNT"):
                m.d.comb += take.eq(1)
                with m.If(b.valid):
                    with m.If(b.payload.ferr):
                        m.d.comb += self.framing.eq(1)
                    with m.Elif(b.payload.data == HOST_SYNC):
                        m.d.comb += start.eq(1)
                        m.d.sync += [idx.eq(0), header.error.eq(ErrorCode.NONE),
                                     trailer.eq(0), trailer.crc_ok.eq(1), fill.eq(0)]
                        m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [waiting.eq(1), take.eq(1)]
                with m.If(b.valid):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(b.payload.ferr):
                        m.d.sync += fail(ErrorCode.FRAMING)
                        m.next = "OFFER"
                    with m.Elif(idx == 3):
                        # Decided in CHECK, from a flip-flop (timing).
                        m.d.sync += hcrc_ok.eq(b.payload.data == crc8)
                        m.next = "CHECK"
                    with m.Else():
                        m.d.comb += hdr.eq(1)
                        with m.Switch(idx):
                            with m.Case(0):
                                m.d.sync += header.cmd.eq(b.payload.data)
                            with m.Case(1):
                                m.d.sync += header.length[:8].eq(b.payload.data)
                            with m.Case(2):
                                m.d.sync += header.length[8:].eq(b.payload.data)
                with m.Elif(timed_out):
                    m.d.sync += fail(ErrorCode.TIMEOUT)
                    m.next = "OFFER"
            with m.State("CHECK"):
                with m.If(~hcrc_ok):
                    m.d.sync += fail(ErrorCode.BAD_HEADER)
                m.next = "OFFER"
            with m.State("OFFER"):
                m.d.comb += self.o_header.valid.eq(1)
                with m.If(self.o_header.ready):
                    with m.If(header.error != ErrorCode.NONE):
                        m.next = "HUNT"
                    with m.Elif(self.accept & (header.length != 0)):
                        m.d.sync += [left.eq(header.length), last.eq(header.length == 1)]
                        m.next = "PAYLOAD"
                    with m.Elif(self.accept):
                        m.d.sync += [left.eq(2), last.eq(0)]
                        m.next = "TRAILER"
                    with m.Else():
                        m.d.sync += [left.eq(header.length + 2), last.eq(0)]
                        m.next = "DROP"
            with m.State("END"):
                # The frame's verdict (after TRAILER, DROP or a filled PAYLOAD).
                offer(m, self.o_trailer, "HUNT")
            with m.State("PAYLOAD"):
                o = self.o_payload
                m.d.comb += [waiting.eq(~fill), o.valid.eq(b.valid | fill),
                             o.payload.data.eq(Mux(fill, 0, b.payload.data)),
                             o.payload.ferr.eq(~fill & b.payload.ferr),
                             o.payload.timeout.eq(fill),
                             take.eq(o.ready & ~fill)]
                with m.If(o.valid & o.ready):
                    m.d.comb += pay.eq(~fill)
                    m.d.sync += [left.eq(left - 1), last.eq(left == 2),
                                 trailer.ferr.eq(trailer.ferr | o.payload.ferr)]
                    with m.If(last & fill):
                        m.next = "END"
                    with m.Elif(last):
                        m.d.sync += [left.eq(2), last.eq(0)]
                        m.next = "TRAILER"
                with m.Elif(timed_out):
                    m.d.sync += [fill.eq(1), trailer.timeout.eq(1)]
            with m.State("DROP"):
                # The payload and CRC of a frame the dispatcher refused.
                m.d.comb += [waiting.eq(1), take.eq(1)]
                with m.If(b.valid):
                    m.d.sync += [left.eq(left - 1), last.eq(left == 2)]
                    with m.If(last):
                        m.next = "END"
                with m.Elif(timed_out):
                    m.d.sync += trailer.timeout.eq(1)
                    m.next = "END"
            with m.State("TRAILER"):
                m.d.comb += [waiting.eq(1), take.eq(1)]
                with m.If(b.valid):
                    # The CRC arrives low byte first: the low byte, then (last) the high byte.
                    expected = Mux(last, crc16[8:], crc16[:8])
                    m.d.sync += [trailer.crc_ok.eq(trailer.crc_ok & (b.payload.data == expected)),
                                 trailer.ferr.eq(trailer.ferr | b.payload.ferr),
                                 left.eq(left - 1), last.eq(left == 2)]
                    with m.If(last):
                        m.next = "END"
                with m.Elif(timed_out):
                    m.d.sync += trailer.timeout.eq(1)
                    m.next = "END"
        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        one_hot(fsm)
        return m


class FrameEncoder(wiring.Component):
    """Answer frames onto the transmitter's byte stream: SYNC, CMD, LEN, the header's CRC-8, the
    payload, the CRC-16 (docs/uart_protocol.md).

    A beat on ``i_frame`` (taken only while idle) begins a frame; with ``small`` its payload
    comes from ``i_small`` (short answers), else from ``i_data`` (a DATA answer's bytes) and its
    last byte from ``i_status``. A byte is loaded only into an empty output register, so nothing
    waits on the transmitter's ready combinationally.
    """

    i_frame: In(stream.Signature(AnswerFrame))
    i_small: In(stream.Signature(8))
    i_data: In(stream.Signature(8))
    i_status: In(stream.Signature(8))
    o_tx: Out(stream.Signature(8))
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()
        f_cmd = Signal(8)
        f_len = Signal(16)
        f_small = Signal()
        f_left = Signal(16)
        f_last = Signal()    # f_left == 1 and f_left == 0, as registers beside f_left (timing)
        f_zero = Signal()
        # The payload's source, one-hot (timing: decided beside f_last, not from it): the short
        # answer's bytes, the streamed DATA bytes, or the DATA answer's last byte, the status.
        f_source = Signal(3)
        f_idx = Signal(3)
        f_start = Signal()           # the framer's CRCs restart
        f_hdr = Signal()             # a header byte (CRC-8 and CRC-16) goes out
        f_pay = Signal()             # a payload byte (CRC-16) goes out
        o_valid = Signal()
        o_data = Signal(8)
        # The CRCs take a byte from the output register the clock after it was loaded (timing:
        # the payload's source multiplexers end in that register, not in the CRC-16). The
        # next byte, or the CRC, is loaded two clocks after the last at the earliest (the
        # register must empty first), when the CRCs hold it.
        c_hdr = Signal()
        c_pay = Signal()
        m.d.sync += [c_hdr.eq(f_hdr), c_pay.eq(f_pay)]
        f_crc8 = processor(m, "f_crc8", CRC8, start=f_start, valid=c_hdr, data=o_data)
        f_crc16 = processor(m, "f_crc16", CRC16, start=f_start, valid=c_hdr | c_pay, data=o_data)
        m.d.comb += [self.o_tx.valid.eq(o_valid), self.o_tx.payload.eq(o_data)]
        # A byte is loaded only into an empty output register (one byte per two clocks at most,
        # far above any bit rate), so no load condition waits on the transmitter's ready.
        can_load = Signal()
        m.d.comb += can_load.eq(~o_valid)
        with m.If(self.o_tx.ready):
            m.d.sync += o_valid.eq(0)

        def emit(byte):
            return [o_valid.eq(1), o_data.eq(byte)]
        take = Signal()
        m.d.sync += take.eq(0)

        with m.FSM(name="framer") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i_frame.ready.eq(1)
                with m.If(self.i_frame.valid):
                    frame = self.i_frame.payload
                    n = frame.length
                    m.d.sync += [f_cmd.eq(frame.cmd), f_len.eq(n), f_small.eq(frame.small),
                                 f_left.eq(n), f_last.eq(n == 1), f_zero.eq(n == 0),
                                 f_idx.eq(0),
                                 f_source.eq(Mux(frame.small, 0b001,
                                                 Mux(n == 1, 0b100, 0b010)))]
                    m.d.comb += f_start.eq(1)
                    m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(can_load):
                    m.d.sync += f_idx.eq(f_idx + 1)
                    with m.Switch(f_idx):
                        with m.Case(0):
                            m.d.sync += emit(DEVICE_SYNC)
                        for idx, byte in ((1, f_cmd), (2, f_len[:8]), (3, f_len[8:])):
                            with m.Case(idx):
                                m.d.sync += emit(byte)
                                m.d.comb += f_hdr.eq(1)
                        with m.Case(4):
                            m.d.sync += emit(f_crc8)
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                # One of three sources: a short answer's bytes, the streamed DATA bytes, then
                # the DATA answer's status byte. A byte offered to an empty output register is
                # taken the clock after (`take`, a register: timing, the sources' valids reach
                # no counter's enable); a source's beat holds still until it is taken.
                inputs = (self.i_small, self.i_data, self.i_status)
                byte = Signal(8)
                have = Signal()
                with m.If(f_zero):
                    m.next = "CRC_LO"
                with m.Else():
                    m.d.comb += [byte.eq(Mux(f_source[0], self.i_small.payload,
                                             Mux(f_source[1], self.i_data.payload,
                                                 self.i_status.payload))),
                                 have.eq((f_source & Cat(s.valid for s in inputs)).any())]
                    m.d.sync += take.eq(can_load & have & ~take)
                    for k, s in enumerate(inputs):
                        m.d.comb += s.ready.eq(take & f_source[k])
                with m.If(take):
                    m.d.sync += emit(byte)
                    m.d.comb += f_pay.eq(1)
                    m.d.sync += [f_left.eq(f_left - 1),
                                 f_last.eq(f_left == 2), f_zero.eq(f_last)]
                    with m.If(~f_small & (f_left == 2)):
                        m.d.sync += f_source.eq(0b100)
            with m.State("CRC_LO"):
                with m.If(can_load):
                    m.d.sync += emit(f_crc16[:8])
                    m.next = "CRC_HI"
            with m.State("CRC_HI"):
                with m.If(can_load):
                    m.d.sync += emit(f_crc16[8:])
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        one_hot(fsm)
        return m
