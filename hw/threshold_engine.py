"""Streaming magnitude-threshold masking engine.

The engine takes one tile of ``lanes`` signed ``width``-bit weights per beat and emits the tile with
every weight whose magnitude is below ``threshold`` set to zero, plus a ``lanes``-bit keep mask.

Exact-sparsity support: a weight whose magnitude *equals* the threshold (a tie) is kept only while
the tie budget lasts. Ties are granted in stream order (beat by beat, lane 0 first), so a host
that asks for ``tie_budget = k - count(|w| > T)`` gets exactly ``k`` kept weights. A budget of
``2**32 - 1`` keeps every tie, which is the plain ``|w| >= T`` rule.

Pipeline (four register stages, one beat per clock while ``o_stream.ready`` is high)::

    i_stream -> |w| compare [S1] -> tie prefix count, first half [S2] -> second half [S3]
             -> budget, mask [S4] -> o_stream

The whole pipeline advances together when its output register is empty or being read
(``advance = ~o_stream.valid | o_stream.ready``), so ``i_stream.ready`` depends on
``o_stream.ready`` combinationally, while ``o_stream.valid`` is a register output (the stream rule
"valid must not depend on ready" holds).

Generated Verilog ports (the contract with ``sim/``; Amaranth flattens with ``__``)::

    clk, rst
    i_stream__payload  [lanes*width + lanes]  data (lane i at bits i*width..), then lane_valid
    i_stream__valid, i_stream__ready
    o_stream__payload  [lanes*width + lanes]  data (pruned), then mask
    o_stream__valid, o_stream__ready
    threshold [width], tie_budget [32], clear
    beats [32], kept [32], ties_left [32]

Padding lanes (``lane_valid`` bit clear) are never kept, never counted and never use tie budget.
"""

from amaranth import *
from amaranth.lib import data

from ..contract import threshold_engine as contract
from ..contract.block import COUNTER_WIDTH
from .arith import kogge_stone_levels, popcount, tree_sum
from .component import BlockComponent
from .layouts import amaranth_layout

__all__ = ["COUNTER_WIDTH", "TileLayout", "MaskedTileLayout", "ThresholdEngine"]



def TileLayout(lanes, width):
    """One input beat (:func:`hwprune.contract.threshold_engine.tile_layout`)."""
    return amaranth_layout(contract.tile_layout(lanes=lanes, width=width))


def MaskedTileLayout(lanes, width):
    """One output beat (:func:`hwprune.contract.threshold_engine.masked_tile_layout`)."""
    return amaranth_layout(contract.masked_tile_layout(lanes=lanes, width=width))


class ThresholdEngine(BlockComponent):
    """Magnitude-threshold masking engine with an exact tie budget.

    Parameters: ``lanes`` and ``width``, in the block's domain (:data:`contract.DOMAIN`,
    ``hwprune info``).

    Attributes
    ----------
    i_stream : In(stream.Signature(TileLayout))
    o_stream : Out(stream.Signature(MaskedTileLayout))
    threshold : In(unsigned(width))
        Magnitude threshold ``T``; ``|w| > T`` is kept, ``|w| == T`` is a tie. Registered
        before use: hold it from the ``clear`` of a pass to the pass's last input beat.
    tie_budget : In(unsigned(32))
        Number of ties to keep, loaded by ``clear``.
    clear : In(1)
        Strobe: zero the counters and load the tie budget. Assert only while the pipeline is empty.
    beats, kept : Out(unsigned(32))
        Output beats delivered and weights kept since the last ``clear`` (``kept`` includes a
        delivered beat one clock after its transfer).
    ties_left : Out(unsigned(32))
        Tie budget not yet used (final one clock after the last delivered beat).
    """

    description = contract.BLOCK

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        count_shape = unsigned(lanes.bit_length())

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o_stream.valid | self.o_stream.ready),
            self.i_stream.ready.eq(advance),
        ]

        # S1: input register, with the magnitude compare in front of it. No negation per
        # weight: |w| > T is w > T for w >= 0 and w < -T for w < 0, two compares side by side
        # (timing). T and -T are registered copies of `threshold`, a configuration input, so
        # the compares start from flip-flops. |-2**(width-1)| = 2**(width-1) <= T's range.
        pos_t = Signal(signed(width + 2))
        neg_t = Signal(signed(width + 2))
        m.d.sync += [pos_t.eq(self.threshold), neg_t.eq(-self.threshold)]
        s1_valid = Signal()
        s1_data = Signal(data.ArrayLayout(signed(width), lanes))
        s1_gt = Signal(lanes)
        s1_eq = Signal(lanes)
        with m.If(advance):
            tile = self.i_stream.payload
            m.d.sync += [s1_valid.eq(self.i_stream.valid), s1_data.eq(tile.data)]
            for i in range(lanes):
                w = tile.data[i]
                live = tile.lane_valid[i]
                neg = w < 0
                m.d.sync += [
                    s1_gt[i].eq(live & Mux(neg, w < neg_t, w > pos_t)),
                    s1_eq[i].eq(live & Mux(neg, w == neg_t, w == pos_t)),
                ]

        # S2, S3: position of each tie among the ties of its beat, and the beat's tie count: a
        # Kogge-Stone scan whose log2(lanes) adder levels are split between the two stages.
        levels = max(1, (lanes - 1).bit_length())
        scan, step = kogge_stone_levels(m, [s1_eq[i] for i in range(lanes)], 1, levels // 2, count_shape)
        s2_valid = Signal()
        s2_data = Signal(data.ArrayLayout(signed(width), lanes))
        s2_gt = Signal(lanes)
        s2_eq = Signal(lanes)
        s2_scan = [Signal(count_shape, name=f"s2_scan{i}") for i in range(lanes)]
        # Lanes kept outright (|w| > T), counted per group of 4 here and summed in S3: a beat
        # keeps that many plus the ties it is granted (timing: no popcount of the final mask).
        s2_gt_groups = [Signal(range(5), name=f"s2_gt_group{j}") for j in range((lanes + 3) // 4)]
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_data.eq(s1_data), s2_gt.eq(s1_gt),
                         s2_eq.eq(s1_eq)]
            m.d.sync += [r.eq(v) for r, v in zip(s2_scan, scan)]
            m.d.sync += [g.eq(popcount(s1_gt[4 * j:4 * j + 4]))
                         for j, g in enumerate(s2_gt_groups)]

        inclusive, _ = kogge_stone_levels(m, s2_scan, step, levels, count_shape)
        s3_valid = Signal()
        s3_data = Signal(data.ArrayLayout(signed(width), lanes))
        s3_gt = Signal(lanes)
        s3_eq = Signal(lanes)
        s3_rank = Signal(data.ArrayLayout(count_shape, lanes))
        s3_ties = Signal(count_shape)
        s3_gt_count = Signal(count_shape)
        with m.If(advance):
            m.d.sync += [s3_valid.eq(s2_valid), s3_data.eq(s2_data), s3_gt.eq(s2_gt),
                         s3_eq.eq(s2_eq), s3_ties.eq(inclusive[-1]),
                         s3_gt_count.eq(tree_sum(s2_gt_groups))]
            # Exclusive counts: the inclusive count of the lane before.
            m.d.sync += [s3_rank[i].eq(inclusive[i - 1] if i else 0) for i in range(lanes)]

        # S4: grant ties from the budget in stream order, build the mask, zero the pruned weights.
        # A beat's ties are ranked 0.. in lane order, so a tie is kept iff rank < ties_left
        # (ranks are < lanes, so no min(ties_left, lanes) is needed), and the beat uses
        # min(ties, ties_left). Timing: the budget is kept as ties_left = (hi - borrow) * 2**k
        # + lo with 2**k > 2 * lanes. Only lo (k bits) is in the per-beat loop; a borrow out of
        # lo is taken from hi one clock later (a beat never borrows twice in a row, since after
        # a borrow lo >= 2**k - lanes > lanes). hi - borrow != 0 means ties_left >= 2**k.
        rank_bits = lanes.bit_length()
        k = rank_bits + 1
        lo = Signal(k)
        hi = Signal(COUNTER_WIDTH - k)
        borrow = Signal()
        # hi - borrow != 0 and hi - borrow == 1, kept as registers: hi - borrow only ever drops by
        # the borrow a beat makes, so the next values need hi - borrow == 2, not a subtraction.
        budget_big = Signal()  # ties_left >= 2**k > any rank, and > any beat's tie count
        hi_one = Signal()
        hi_two = Signal()
        m.d.comb += hi_two.eq(Mux(borrow, hi == 3, hi == 2))
        # The beat uses min(ties, ties_left): below 2**k that is lo floored at 0 after taking
        # the ties off, above it a plain (possibly borrowing) subtraction. One short chain.
        lo_diff = Signal(signed(k + 2))
        m.d.comb += lo_diff.eq(lo - s3_ties)
        mask = Signal(lanes)
        for i in range(lanes):
            m.d.comb += mask[i].eq(s3_gt[i] | (s3_eq[i] & (budget_big | (s3_rank[i] < lo))))
        beat = Signal()
        m.d.comb += beat.eq(advance & s3_valid)
        new_borrow = Signal()
        m.d.comb += new_borrow.eq(beat & budget_big & (lo_diff < 0))
        m.d.sync += [hi.eq(hi - borrow), borrow.eq(new_borrow)]
        with m.If(new_borrow):
            m.d.sync += [budget_big.eq(~hi_one), hi_one.eq(hi_two)]
        with m.If(beat):
            m.d.sync += lo.eq(Mux(~budget_big & (lo_diff < 0), 0, lo_diff[:k]))
        # The ties_left output is a register copy of Cat(lo, hi) (timing: no subtraction on the
        # way out). A pending borrow is in hi one clock after the last beat leaves S4, and in
        # the copy the clock after: by then that beat has been delivered, so ties_left is final
        # one clock after the last delivered beat, like kept.
        ties_left = Signal(unsigned(COUNTER_WIDTH))
        m.d.sync += ties_left.eq(Cat(lo, hi))

        out = self.o_stream.payload
        # The beat's kept count is its S3 count of lanes kept outright plus the ties it used,
        # both registered with the beat and added when it is delivered.
        used = Signal(count_shape)
        m.d.comb += used.eq(Mux(~budget_big & (lo_diff < 0), lo, s3_ties))
        out_gt_count = Signal(count_shape)
        out_used = Signal(count_shape)
        with m.If(advance):
            m.d.sync += self.o_stream.valid.eq(s3_valid)
            m.d.sync += [out.mask.eq(mask), out_gt_count.eq(s3_gt_count), out_used.eq(used)]
            m.d.sync += [out.data[i].eq(Mux(mask[i], s3_data[i], 0)) for i in range(lanes)]

        # Counters count delivered beats, so a stalled output is never counted twice. The kept
        # count of a delivered beat is added one clock later (timing: the popcount and the
        # 32-bit addition get a clock each), so `kept` is final one clock after the last beat.
        beats = Signal(unsigned(COUNTER_WIDTH))
        kept = Signal(unsigned(COUNTER_WIDTH))
        delivered_kept = Signal(range(lanes + 1))
        m.d.sync += [delivered_kept.eq(0), kept.eq(kept + delivered_kept)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += [beats.eq(beats + 1), delivered_kept.eq(out_gt_count + out_used)]
        with m.If(self.clear):
            m.d.sync += [beats.eq(0), kept.eq(0), delivered_kept.eq(0),
                         lo.eq(self.tie_budget[:k]), hi.eq(self.tie_budget[k:]), borrow.eq(0),
                         budget_big.eq(self.tie_budget[k:] != 0),
                         hi_one.eq(self.tie_budget[k:] == 1)]
        m.d.comb += [self.beats.eq(beats), self.kept.eq(kept), self.ties_left.eq(ties_left)]
        return m
