"""Row mask: tie-budgeted masking with a threshold and budget per group, mask bits out (what it
computes: :mod:`hwprune.contract.row_mask`).

Pipeline (both stages advance together when the output register is empty or being read)::

    g_stream -> [group registers: threshold, tie_budget]   (loaded before a group's first beat)
    i_stream -> [S1 |w| > T, |w| == T per lane; the group's budget on its first beat]
             -> [S2 ties ranked in lane order, granted while the group's budget lasts:
                 output reg] -> o_stream

The next group's ``g_stream`` beat is taken on the clock of the previous group's last beat, so
back-to-back groups stream with no bubble.
"""

from amaranth import *

from .arith import popcount
from ..contract import row_mask as contract
from ..contract.block import COUNTER_WIDTH
from .component import BlockComponent
from .row_select import group_targets

__all__ = ["RowMask"]


class RowMask(BlockComponent):
    """Per-group tie-budgeted masking.

    Attributes
    ----------
    i_stream : In(stream.Signature(ChannelTileLayout))
        Groups of tiles, ``last`` on each group's final beat.
    g_stream : In(stream.Signature(RowThresholdLayout))
        Per group, before its first beat: ``threshold`` and ``tie_budget``.
    o_stream : Out(stream.Signature(RowMaskLayout))
        One keep mask per input beat.
    clear : In(1)
        Strobe: zero ``beats`` and ``kept``.
    beats, kept : Out(unsigned(32))
        Beats delivered and weights kept since the last ``clear`` (``kept`` one clock after).
    """

    description = contract.BLOCK

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        i, g, o = self.i_stream, self.g_stream, self.o_stream
        advance, accept, _, take = group_targets(m, i, g, o)
        threshold = Signal(width)
        budget = Signal(COUNTER_WIDTH)
        with m.If(take):
            m.d.sync += [threshold.eq(g.payload.threshold), budget.eq(g.payload.tie_budget)]

        fresh = Signal(init=1)               # the next beat starts a group
        with m.If(accept):
            m.d.sync += fresh.eq(i.payload.last)

        s1_valid, s1_first = Signal(), Signal()
        s1_budget = Signal(COUNTER_WIDTH)
        s1_gt, s1_eq = Signal(lanes), Signal(lanes)
        with m.If(advance):
            m.d.sync += [s1_valid.eq(accept), s1_first.eq(fresh), s1_budget.eq(budget)]
            for k in range(lanes):
                w = i.payload.data[k]
                mag = Signal(width, name=f"mag{k}")
                m.d.comb += mag.eq(Mux(w < 0, -w, w))
                live = i.payload.lane_valid[k]
                m.d.sync += [s1_gt[k].eq(live & (mag > threshold)),
                             s1_eq[k].eq(live & (mag == threshold))]

        left = Signal(COUNTER_WIDTH)         # the group's budget not yet granted
        current = Signal(COUNTER_WIDTH)
        m.d.comb += current.eq(Mux(s1_first, s1_budget, left))
        mask = Signal(lanes)
        for k in range(lanes):
            rank = popcount(s1_eq[:k]) if k else C(0, 1)
            m.d.comb += mask[k].eq(s1_gt[k] | (s1_eq[k] & (rank < current)))
        ties = Signal(range(lanes + 1))
        m.d.comb += ties.eq(popcount(s1_eq))
        with m.If(advance):
            m.d.sync += [o.valid.eq(s1_valid), o.payload.mask.eq(mask)]
            with m.If(s1_valid):
                m.d.sync += left.eq(Mux(ties < current, current - ties, 0))

        beats = Signal(COUNTER_WIDTH)
        kept = Signal(COUNTER_WIDTH)
        with m.If(o.valid & o.ready):
            m.d.sync += [beats.eq(beats + 1), kept.eq(kept + popcount(o.payload.mask))]
        with m.If(self.clear):
            m.d.sync += [beats.eq(0), kept.eq(0)]
        m.d.comb += [self.beats.eq(beats), self.kept.eq(kept)]
        return m
