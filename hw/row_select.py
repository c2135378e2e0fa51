"""Row select: a 16-bin digit histogram and select per group, one group after another at the
rate of its beats (what it computes: :mod:`hwprune.contract.row_select`).

Pipeline (all stages advance together when the output register is empty or being read)::

    g_stream -> [group registers: prefix, keep]   (loaded before a group's first beat)
    i_stream -> [S1 digit per lane, prefix matched] -> [S2 per-digit counts, packed fields]
             -> [S3 group accumulators; on `last`: the group's 16 counts]
             -> [S4 suffix sums vs keep, one clock: output reg] -> o_stream

The 16 counts per group live in registers (``16 x 32`` flip-flops, not a RAM), so the select
is one compare per digit in parallel and the accumulators restart on the clock after a group's
last beat: a group costs its beats, with no walk and no clearing pass. The next group's
``g_stream`` beat is taken on the clock of the previous group's last beat, so back-to-back
groups stream with no bubble.
"""

from amaranth import *
from amaranth.lib import data

from .arith import tree_sum
from ..contract import row_select as contract
from ..contract.block import COUNTER_WIDTH
from .component import BlockComponent

__all__ = ["RowSelect", "group_targets"]


def group_targets(m, i_stream, g_stream, o_stream):
    """The per-group handshake of the row blocks: a group's ``g_stream`` beat is taken before
    its first ``i_stream`` beat, and the next one on the clock of its last beat (no bubble);
    the pipeline advances when ``o_stream``'s register is empty or being read.

    Returns ``(advance, accept, ends, take)``: the pipeline moves, an ``i_stream`` beat taken,
    a group's last beat taken, a ``g_stream`` beat taken (load the group's registers then).
    """
    advance = Signal()
    m.d.comb += advance.eq(~o_stream.valid | o_stream.ready)
    have = Signal()                      # the current group's target is loaded
    accept, ends, take = Signal(), Signal(), Signal()
    m.d.comb += [i_stream.ready.eq(advance & have), accept.eq(i_stream.valid & i_stream.ready),
                 ends.eq(accept & i_stream.payload.last), g_stream.ready.eq(~have | ends),
                 take.eq(g_stream.valid & g_stream.ready)]
    with m.If(take):
        m.d.sync += have.eq(1)
    with m.Elif(ends):
        m.d.sync += have.eq(0)
    return advance, accept, ends, take

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
        advance, accept, ends, take = group_targets(m, i, g, o)
        keep = Signal(COUNTER_WIDTH)
        placed = Signal(width)               # prefix << (shift + 4): the bits above the digit
        with m.If(take):
            m.d.sync += [keep.eq(g.payload.keep),
                         placed.eq(g.payload.prefix << (self.shift + contract.DIGIT_BITS))]

        # S1: each lane's digit, counted only when its upper digits match. The
        # pass's shift selects the digit (one of width / 4 nibbles, a multiplexer, no barrel
        # shifter) and a mask of the bits above it, registered once per pass; the group's
        # prefix is registered already shifted into place.
        nibbles = width // contract.DIGIT_BITS
        above_mask = Signal(width)
        m.d.sync += above_mask.eq(Cat(*[(self.shift < contract.DIGIT_BITS * j).replicate(
            contract.DIGIT_BITS) for j in range(nibbles)]))
        s1_valid, s1_last = Signal(), Signal()
        s1_keep = Signal(COUNTER_WIDTH)
        s1_counted = Signal(lanes)
        s1_digit = Signal(data.ArrayLayout(contract.DIGIT_BITS, lanes))
        with m.If(advance):
            m.d.sync += [s1_valid.eq(accept), s1_last.eq(i.payload.last), s1_keep.eq(keep)]
            for k in range(lanes):
                w = i.payload.data[k]
                mag = Signal(width, name=f"mag{k}")
                m.d.comb += mag.eq(Mux(w < 0, -w, w))
                m.d.sync += [
                    s1_counted[k].eq(i.payload.lane_valid[k] & (((mag ^ placed) & above_mask) == 0)),
                    s1_digit[k].eq(Array(mag.word_select(j, contract.DIGIT_BITS)
                                         for j in range(nibbles))[self.shift[2:]]),
                ]

        # S2: how many lanes of the beat hold each digit, as packed fields: a lane adds 1 to the
        # field of its digit in one of two words (digits 0-7, 8-15), and the lanes' words are
        # summed by one adder tree per word. A field holds up to `lanes`, so no carry crosses
        # into the next field (SIMD within a register: two wide adder trees instead of sixteen
        # popcounts).
        field = lanes.bit_length()
        per_word = DIGITS // 2
        ones = Array(C(1 << (field * j), field * per_word) for j in range(per_word))
        s2_valid, s2_last = Signal(), Signal()
        s2_keep = Signal(COUNTER_WIDTH)
        s2_words = [Signal(field * per_word, name=f"s2_word{h}") for h in range(2)]
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_last.eq(s1_last), s2_keep.eq(s1_keep)]
            for h, word in enumerate(s2_words):
                terms = [Mux(s1_counted[k] & (s1_digit[k][-1] == h), ones[s1_digit[k][:-1]], 0)
                         for k in range(lanes)]
                m.d.sync += word.eq(tree_sum(terms))
        s2_count = [s2_words[d // per_word].word_select(d % per_word, field)
                    for d in range(DIGITS)]

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
