"""UART receiver and transmitter (8N1) with a fixed ``clocks_per_bit`` divisor.

Both sides are plain ``lib.stream`` endpoints: the receiver offers every byte it samples (there
is no flow control on a UART line, so a byte the sink does not take in its one cycle is lost and
reported through ``overflow``); the transmitter takes a byte whenever its line is idle.
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["RxByte", "UARTRx", "UARTTx", "check_clocks_per_bit"]


def check_clocks_per_bit(clocks_per_bit):
    if not isinstance(clocks_per_bit, int) or isinstance(clocks_per_bit, bool) \
            or not 4 <= clocks_per_bit < 2**16:
        raise ValueError(f"clocks_per_bit must be an integer from 4 to 65535, "
                         f"not {clocks_per_bit!r}")


#: A received byte and its framing-error flag (stop bit sampled low).
RxByte = data.StructLayout({"data": 8, "ferr": 1})


class UARTRx(wiring.Component):
    """8N1 receiver: samples each bit in its middle, after a two-flop synchroniser.

    Attributes
    ----------
    rx : In(1)
        The line (idle high).
    o_stream : Out(stream.Signature(RxByte))
        One beat per received byte, valid for one cycle.
    overflow : Out(1)
        Strobe: a byte was offered and not taken.
    """

    def __init__(self, *, clocks_per_bit):
        check_clocks_per_bit(clocks_per_bit)
        self._cpb = clocks_per_bit
        super().__init__({
            "rx": In(1, init=1),
            "o_stream": Out(stream.Signature(RxByte)),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self._cpb
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(cpb))
        bit = Signal(range(9))
        shreg = Signal(8)

        with m.If(self.o_stream.valid):
            m.d.sync += self.o_stream.valid.eq(0)
        m.d.comb += self.overflow.eq(self.o_stream.valid & ~self.o_stream.ready)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(cpb // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):  # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(cpb - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(cpb - 1), shreg.eq(Cat(shreg[1:], line)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [self.o_stream.valid.eq(1),
                                 self.o_stream.payload.data.eq(shreg),
                                 self.o_stream.payload.ferr.eq(~line)]
                    # After a framing error (or a break) wait for the idle level first.
                    m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Attributes
    ----------
    i_stream : In(stream.Signature(8))
        Bytes to send; ``ready`` while the line is idle.
    tx : Out(1)
        The line (idle high).
    """

    def __init__(self, *, clocks_per_bit):
        check_clocks_per_bit(clocks_per_bit)
        self._cpb = clocks_per_bit
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self._cpb
        timer = Signal(range(cpb))
        # start bit, 8 data bits (LSB first), stop bit; shifted out LSB first.
        frame = Signal(10, init=0x3FF)
        left = Signal(range(11))

        # The next byte is taken on the last clock of the stop bit (or any clock while idle),
        # so back-to-back bytes take exactly 10 * cpb clocks each, the host line's pace: one
        # clock more per byte and a long frame's answer falls behind the bytes coming in until
        # the receive FIFO overflows.
        last_clock = (left == 1) & (timer == 0)
        m.d.comb += self.i_stream.ready.eq((left == 0) | last_clock)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [frame.eq(Cat(C(0, 1), self.i_stream.payload, C(1, 1))),
                         left.eq(10), timer.eq(cpb - 1)]
            m.d.sync += self.tx.eq(0)
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [timer.eq(cpb - 1), left.eq(left - 1),
                             frame.eq(Cat(frame[1:], C(1, 1)))]
                m.d.sync += self.tx.eq(Mux(left == 1, 1, frame[1]))
        return m
