"""Streaming magnitude-threshold masking engine.

The engine takes one tile of ``lanes`` signed ``width``-bit weights per beat and emits the tile with
every weight whose magnitude is below ``threshold`` set to zero, plus a ``lanes``-bit keep mask.

Exact-sparsity support: a weight whose magnitude *equals* the threshold (a tie) is kept only while
the tie budget lasts. Ties are granted in stream order (beat by beat, lane 0 first), so a host
that asks for ``tie_budget = k - count(|w| > T)`` gets exactly ``k`` kept weights. A budget of
``2**32 - 1`` keeps every tie, which is the plain ``|w| >= T`` rule.

Pipeline (four register stages, one beat per clock while ``o_stream.ready`` is high)::

    i_stream -> [S1 input reg] -> [S2 |w| compare] -> [S3 tie prefix count] -> [S4 mask] -> o_stream

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
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SUPPORTED_WIDTHS", "MIN_LANES", "MAX_LANES", "PIPELINE_LATENCY", "COUNTER_WIDTH",
           "check_params", "TileLayout", "MaskedTileLayout", "ThresholdEngine"]

SUPPORTED_WIDTHS = (4, 8, 16)
MIN_LANES, MAX_LANES = 4, 64
#: Register stages between an accepted input beat and its output beat.
PIPELINE_LATENCY = 4
COUNTER_WIDTH = 32


def check_params(*, lanes, width):
    """Validate engine parameters; raise with a message naming the allowed values."""
    if not isinstance(lanes, int) or isinstance(lanes, bool) or not MIN_LANES <= lanes <= MAX_LANES:
        raise ValueError(f"lanes must be an integer from {MIN_LANES} to {MAX_LANES}, not {lanes!r}")
    if width not in SUPPORTED_WIDTHS or isinstance(width, bool):
        raise ValueError(f"width must be one of {SUPPORTED_WIDTHS}, not {width!r}")


class TileLayout(data.StructLayout):
    """One input beat: ``lanes`` signed weights and a bitmap of the lanes that hold real data."""

    def __init__(self, lanes, width):
        super().__init__({
            "data": data.ArrayLayout(signed(width), lanes),
            "lane_valid": unsigned(lanes),
        })


class MaskedTileLayout(data.StructLayout):
    """One output beat: the pruned weights and the keep mask (bit i set: lane i kept)."""

    def __init__(self, lanes, width):
        super().__init__({
            "data": data.ArrayLayout(signed(width), lanes),
            "mask": unsigned(lanes),
        })


def prefix_counts(m, bits, *, domain="comb"):
    """Exclusive prefix population counts of ``bits`` (a list of 1-bit values).

    Returns a list ``p`` with ``p[i] = sum(bits[:i])``, built as a Kogge-Stone scan
    (``ceil(log2(n))`` adder levels) so the depth grows with the log of the lane count.
    """
    n = len(bits)
    count_shape = unsigned(max(1, n.bit_length()))
    level = [Value.cast(b).as_unsigned() for b in bits]
    step = 1
    while step < n:
        nxt = []
        for i in range(n):
            if i >= step:
                s = Signal(count_shape)
                m.d[domain] += s.eq(level[i] + level[i - step])
                nxt.append(s)
            else:
                nxt.append(level[i])
        level, step = nxt, step * 2
    # level[i] is now the inclusive count; shift right by one lane for the exclusive one.
    return [C(0, count_shape)] + [Value.cast(v) for v in level[:-1]]


def popcount(value):
    """Number of set bits of ``value``, as a balanced adder tree."""
    terms = [Value.cast(value)[i].as_unsigned() for i in range(len(Value.cast(value)))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class ThresholdEngine(wiring.Component):
    """Magnitude-threshold masking engine with an exact tie budget.

    Parameters
    ----------
    lanes : int
        Weights per beat, 4 to 64.
    width : int
        Two's complement bits per weight: 4, 8 or 16.

    Attributes
    ----------
    i_stream : In(stream.Signature(TileLayout))
    o_stream : Out(stream.Signature(MaskedTileLayout))
    threshold : In(unsigned(width))
        Magnitude threshold ``T``; ``|w| > T`` is kept, ``|w| == T`` is a tie.
    tie_budget : In(unsigned(32))
        Number of ties to keep, loaded by ``clear``.
    clear : In(1)
        Strobe: zero the counters and load the tie budget. Assert only while the pipeline is empty.
    beats, kept : Out(unsigned(32))
        Output beats delivered and weights kept since the last ``clear``.
    ties_left : Out(unsigned(32))
        Tie budget not yet used.
    """

    def __init__(self, *, lanes, width):
        check_params(lanes=lanes, width=width)
        self._lanes, self._width = lanes, width
        super().__init__({
            "i_stream": In(stream.Signature(TileLayout(lanes, width))),
            "o_stream": Out(stream.Signature(MaskedTileLayout(lanes, width))),
            "threshold": In(unsigned(width)),
            "tie_budget": In(unsigned(COUNTER_WIDTH)),
            "clear": In(1),
            "beats": Out(unsigned(COUNTER_WIDTH)),
            "kept": Out(unsigned(COUNTER_WIDTH)),
            "ties_left": Out(unsigned(COUNTER_WIDTH)),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        lanes, width = self._lanes, self._width
        count_shape = unsigned(lanes.bit_length())

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o_stream.valid | self.o_stream.ready),
            self.i_stream.ready.eq(advance),
        ]

        # S1: input register.
        s1_valid = Signal()
        s1 = Signal(TileLayout(lanes, width))
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i_stream.valid), s1.eq(self.i_stream.payload)]

        # S2: magnitude compare. |-2**(width-1)| = 2**(width-1) still fits in `width` unsigned bits.
        s2_valid = Signal()
        s2_data = Signal(data.ArrayLayout(signed(width), lanes))
        s2_gt = Signal(lanes)
        s2_eq = Signal(lanes)
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_data.eq(s1.data)]
            for i in range(lanes):
                w = s1.data[i]
                mag = Signal(unsigned(width), name=f"mag{i}")
                m.d.comb += mag.eq(Mux(w < 0, -w, w))
                live = s1.lane_valid[i]
                m.d.sync += [
                    s2_gt[i].eq(live & (mag > self.threshold)),
                    s2_eq[i].eq(live & (mag == self.threshold)),
                ]

        # S3: position of each tie among the ties of its beat, and the beat's tie count.
        s3_valid = Signal()
        s3_data = Signal(data.ArrayLayout(signed(width), lanes))
        s3_gt = Signal(lanes)
        s3_eq = Signal(lanes)
        s3_rank = Signal(data.ArrayLayout(count_shape, lanes))
        s3_ties = Signal(count_shape)
        ranks = prefix_counts(m, [s2_eq[i] for i in range(lanes)])
        with m.If(advance):
            m.d.sync += [s3_valid.eq(s2_valid), s3_data.eq(s2_data), s3_gt.eq(s2_gt),
                         s3_eq.eq(s2_eq), s3_ties.eq(ranks[-1] + s2_eq[lanes - 1])]
            m.d.sync += [s3_rank[i].eq(ranks[i]) for i in range(lanes)]

        # S4: grant ties from the budget in stream order, build the mask, zero the pruned weights.
        ties_left = Signal(unsigned(COUNTER_WIDTH))
        # min(ties_left, lanes) is all a single beat can use; ranks are < lanes.
        grantable = Signal(unsigned(lanes.bit_length()))
        m.d.comb += grantable.eq(Mux(ties_left >= lanes, lanes, ties_left))
        mask = Signal(lanes)
        for i in range(lanes):
            m.d.comb += mask[i].eq(s3_gt[i] | (s3_eq[i] & (s3_rank[i] < grantable)))
        used = Signal(unsigned(lanes.bit_length()))
        m.d.comb += used.eq(Mux(s3_ties < grantable, s3_ties, grantable))

        out = self.o_stream.payload
        with m.If(advance):
            m.d.sync += self.o_stream.valid.eq(s3_valid)
            m.d.sync += out.mask.eq(mask)
            m.d.sync += [out.data[i].eq(Mux(mask[i], s3_data[i], 0)) for i in range(lanes)]
            with m.If(s3_valid):
                m.d.sync += ties_left.eq(ties_left - used)

        # Counters count delivered beats, so a stalled output is never counted twice.
        beats = Signal(unsigned(COUNTER_WIDTH))
        kept = Signal(unsigned(COUNTER_WIDTH))
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += [beats.eq(beats + 1), kept.eq(kept + popcount(out.mask))]
        with m.If(self.clear):
            m.d.sync += [beats.eq(0), kept.eq(0), ties_left.eq(self.tie_budget)]
        m.d.comb += [self.beats.eq(beats), self.kept.eq(kept), self.ties_left.eq(ties_left)]
        return m
