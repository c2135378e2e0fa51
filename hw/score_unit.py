"""Score unit: ``(|w| * s) >> width`` per lane, the multiplier stage of activation-aware
pruning (the definition, width and rounding: :mod:`hwprune.contract.score_unit`).

Two register stages; one beat per clock while ``o_stream.ready`` is high::

    i_stream -> [S1 |w|, s, lane_valid] -> [S2 product >> width: output reg] -> o_stream

Each lane's product is ``width x width`` bits (a DSP multiplier on the boards: SB_MAC16 on the
iCE40 UP5K, MULT18X18D on the ECP5). The output is the threshold engine's tile, so the scores
stream straight on into the histogram, threshold engine, N:M selector or row blocks.
"""

from amaranth import *
from amaranth.lib import data

from ..contract import score_unit as contract
from ..contract.block import COUNTER_WIDTH
from .component import BlockComponent

__all__ = ["ScoreUnit"]


class ScoreUnit(BlockComponent):
    """Per-lane Wanda scores.

    Attributes
    ----------
    i_stream : In(stream.Signature(ScoreTileLayout))
        Weight codes, their columns' scale codes, the lane bitmap.
    o_stream : Out(stream.Signature(TileLayout))
        Scores (non-negative ``width``-bit codes), the lane bitmap as sent.
    clear : In(1)
        Strobe: zero ``beats``.
    beats : Out(unsigned(32))
        Beats delivered since the last ``clear``.
    """

    description = contract.BLOCK

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        i, o = self.i_stream, self.o_stream
        advance = Signal()
        m.d.comb += [advance.eq(~o.valid | o.ready), i.ready.eq(advance)]

        s1_valid = Signal()
        s1_mag = Signal(data.ArrayLayout(unsigned(width), lanes))
        s1_scale = Signal(data.ArrayLayout(unsigned(width), lanes))
        s1_live = Signal(lanes)
        with m.If(advance):
            m.d.sync += [s1_valid.eq(i.valid), s1_scale.eq(i.payload.scale),
                         s1_live.eq(i.payload.lane_valid)]
            for k in range(lanes):
                w = i.payload.data[k]
                m.d.sync += s1_mag[k].eq(Mux(w < 0, -w, w))
        with m.If(advance):
            m.d.sync += [o.valid.eq(s1_valid), o.payload.lane_valid.eq(s1_live)]
            for k in range(lanes):
                product = s1_mag[k] * s1_scale[k]
                m.d.sync += o.payload.data[k].eq(Mux(s1_live[k], product[width:2 * width], 0))

        beats = Signal(unsigned(COUNTER_WIDTH))
        with m.If(o.valid & o.ready):
            m.d.sync += beats.eq(beats + 1)
        with m.If(self.clear):
            m.d.sync += beats.eq(0)
        m.d.comb += self.beats.eq(beats)
        return m
