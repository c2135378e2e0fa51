"""Streaming per-output-channel L1 and L2 norm accumulator.

The host streams the weights of one output channel after another, ``lanes`` signed ``width``-bit
weights per beat (the threshold engine's tile plus a ``last`` bit). A channel occupies whole beats
(the host pads its tail with ``lane_valid`` clear) and ``last`` marks its final beat. For every
channel the block emits one beat ``{l1, l2}`` with ``l1 = sum |w|`` and ``l2 = sum w**2`` over the
channel's valid lanes (padding lanes add nothing).

Sum widths: a channel of up to :data:`MAX_CHANNEL_WEIGHTS` ``= 2**24`` weights cannot overflow.
``|w| <= 2**(width-1)``, so ``l1 <= 2**(width+23)`` needs ``width + 24`` bits and
``l2 <= 2**(2*width+22)`` needs ``2*width + 23`` bits (width 16: 40 and 55 bits; both fit an
int64 on the host). Longer channels wrap modulo those widths.

Pipeline (four register stages; one input beat per clock while ``o_stream.ready`` is high)::

    i_stream -> [S1 input reg] -> [S2 |w|, w**2 per lane] -> [S3 beat sums]
             -> [S4 channel accumulator; on `last`: output reg] -> o_stream

All stages advance together when the output register is empty or being read
(``advance = ~o_stream.valid | o_stream.ready``); ``o_stream.valid`` is a register output and
never depends on ``o_stream.ready``. The output carries a beat only for a ``last`` input beat, so
a channel's norms leave four clocks after its last beat is accepted.

Generated Verilog ports (the contract with ``sim/``; Amaranth flattens with ``__``)::

    clk, rst
    i_stream__payload  [lanes*width + lanes + 1]  data (lane i at bits i*width..), lane_valid, last
    i_stream__valid, i_stream__ready
    o_stream__payload  [3*width + 47]  l1 [width+24], then l2 [2*width+23]
    o_stream__valid, o_stream__ready
    clear
    beats [32], channels [32]
"""

from amaranth import *
from amaranth.lib import data

from .arith import tree_sum
from ..contract import channel_norms as contract
from ..contract.block import COUNTER_WIDTH
from ..contract.channel_norms import l1_width, l2_width
from .component import BlockComponent
from .layouts import amaranth_layout

__all__ = ["ChannelTileLayout", "NormLayout", "ChannelNorms"]



def ChannelTileLayout(lanes, width):
    """One input beat (:func:`hwprune.contract.channel_norms.channel_tile_layout`)."""
    return amaranth_layout(contract.channel_tile_layout(lanes=lanes, width=width))


def NormLayout(width):
    """One output beat (:func:`hwprune.contract.channel_norms.norm_layout`)."""
    return amaranth_layout(contract.norm_layout(lanes=None, width=width))


class ChannelNorms(BlockComponent):
    """Per-channel L1 and L2 norm accumulator.

    Parameters: ``lanes`` and ``width``, in the block's domain (:data:`contract.DOMAIN`,
    ``hwprune info``).

    Attributes
    ----------
    i_stream : In(stream.Signature(ChannelTileLayout))
    o_stream : Out(stream.Signature(NormLayout))
        One beat per channel.
    clear : In(1)
        Strobe: zero the counters. Assert only between channels (it does not touch the sums).
    beats : Out(unsigned(32))
        Input beats accumulated since the last ``clear``.
    channels : Out(unsigned(32))
        Output beats (channels) delivered since the last ``clear``.
    """

    description = contract.BLOCK

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        l1_bits, l2_bits = l1_width(width), l2_width(width)

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o_stream.valid | self.o_stream.ready),
            self.i_stream.ready.eq(advance),
        ]

        # S1: input register.
        s1_valid = Signal()
        s1 = Signal(ChannelTileLayout(lanes, width))
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i_stream.valid), s1.eq(self.i_stream.payload)]

        # S2: per-lane magnitude; padding lanes contribute 0. |-2**(w-1)| fits in `width`
        # unsigned bits.
        s2_valid = Signal()
        s2_last = Signal()
        s2_mag = Signal(data.ArrayLayout(unsigned(width), lanes))
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_last.eq(s1.last)]
            for i in range(lanes):
                w = s1.data[i]
                m.d.sync += s2_mag[i].eq(Mux(s1.lane_valid[i], Mux(w < 0, -w, w), 0))

        # S2b: the squares (2*width-1 bits), from registered magnitudes (timing: a multiplier
        # fed straight from the magnitude logic misses the ECP5 board clock).
        s2b_valid = Signal()
        s2b_last = Signal()
        s2b_mag = Signal(data.ArrayLayout(unsigned(width), lanes))
        s2_sq = Signal(data.ArrayLayout(unsigned(2 * width - 1), lanes))
        with m.If(advance):
            m.d.sync += [s2b_valid.eq(s2_valid), s2b_last.eq(s2_last), s2b_mag.eq(s2_mag)]
            for i in range(lanes):
                m.d.sync += s2_sq[i].eq(s2_mag[i] * s2_mag[i])
        s2_valid, s2_last, s2_mag = s2b_valid, s2b_last, s2b_mag

        # S3: the beat's sums.
        s3_valid = Signal()
        s3_last = Signal()
        s3_l1 = Signal(unsigned(width + lanes.bit_length()))
        s3_l2 = Signal(unsigned(2 * width - 1 + lanes.bit_length()))
        with m.If(advance):
            m.d.sync += [s3_valid.eq(s2_valid), s3_last.eq(s2_last),
                         s3_l1.eq(tree_sum(s2_mag[i] for i in range(lanes))),
                         s3_l2.eq(tree_sum(s2_sq[i] for i in range(lanes)))]

        # S4: accumulate the channel; its last beat moves the total to the output register and
        # restarts the sums.
        acc_l1 = Signal(unsigned(l1_bits))
        acc_l2 = Signal(unsigned(l2_bits))
        out = self.o_stream.payload
        beats = Signal(unsigned(COUNTER_WIDTH))
        with m.If(advance):
            m.d.sync += self.o_stream.valid.eq(s3_valid & s3_last)
            with m.If(s3_valid):
                m.d.sync += beats.eq(beats + 1)
                with m.If(s3_last):
                    m.d.sync += [out.l1.eq(acc_l1 + s3_l1), out.l2.eq(acc_l2 + s3_l2),
                                 acc_l1.eq(0), acc_l2.eq(0)]
                with m.Else():
                    m.d.sync += [acc_l1.eq(acc_l1 + s3_l1), acc_l2.eq(acc_l2 + s3_l2)]

        channels = Signal(unsigned(COUNTER_WIDTH))
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += channels.eq(channels + 1)
        with m.If(self.clear):
            m.d.sync += [beats.eq(0), channels.eq(0)]
        m.d.comb += [self.beats.eq(beats), self.channels.eq(channels)]
        return m
