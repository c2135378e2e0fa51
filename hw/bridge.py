"""UART command bridge: the framed host protocol of docs/uart_protocol.md in front of the engines.

:class:`CommandBridge` works on byte streams (so cocotb can drive it with random stalls at the
byte level); :class:`UARTCore` puts the UART receiver and transmitter around it and is what the
board top (:mod:`hwprune.hw.boards`) instantiates and what the ``uart-sim`` backend verilates.

Frame (both directions)::

    SYNC | CMD | LEN_L | LEN_H | HCRC8(CMD, LEN) | PAYLOAD[LEN] | CRC16_L | CRC16_H

CRC16 covers CMD, LEN and PAYLOAD. The host sends ``SYNC = 0xA5``, the device answers with
``SYNC = 0x5A`` and ``CMD | 0x80`` (or ``0xFF``, an error frame). Every frame whose header starts
gets exactly one answer; a frame that stops arriving is ended by the idle timeout.

Generated Verilog ports of ``uart_core`` (the contract with ``sim/shim/uart_core.cpp``)::

    clk, rst, rx, tx, busy, error
"""

from amaranth import *
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract import protocol
from ..contract import protocol as wire
from ..contract.protocol import (CFG_LEN, DEVICE_SYNC, HOST_SYNC, INFO_FIELDS, MAX_PAYLOAD,
                                 PROTOCOL_VERSION, STATUS_FIELDS, Status,
                                 beat_bytes)
from ..contract.threshold_engine import BLOCK as THRESHOLD_ENGINE
from .crc import CRC8, CRC16, processor
from .adapters import ThresholdEngineAdapter
from .uart import RxByte, UARTRx, UARTTx

__all__ = ["Cmd", "ErrorCode", "ReceiveQueue", "FrameEncoder", "CommandBridge", "UARTCore"]


def shaped_enum(py_enum, width):
    """An ``amaranth.lib.enum.IntEnum`` of ``width`` bits with the members of the contract's
    ``enum.IntEnum`` ``py_enum``: one definition of the codes, a shaped enum for the RTL."""
    namespace = enum.EnumType.__prepare__(py_enum.__name__, (enum.IntEnum,), shape=width)
    for member in py_enum:
        namespace[member.name] = member.value
    return enum.EnumType(py_enum.__name__, (enum.IntEnum,), namespace, shape=width)


#: Command and error codes as shaped enums (``amaranth.lib.enum``), from the contract's.
Cmd = shaped_enum(wire.Cmd, 8)
ErrorCode = shaped_enum(wire.ErrorCode, 8)

#: INFO's block bitmap: the blocks this bridge holds.
BLOCKS_BITMAP = 1 << THRESHOLD_ENGINE.bridge_bit
_CFG_LEN = CFG_LEN


def _fields_len(fields):
    return sum(n for _, n in fields)


class ReceiveQueue(wiring.Component):
    """The received bytes' queue: a FIFO (the host's bytes wait here while the engine or the
    answer is behind), then a two-entry queue of flip-flops (timing: the parser sees bytes from
    flip-flops, not from the FIFO's RAM output). ``dropped`` strobes when a byte arrives at a
    full FIFO (counted as an overflow)."""

    def __init__(self, *, depth):
        self._depth = depth
        super().__init__({
            "i_rx": In(stream.Signature(RxByte)),
            "o_bytes": Out(stream.Signature(RxByte)),
            "dropped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = rx_fifo = fifo.SyncFIFOBuffered(width=9, depth=self._depth)

        m.d.comb += [
            rx_fifo.w_data.eq(Cat(self.i_rx.payload.data, self.i_rx.payload.ferr)),
            rx_fifo.w_en.eq(self.i_rx.valid),
            self.i_rx.ready.eq(rx_fifo.w_rdy),
        ]
        # Two-entry queue after the FIFO (timing): the parser sees bytes from flip-flops, not
        # from the FIFO's RAM output, and the FIFO's read enable depends on flip-flops only.
        # Slots are written and read through pointers, so what the parser takes never steers
        # the slots' data inputs.
        q_data = [Signal(9, name=f"q{i}") for i in range(2)]
        q_count = Signal(range(3))
        q_wr = Signal()
        q_rd = Signal()
        q_push = Signal()
        q_pop = Signal()
        m.d.comb += [q_push.eq(rx_fifo.r_rdy & (q_count != 2)), rx_fifo.r_en.eq(q_push)]
        with m.If(q_push):
            m.d.sync += q_wr.eq(~q_wr)
            with m.If(q_wr):
                m.d.sync += q_data[1].eq(rx_fifo.r_data)
            with m.Else():
                m.d.sync += q_data[0].eq(rx_fifo.r_data)
        with m.If(q_pop):
            m.d.sync += q_rd.eq(~q_rd)
        m.d.sync += q_count.eq(q_count + q_push - q_pop)
        q_head = Signal(9)
        m.d.comb += q_head.eq(Mux(q_rd, q_data[1], q_data[0]))

        m.d.comb += [self.o_bytes.valid.eq(q_count != 0), self.o_bytes.payload.eq(q_head),
                     q_pop.eq(self.o_bytes.valid & self.o_bytes.ready),
                     self.dropped.eq(self.i_rx.valid & ~rx_fifo.w_rdy)]
        return m


class FrameEncoder(wiring.Component):
    """Answer frames onto the transmitter's byte stream: SYNC, CMD, LEN, the header's CRC-8, the
    payload, the CRC-16 (docs/uart_protocol.md).

    ``start`` (while ``idle``) begins a frame of ``length`` payload bytes with command byte
    ``cmd``; with ``small`` the payload comes from ``i_small`` (INFO, TE_STATUS, TE_CONFIG and
    ERROR answers), else from ``i_data`` (a DATA answer's pruned tiles) and its last byte from
    ``i_status``. A byte is loaded only into an empty output register, so nothing waits on the
    transmitter's ready combinationally.
    """

    def __init__(self):
        super().__init__({
            "start": In(1), "cmd": In(8), "length": In(16), "small": In(1),
            "i_small": In(stream.Signature(8)),
            "i_data": In(stream.Signature(8)),
            "i_status": In(stream.Signature(8)),
            "o_tx": Out(stream.Signature(8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        f_cmd = Signal(8)
        f_len = Signal(16)
        f_small = Signal()
        f_left = Signal(16)
        f_last = Signal()    # f_left == 1 and f_left == 0, as registers beside f_left (timing)
        f_zero = Signal()
        f_idx = Signal(3)
        f_start = Signal()           # the framer's CRCs restart
        f_hdr = Signal()             # a header byte (CRC-8 and CRC-16) goes out
        f_pay = Signal()             # a payload byte (CRC-16) goes out
        f_byte = Signal(8)
        f_crc8 = processor(m, "f_crc8", CRC8, start=f_start, valid=f_hdr, data=f_byte)
        f_crc16 = processor(m, "f_crc16", CRC16, start=f_start, valid=f_hdr | f_pay, data=f_byte)
        o_valid = Signal()
        o_data = Signal(8)
        m.d.comb += [self.o_tx.valid.eq(o_valid), self.o_tx.payload.eq(o_data)]
        # A byte is loaded only into an empty output register (one byte per two clocks at most,
        # far above any bit rate), so no load condition waits on the transmitter's ready.
        can_load = Signal()
        m.d.comb += can_load.eq(~o_valid)
        with m.If(self.o_tx.ready):
            m.d.sync += o_valid.eq(0)


        def emit(byte):
            return [o_valid.eq(1), o_data.eq(byte)]

        with m.FSM(name="framer"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    n = self.length
                    m.d.sync += [f_cmd.eq(self.cmd), f_len.eq(n), f_small.eq(self.small),
                                 f_left.eq(n), f_last.eq(n == 1), f_zero.eq(n == 0),
                                 f_idx.eq(0)]
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
                                m.d.comb += [f_hdr.eq(1), f_byte.eq(byte)]
                        with m.Case(4):
                            m.d.sync += emit(f_crc8)
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                # One of three sources: a short answer's bytes, the streamed DATA bytes, then
                # the DATA answer's status byte.
                source = Mux(f_small, 0, Mux(f_last, 2, 1))
                inputs = (self.i_small, self.i_data, self.i_status)
                byte = Signal(8)
                have = Signal()
                take = Signal()
                with m.If(f_zero):
                    m.next = "CRC_LO"
                with m.Else():
                    m.d.comb += [byte.eq(Array(s.payload for s in inputs)[source]),
                                 have.eq(Array(s.valid for s in inputs)[source]),
                                 take.eq(can_load & have)]
                    for k, s in enumerate(inputs):
                        m.d.comb += s.ready.eq(take & (source == k))
                with m.If(take):
                    m.d.sync += emit(byte)
                    m.d.comb += [f_pay.eq(1), f_byte.eq(byte)]
                    m.d.sync += [f_left.eq(f_left - 1),
                                 f_last.eq(f_left == 2), f_zero.eq(f_last)]
            with m.State("CRC_LO"):
                with m.If(can_load):
                    m.d.sync += emit(f_crc16[:8])
                    m.next = "CRC_HI"
            with m.State("CRC_HI"):
                with m.If(can_load):
                    m.d.sync += emit(f_crc16[8:])
                    m.next = "IDLE"
        return m


class CommandBridge(wiring.Component):
    """Frame decoder, threshold engine and frame encoder on byte streams.

    Parameters
    ----------
    lanes, width : int
        Threshold engine parameters.
    timeout : int
        Clock cycles without a received byte after which a partly received frame is ended.
    fifo_depth : int
        Receive FIFO depth (bytes): the host's bytes wait here while the engine or the answer
        is behind.

    Attributes
    ----------
    i_rx : In(stream.Signature(RxByte))
    o_tx : Out(stream.Signature(8))
    overflow : In(1)
        Strobe from the UART receiver: a byte was lost (counted in TE_STATUS).
    busy, error : Out(1)
        A frame is being handled; some error was counted since reset (status LEDs).
    """

    def __init__(self, *, lanes, width, timeout, fifo_depth=64):
        protocol.COMMAND_BRIDGE.check(lanes=lanes, width=width, timeout=timeout,
                                      fifo_depth=fifo_depth)
        self._lanes, self._width = lanes, width
        self._timeout, self._fifo_depth = timeout, fifo_depth
        super().__init__({
            "i_rx": In(stream.Signature(RxByte)),
            "o_tx": Out(stream.Signature(8)),
            "overflow": In(1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, width = self._lanes, self._width
        nbytes = beat_bytes(lanes, width)

        m.submodules.rx_queue = rxq = ReceiveQueue(depth=self._fifo_depth)
        wiring.connect(m, wiring.flipped(self.i_rx), rxq.i_rx)

        fill = Signal()      # feed zero bytes: the host stopped in the middle of a TE_DATA frame
        take = Signal()      # the parser consumes the current byte this cycle
        b_valid = Signal()
        b_data = Signal(8)
        b_ferr = Signal()
        m.d.comb += [
            b_valid.eq(fill | rxq.o_bytes.valid),
            b_data.eq(Mux(fill, 0, rxq.o_bytes.payload.data)),
            b_ferr.eq(~fill & rxq.o_bytes.payload.ferr),
            rxq.o_bytes.ready.eq(take & ~fill),
        ]
        waiting = Signal()   # the parser is inside a frame and waits for host bytes
        idle = Signal(range(self._timeout + 1))
        timed_out = Signal()  # a register (timing): the wide compare feeds only this flip-flop
        with m.If(~waiting | rxq.o_bytes.valid | fill):
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle == self._timeout - 1)]

        # --- error counters (saturating, since reset) -------------------------------------------
        def counter(name):
            return Signal(8, name=name)
        hdr_errs, crc_errs, ferr_errs, tmo_errs, ovf_errs = (
            counter("header_errors"), counter("crc_errors"), counter("framing_errors"),
            counter("timeouts"), counter("overflows"))

        def bump(c):
            return c.eq(c + (c != 0xFF))
        with m.If(self.overflow | rxq.dropped):
            m.d.sync += bump(ovf_errs)
        m.d.comb += self.error.eq((hdr_errs | crc_errs | ferr_errs | tmo_errs | ovf_errs) != 0)

        # --- the block behind the bridge, through its adapter -------------------------------
        m.submodules.te = te = ThresholdEngineAdapter(lanes=lanes, width=width)
        cfg_threshold = Signal(width)
        cfg_budget = Signal(32)
        clear = Signal()
        m.d.comb += [te.threshold.eq(cfg_threshold), te.tie_budget.eq(cfg_budget),
                     te.clear.eq(clear), te.i_bytes.payload.eq(b_data)]

        # --- answer framer ---------------------------------------------------------------------
        small_len = max(_fields_len(STATUS_FIELDS), _fields_len(INFO_FIELDS), 2)
        small = Signal(8 * small_len)
        tx_start = Signal()
        tx_small = Signal()          # payload from `small`, else the DATA answer (beats + status)
        tx_cmd = Signal(8)
        tx_len = Signal(16)
        tx_idle = Signal()
        status_valid = Signal()
        status = Signal(8)

        m.submodules.encoder = encoder = FrameEncoder()
        wiring.connect(m, te.o_bytes, encoder.i_data)
        wiring.connect(m, wiring.flipped(self.o_tx), encoder.o_tx)
        m.d.comb += [encoder.start.eq(tx_start), encoder.cmd.eq(tx_cmd),
                     encoder.length.eq(tx_len), encoder.small.eq(tx_small),
                     tx_idle.eq(encoder.idle),
                     encoder.i_small.valid.eq(1), encoder.i_small.payload.eq(small[:8]),
                     encoder.i_status.valid.eq(status_valid), encoder.i_status.payload.eq(status)]
        with m.If(encoder.i_small.ready):
            m.d.sync += small.eq(small[8:])

        # --- frame parser ----------------------------------------------------------------------
        p_cmd = Signal(8)
        p_len = Signal(16)
        p_idx = Signal(2)
        p_start = Signal()           # the parser's CRCs restart (a SYNC)
        p_hdr = Signal()             # a header byte (CRC-8 and CRC-16) is taken
        p_pay = Signal()             # a payload byte (CRC-16) is taken
        p_crc8 = processor(m, "p_crc8", CRC8, start=p_start, valid=p_hdr, data=b_data)
        p_crc16 = processor(m, "p_crc16", CRC16, start=p_start, valid=p_hdr | p_pay, data=b_data)
        p_left = Signal(17)
        p_last = Signal()    # p_left == 1, kept in a register beside p_left (timing)
        p_diff = Signal(signed(18))
        hdr_ok = Signal()
        crc_ok = Signal()    # the CRC-16 bytes received so far match
        p_ferr = Signal()
        err_code = Signal(ErrorCode, init=ErrorCode.BAD_HEADER)
        cfg = Signal(8 * _CFG_LEN)
        # The engine samples tie_budget on clear: pulse clear one cycle after cfg_budget loads.
        m.d.sync += clear.eq(0)

        status_values = {
            "cycles": te.cycles, "beats": te.beats, "kept": te.kept, "ties_left": te.ties_left,
            "in_crc": te.in_crc, "out_crc": te.out_crc, "header_errors": hdr_errs,
            "crc_errors": crc_errs, "framing_errors": ferr_errs, "timeouts": tmo_errs,
            "overflows": ovf_errs,
        }
        info_values = {"version": C(PROTOCOL_VERSION, 8), "blocks": C(BLOCKS_BITMAP, 8),
                       "lanes": C(lanes, 8), "width": C(width, 8),
                       "max_payload": C(MAX_PAYLOAD, 16)}

        with m.FSM(name="parser") as parser:
            with m.State("HUNT"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    with m.If(b_ferr):
                        m.d.sync += bump(ferr_errs)
                    with m.Elif(b_data == HOST_SYNC):
                        m.d.comb += p_start.eq(1)
                        m.d.sync += [p_idx.eq(0), p_ferr.eq(0), crc_ok.eq(1), status.eq(0),
                                     status_valid.eq(0)]
                        m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [waiting.eq(1), take.eq(b_valid)]
                with m.If(b_valid):
                    m.d.sync += p_idx.eq(p_idx + 1)
                    with m.If(b_ferr):
                        m.d.sync += [bump(ferr_errs), err_code.eq(ErrorCode.FRAMING),
                                     p_cmd.eq(0)]
                        m.next = "ERROR"
                    with m.Elif(p_idx == 3):
                        # Decided in DISPATCH, from a flip-flop (timing).
                        m.d.sync += hdr_ok.eq(b_data == p_crc8)
                        m.next = "DISPATCH"
                    with m.Else():
                        m.d.comb += p_hdr.eq(1)
                        with m.Switch(p_idx):
                            with m.Case(0):
                                m.d.sync += p_cmd.eq(b_data)
                            with m.Case(1):
                                m.d.sync += p_len[:8].eq(b_data)
                            with m.Case(2):
                                m.d.sync += p_len[8:].eq(b_data)
                with m.Elif(timed_out):
                    m.d.sync += [bump(tmo_errs), err_code.eq(ErrorCode.TIMEOUT), p_cmd.eq(0)]
                    m.next = "ERROR"
            with m.State("DISPATCH"):
                m.d.sync += [p_left.eq(p_len), p_last.eq(p_len == 1)]
                with m.If(~hdr_ok):
                    m.d.sync += [bump(hdr_errs), err_code.eq(ErrorCode.BAD_HEADER), p_cmd.eq(0)]
                    m.next = "ERROR"
                with m.Elif((p_cmd == Cmd.INFO) | (p_cmd == Cmd.TE_STATUS)):
                    with m.If(p_len == 0):
                        m.d.sync += [p_left.eq(2), p_last.eq(0)]
                        m.next = "TRAILER"
                    with m.Else():
                        m.d.sync += [err_code.eq(ErrorCode.BAD_LENGTH), p_left.eq(p_len + 2), p_last.eq(0)]
                        m.next = "SKIP"
                with m.Elif(p_cmd == Cmd.TE_CONFIG):
                    with m.If(p_len == _CFG_LEN):
                        m.next = "CONFIG"
                    with m.Else():
                        m.d.sync += [err_code.eq(ErrorCode.BAD_LENGTH), p_left.eq(p_len + 2), p_last.eq(0)]
                        m.next = "SKIP"
                with m.Elif(p_cmd == Cmd.TE_DATA):
                    with m.If((p_len == 0) | (p_len > MAX_PAYLOAD)):
                        m.d.sync += [err_code.eq(ErrorCode.BAD_LENGTH), p_left.eq(p_len + 2), p_last.eq(0)]
                        m.next = "SKIP"
                    with m.Else():
                        m.next = "DIVIDE"
                with m.Else():
                    m.d.sync += [err_code.eq(ErrorCode.UNKNOWN_CMD), p_left.eq(p_len + 2), p_last.eq(0)]
                    m.next = "SKIP"
            with m.State("DIVIDE"):
                # LEN must be whole beats: subtract the beat size until it goes negative, two
                # clocks a step (timing: the subtraction, then the decision on its sign).
                m.d.sync += p_diff.eq(p_left - nbytes)
                m.next = "DIVIDE_CHECK"
            with m.State("DIVIDE_CHECK"):
                with m.If(p_diff >= 0):
                    m.d.sync += p_left.eq(p_diff)
                    m.next = "DIVIDE"
                with m.Elif(p_left != 0):
                    m.d.sync += [err_code.eq(ErrorCode.BAD_LENGTH), p_left.eq(p_len + 2), p_last.eq(0)]
                    m.next = "SKIP"
                with m.Else():
                    m.d.sync += [p_left.eq(p_len), p_last.eq(p_len == 1),
                                 tx_cmd.eq(p_cmd | 0x80), tx_small.eq(0),
                                 tx_len.eq(p_len + 1), fill.eq(0)]
                    m.next = "DATA_START"
            with m.State("SKIP"):
                # Drop the payload and CRC of a frame we will not run, then answer with an error.
                m.d.comb += [waiting.eq(1), take.eq(b_valid)]
                with m.If(b_valid):
                    m.d.sync += [p_left.eq(p_left - 1), p_last.eq(p_left == 2)]
                    with m.If(p_last):
                        m.next = "ERROR"
                with m.Elif(timed_out):
                    m.d.sync += bump(tmo_errs)
                    m.next = "ERROR"
            with m.State("CONFIG"):
                m.d.comb += [waiting.eq(1), take.eq(b_valid)]
                with m.If(b_valid):
                    m.d.sync += [cfg.eq(Cat(cfg[8:], b_data)), p_left.eq(p_left - 1),
                                 p_last.eq(p_left == 2),
                                 p_ferr.eq(p_ferr | b_ferr)]
                    m.d.comb += p_pay.eq(1)
                    with m.If(p_last):
                        m.d.sync += [p_left.eq(2), p_last.eq(0)]
                        m.next = "TRAILER"
                with m.Elif(timed_out):
                    m.d.sync += [bump(tmo_errs), err_code.eq(ErrorCode.TIMEOUT)]
                    m.next = "ERROR"
            with m.State("TRAILER"):
                m.d.comb += [waiting.eq(1), take.eq(b_valid)]
                with m.If(b_valid):
                    # The CRC arrives low byte first: the low byte, then (p_last) the high byte.
                    m.d.sync += [crc_ok.eq(crc_ok & (b_data == Mux(p_last, p_crc16[8:],
                                                                   p_crc16[:8]))),
                                 p_left.eq(p_left - 1),
                                 p_last.eq(p_left == 2), p_ferr.eq(p_ferr | b_ferr)]
                    with m.If(p_last):
                        m.next = "EXECUTE"
                with m.Elif(timed_out):
                    m.d.sync += [bump(tmo_errs), err_code.eq(ErrorCode.TIMEOUT)]
                    m.next = "ERROR"
            with m.State("EXECUTE"):
                # Answers are loaded only while the framer is idle: it shifts `small` out.
                with m.If(~tx_idle):
                    pass
                with m.Elif(p_ferr):
                    m.d.sync += [bump(ferr_errs), err_code.eq(ErrorCode.FRAMING)]
                    m.next = "ERROR"
                with m.Elif(~crc_ok):
                    m.d.sync += [bump(crc_errs), err_code.eq(ErrorCode.BAD_CRC)]
                    m.next = "ERROR"
                with m.Else():
                    m.d.sync += [tx_cmd.eq(p_cmd | 0x80), tx_small.eq(1)]
                    with m.Switch(p_cmd):
                        with m.Case(Cmd.INFO):
                            m.d.sync += [small.eq(Cat(*(info_values[n] for n, _ in INFO_FIELDS))),
                                         tx_len.eq(_fields_len(INFO_FIELDS))]
                        with m.Case(Cmd.TE_STATUS):
                            m.d.sync += [
                                small.eq(Cat(*(status_values[n] for n, _ in STATUS_FIELDS))),
                                tx_len.eq(_fields_len(STATUS_FIELDS))]
                        with m.Case(Cmd.TE_CONFIG):
                            m.d.sync += clear.eq(1)
                            m.d.sync += [cfg_threshold.eq(cfg[:width]),
                                         cfg_budget.eq(cfg[16:48]),
                                         small.eq(0), tx_len.eq(1)]
                    m.next = "RESPOND"
            with m.State("ERROR"):
                with m.If(tx_idle):
                    m.d.sync += [tx_cmd.eq(Cmd.ERROR), tx_small.eq(1), tx_len.eq(2),
                                 small.eq(Cat(err_code, p_cmd))]
                    m.next = "RESPOND"
            with m.State("RESPOND"):
                with m.If(tx_idle):
                    m.d.comb += tx_start.eq(1)
                    m.next = "HUNT"
            with m.State("DATA_START"):
                with m.If(tx_idle):
                    m.d.comb += tx_start.eq(1)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [waiting.eq(~fill), te.i_bytes.valid.eq(b_valid),
                             take.eq(b_valid & te.i_bytes.ready)]
                with m.If(b_valid & te.i_bytes.ready):
                    m.d.sync += [p_left.eq(p_left - 1), p_last.eq(p_left == 2)]
                    m.d.comb += p_pay.eq(1)
                    with m.If(b_ferr):
                        m.d.sync += status.eq(status | Status.FRAMING)
                    with m.If(p_last):
                        m.d.sync += [p_left.eq(2), p_last.eq(0)]
                        with m.If(fill):
                            m.d.sync += fill.eq(0)
                            m.next = "DATA_WAIT"
                        with m.Else():
                            m.next = "DATA_TRAILER"
                with m.Elif(timed_out):
                    m.d.sync += [bump(tmo_errs), fill.eq(1), status.eq(status | Status.TIMEOUT)]
            with m.State("DATA_TRAILER"):
                m.d.comb += [waiting.eq(1), take.eq(b_valid)]
                with m.If(b_valid):
                    m.d.sync += [crc_ok.eq(crc_ok & (b_data == Mux(p_last, p_crc16[8:],
                                                                   p_crc16[:8]))),
                                 p_left.eq(p_left - 1),
                                 p_last.eq(p_left == 2)]
                    with m.If(b_ferr):
                        m.d.sync += status.eq(status | Status.FRAMING)
                    with m.If(p_last):
                        m.next = "DATA_WAIT"
                with m.Elif(timed_out):
                    m.d.sync += [bump(tmo_errs), status.eq(status | Status.TIMEOUT)]
                    m.next = "DATA_WAIT"
            with m.State("DATA_WAIT"):
                # The status byte ends the answer; wait until it has left.
                m.d.sync += status_valid.eq(1)
                with m.If(~status_valid & ~crc_ok):
                    m.d.sync += status.eq(status | Status.BAD_CRC)
                with m.If(status_valid & tx_idle):
                    with m.If(status & Status.BAD_CRC):
                        m.d.sync += bump(crc_errs)
                    with m.If(status & Status.FRAMING):
                        m.d.sync += bump(ferr_errs)
                    m.d.sync += status_valid.eq(0)
                    m.next = "HUNT"
        m.d.comb += self.busy.eq(~tx_idle | ~parser.ongoing("HUNT"))
        return m


class UARTCore(wiring.Component):
    """UART receiver + :class:`CommandBridge` + UART transmitter: the part of the board top that
    does not depend on the board (no PLL, no pins).

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        The serial lines (idle high).
    busy, error : Out(1)
        Status LEDs (see :class:`CommandBridge`).
    """

    def __init__(self, *, lanes, width, clocks_per_bit, timeout, fifo_depth=64):
        protocol.UART_CORE.check(lanes=lanes, width=width, clocks_per_bit=clocks_per_bit,
                                 timeout=timeout, fifo_depth=fifo_depth)
        self._params = dict(lanes=lanes, width=width, timeout=timeout, fifo_depth=fifo_depth)
        self._cpb = clocks_per_bit
        self.bridge = CommandBridge(**self._params)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTRx(clocks_per_bit=self._cpb)
        m.submodules.uart_tx = tx = UARTTx(clocks_per_bit=self._cpb)
        m.submodules.bridge = bridge = self.bridge
        wiring.connect(m, rx.o_stream, bridge.i_rx)
        wiring.connect(m, bridge.o_tx, tx.i_stream)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), bridge.overflow.eq(rx.overflow),
                     self.busy.eq(bridge.busy), self.error.eq(bridge.error)]
        return m
