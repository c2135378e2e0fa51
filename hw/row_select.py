"""Row select: a 16-bin digit histogram and select per group, one group after another at the
rate of its beats (what it computes: :mod:`hwprune.contract.row_select`).

Pipeline (all stages advance together when the output register is empty or being read)::

    g_stream -> [group registers: prefix, keep]   (loaded before a group's first beat)
    i_stream -> [S1 digit one-hot per lane, prefix matched] -> [S2 per-digit popcounts]
             -> [S3 group accumulators; on `last`: the group's 16 counts]
             -> [S4 suffix sums vs keep, one clock: output reg] -> o_stream

The 16 counts per group live in registers (``16 x 32`` flip-flops, not a RAM), so the select
is one compare per digit in parallel and the accumulators restart on the clock after a group's
last beat: a group costs its beats, with no walk and no clearing pass. The next group's
``g_stream`` beat is taken on the clock of the previous group's last beat, so back-to-back
groups stream with no bubble.
"""

from amaranth import *

from .arith import popcount, tree_sum
from ..contract import row_select as contract
from ..contract.block import COUNTER_WIDTH
from .component import BlockComponent

__all__ = ["RowSelect"]

DIGITS = contract.DIGITS


class RowSelect(BlockComponent):
    """Per-group exact-k digit select (one radix pass; see the module documentation).

    Attributes
    ----------
    i_stream : In(stream.Signature(ChannelTileLayout))
        Groups of tiles, ``last`` on each group's final beat.
    g_stream : In(stream.Signature(RowTargetLayout))
        Per group, before its first beat: ``prefix`` (the digits above this pass's) and
        ``keep``.
    o_stream : Out(stream.Signature(RowPickLayout))
        Per group: ``found`` (digit), ``above``, ``ties``, ``counted``.
    shift : In
        The pass's digit position (0, 4, 8 or 12); hold it for the whole pass.
    clear : In(1)
        Strobe: zero the ``groups`` counter.
    groups : Out(unsigned(32))
        Groups delivered since the last ``clear``.
    """

    description = contract.BLOCK

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        i, g, o = self.i_stream, self.g_stream, self.o_stream
        advance = Signal()
        m.d.comb += advance.eq(~o.valid | o.ready)

        have = Signal()                      # the current group's target is loaded
        prefix = Signal(width)
        keep = Signal(COUNTER_WIDTH)
        accept = Signal()
        ends = Signal()
        m.d.comb += [i.ready.eq(advance & have), accept.eq(i.valid & i.ready),
                     ends.eq(accept & i.payload.last), g.ready.eq(~have | ends)]
        with m.If(g.valid & g.ready):
            m.d.sync += [have.eq(1), prefix.eq(g.payload.prefix), keep.eq(g.payload.keep)]
        with m.Elif(ends):
            m.d.sync += have.eq(0)

        # S1: each lane's digit as a one-hot, counted only when its upper digits match.
        s1_valid, s1_last = Signal(), Signal()
        s1_keep = Signal(COUNTER_WIDTH)
        s1_hot = [Signal(lanes, name=f"s1_hot{d}") for d in range(DIGITS)]
        with m.If(advance):
            m.d.sync += [s1_valid.eq(accept), s1_last.eq(i.payload.last), s1_keep.eq(keep)]
            for k in range(lanes):
                w = i.payload.data[k]
                mag = Signal(width, name=f"mag{k}")
                m.d.comb += mag.eq(Mux(w < 0, -w, w))
                counted = i.payload.lane_valid[k] & \
                    ((mag >> (self.shift + contract.DIGIT_BITS)) == prefix)
                digit = Signal(contract.DIGIT_BITS, name=f"digit{k}")
                m.d.comb += digit.eq(mag >> self.shift)
                m.d.sync += [s1_hot[d][k].eq(counted & (digit == d)) for d in range(DIGITS)]

        # S2: how many lanes of the beat hold each digit.
        s2_valid, s2_last = Signal(), Signal()
        s2_keep = Signal(COUNTER_WIDTH)
        s2_count = [Signal(range(lanes + 1), name=f"s2_count{d}") for d in range(DIGITS)]
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_last.eq(s1_last), s2_keep.eq(s1_keep)]
            m.d.sync += [c.eq(popcount(h)) for c, h in zip(s2_count, s1_hot)]

        # S3: the group's counts; on its last beat they move to `final` and restart at 0.
        acc = [Signal(COUNTER_WIDTH, name=f"acc{d}") for d in range(DIGITS)]
        final = [Signal(COUNTER_WIDTH, name=f"final{d}") for d in range(DIGITS)]
        s3_done = Signal()
        s3_keep = Signal(COUNTER_WIDTH)
        with m.If(advance):
            m.d.sync += s3_done.eq(s2_valid & s2_last)
            with m.If(s2_valid & s2_last):
                m.d.sync += s3_keep.eq(s2_keep)
                m.d.sync += [f.eq(a + c) for f, a, c in zip(final, acc, s2_count)]
                m.d.sync += [a.eq(0) for a in acc]
            with m.Elif(s2_valid):
                m.d.sync += [a.eq(a + c) for a, c in zip(acc, s2_count)]

        # S4: weights at each digit or above; the found digit is the highest whose suffix sum
        # reaches keep (the hits are the digits 0..found), `above` the suffix sum above it.
        top = [Signal(COUNTER_WIDTH + 1, name=f"top{d}") for d in range(DIGITS + 1)]
        m.d.comb += top[DIGITS].eq(0)
        for d in reversed(range(DIGITS)):
            m.d.comb += top[d].eq(top[d + 1] + final[d])
        hits = Signal(range(DIGITS + 1))
        m.d.comb += hits.eq(tree_sum((top[d] >= s3_keep).as_unsigned() for d in range(DIGITS)))
        found = Signal(contract.DIGIT_BITS)
        m.d.comb += found.eq(Mux(hits == 0, 0, hits - 1))
        above = Signal(COUNTER_WIDTH + 1)
        m.d.comb += above.eq(Array(top[1:])[found])
        with m.If(advance):
            m.d.sync += o.valid.eq(s3_done)
            with m.If(s3_done):
                m.d.sync += [o.payload.found.eq(found), o.payload.above.eq(above),
                             o.payload.ties.eq(s3_keep - above), o.payload.counted.eq(top[0])]

        groups = Signal(COUNTER_WIDTH)
        with m.If(o.valid & o.ready):
            m.d.sync += groups.eq(groups + 1)
        with m.If(self.clear):
            m.d.sync += groups.eq(0)
        m.d.comb += self.groups.eq(groups)
        return m
