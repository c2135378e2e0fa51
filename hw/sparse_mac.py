"""Sparse multiply-accumulate unit: matrix-vector products that skip zero weights.

The unit computes ``y[c, r] = sum_k W[r, k] * x[c, k]`` for every activation vector (column) ``c``
of a layer, from a *compressed* weight stream that carries only the kept weights and where they
sit. The compressed formats are defined, encoded and decoded in one place, :mod:`hwprune.compress`;
in short, a weight beat holds up to ``lanes`` (value, index) slots of one row (slots
``0 .. count-1`` are live; ``last`` ends the row, ``final`` ends the matrix):

``fmt = 0``, unstructured (EIE-style relative indices)
    ``index`` is the number of zero weights skipped since the previous slot of the row (8 bits; a
    longer run of zeros is bridged by a padding slot of value 0 and index 255). Relative indices
    rather than an occupancy bitmap because a bitmap covers a fixed span of the dense row per beat,
    so a fixed-width bitmap keeps the unit busy at one density only, and costs ``1/density`` bits per
    kept weight; relative indices cost 8 bits per kept weight at any density, decode with one
    ``lanes``-wide prefix sum, and every beat carries ``lanes`` kept weights whatever the sparsity.
``fmt = 1``, N:M
    beats hold whole groups (``lanes // N`` groups of ``N`` slots); ``index`` is the position of the
    kept weight inside its group of ``M`` (``log2(M)`` bits used), ascending within a group.

Throughput: one weight beat per clock, so a row costs ``ceil(kept / lanes)`` cycles (N:M:
``ceil(groups / (lanes // N))``) whatever its dense length; see :data:`PIPELINE_LATENCY`.

Activations arrive on their own stream, ``lanes`` values per beat (``last`` on the final beat of a
vector), into one of two banks: the next vector loads while the weight stream runs over the current
one, so loading costs nothing once the first vector is in. Each lane reads its activation from the
bank by the decoded position (one read port per lane; on an FPGA: one block-RAM copy per lane).

Accumulator bound: products are ``width + act_width`` bits and a row has at most ``max_k`` terms,
so ``|y| <= max_k * 2**(width-1) * 2**(act_width-1)``; the accumulator and the output are signed
``width + act_width + log2(max_k)`` bits (:func:`accumulator_width`), which holds that bound,
``-2**(width-1) * -2**(act_width-1)`` summed ``max_k`` times included: no layer with rows of at
most ``max_k`` inputs can overflow.

Pipeline (the whole pipeline advances while the output register is empty or being read)::

    w_stream -> [S1 beat, decode positions] -> [S2 bank read] -> [S3 products] -> [S4 sum]
             -> [accumulate; on `last` load o_stream]

Generated Verilog ports (the contract with ``sim/``)::

    clk, rst
    w_stream__payload  value[lanes*width] index[lanes*8] count[bits_for(lanes)] last final
    w_stream__valid, w_stream__ready
    a_stream__payload  data[lanes*act_width] last
    a_stream__valid, a_stream__ready
    o_stream__payload  [accumulator_width] signed, one per row and activation vector
    o_stream__valid, o_stream__ready
    fmt [1], nm_n [3], nm_m_log2 [2]     configuration: change only while the unit is idle
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

__all__ = ["SUPPORTED_WIDTHS", "LANE_COUNTS", "INDEX_WIDTH", "DEFAULT_MAX_K", "MAX_N", "NM_M",
           "FMT_UNSTRUCTURED", "FMT_NM", "PIPELINE_LATENCY", "accumulator_width",
           "check_mac_params", "WeightBeatLayout", "ActBeatLayout", "SparseMac"]

SUPPORTED_WIDTHS = (4, 8, 16)
#: Lane counts: a power of two, so that a position splits into bank row and lane by bit slicing.
LANE_COUNTS = (4, 8, 16, 32, 64)
#: Bits of each slot's index field.
INDEX_WIDTH = 8
#: Longest row (inputs per output) of the default build; the Fmax/area cost is the bank depth.
DEFAULT_MAX_K = 4096
MAX_K_RANGE = (16, 65536)
#: N:M patterns: M in NM_M, 1 <= N < M.
NM_M = (4, 8)
MAX_N = 7
FMT_UNSTRUCTURED, FMT_NM = 0, 1
#: Stall-free, a pass takes ``F + B + PIPELINE_LATENCY - 1`` cycles from the first beat offered to
#: the last result taken, where ``F`` is the cycle the last vector's first weight beat leaves S1
#: and ``B`` the weight beats per vector (:func:`hwprune.golden.sparse_mac.stall_free_cycles`).
PIPELINE_LATENCY = 5


def accumulator_width(width, act_width, max_k):
    """Signed bits of the accumulator and of each output: ``width + act_width + log2(max_k)``."""
    return width + act_width + exact_log2(max_k)


def check_mac_params(*, lanes, width, act_width, max_k):
    """Validate unit parameters; raise with a message naming the allowed values."""
    if isinstance(lanes, bool) or lanes not in LANE_COUNTS:
        raise ValueError(f"lanes must be one of {LANE_COUNTS}, not {lanes!r}")
    if isinstance(width, bool) or width not in SUPPORTED_WIDTHS:
        raise ValueError(f"width must be one of {SUPPORTED_WIDTHS}, not {width!r}")
    if isinstance(act_width, bool) or act_width not in SUPPORTED_WIDTHS:
        raise ValueError(f"act_width must be one of {SUPPORTED_WIDTHS}, not {act_width!r}")
    lo, hi = MAX_K_RANGE
    if (not isinstance(max_k, int) or isinstance(max_k, bool) or not lo <= max_k <= hi
            or max_k & (max_k - 1) or max_k < 2 * lanes):
        raise ValueError(f"max_k must be a power of two from {lo} to {hi} and at least "
                         f"2 * lanes, not {max_k!r}")


class WeightBeatLayout(data.StructLayout):
    """One compressed weight beat: ``lanes`` (value, index) slots of one row."""

    def __init__(self, lanes, width):
        super().__init__({
            "value": data.ArrayLayout(signed(width), lanes),
            "index": data.ArrayLayout(unsigned(INDEX_WIDTH), lanes),
            "count": unsigned(bits_for(lanes)),
            "last": 1,
            "final": 1,
        })


class ActBeatLayout(data.StructLayout):
    """``lanes`` consecutive activations of one vector; ``last`` on the vector's final beat."""

    def __init__(self, lanes, act_width):
        super().__init__({
            "data": data.ArrayLayout(signed(act_width), lanes),
            "last": 1,
        })


def _inclusive_scan(values):
    """Inclusive prefix sums of ``values`` as a Kogge-Stone network (log2(n) adder levels)."""
    level = [Value.cast(v) for v in values]
    step = 1
    while step < len(level):
        level = [level[i] + level[i - step] if i >= step else level[i] for i in range(len(level))]
        step *= 2
    return level


def _adder_tree(values):
    terms = list(values)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class SparseMac(wiring.Component):
    """Sparse multiply-accumulate unit over a compressed weight stream.

    Parameters
    ----------
    lanes : int
        Weight slots (multipliers) per beat: 4, 8, 16, 32 or 64.
    width : int
        Bits per weight: 4, 8 or 16.
    act_width : int, optional
        Bits per activation: 4, 8 or 16 (default: ``width``).
    max_k : int
        Longest row the unit accepts (the depth of each activation bank), a power of two.

    Attributes
    ----------
    w_stream : In(stream.Signature(WeightBeatLayout))
    a_stream : In(stream.Signature(ActBeatLayout))
    o_stream : Out(stream.Signature(signed(accumulator_width)))
        One result per row, rows in order, vector after vector.
    fmt : In(1)
        0: unstructured (relative indices), 1: N:M.
    nm_n, nm_m_log2 : In(3), In(2)
        The N:M pattern (``M = 2**nm_m_log2``); ignored when ``fmt`` is 0.
    """

    def __init__(self, *, lanes, width, act_width=None, max_k=DEFAULT_MAX_K):
        act_width = width if act_width is None else act_width
        check_mac_params(lanes=lanes, width=width, act_width=act_width, max_k=max_k)
        self._lanes, self._width, self._act_width, self._max_k = lanes, width, act_width, max_k
        self._acc_width = accumulator_width(width, act_width, max_k)
        super().__init__({
            "w_stream": In(stream.Signature(WeightBeatLayout(lanes, width))),
            "a_stream": In(stream.Signature(ActBeatLayout(lanes, act_width))),
            "o_stream": Out(stream.Signature(signed(self._acc_width))),
            "fmt": In(1),
            "nm_n": In(3),
            "nm_m_log2": In(2),
        })

    lanes = property(lambda self: self._lanes)
    width = property(lambda self: self._width)
    act_width = property(lambda self: self._act_width)
    max_k = property(lambda self: self._max_k)
    acc_width = property(lambda self: self._acc_width)

    def elaborate(self, platform):
        m = Module()
        lanes, width, act_width = self._lanes, self._width, self._act_width
        lane_bits = exact_log2(lanes)
        row_bits = exact_log2(self._max_k // lanes)
        pos_width = max(exact_log2(self._max_k), bits_for(lanes * 2 ** INDEX_WIDTH)) + 2

        advance = Signal()
        m.d.comb += advance.eq(~self.o_stream.valid | self.o_stream.ready)

        # Activation banks: rows of `lanes` activations, bank number as the top address bit.
        m.submodules.banks = banks = Memory(shape=data.ArrayLayout(signed(act_width), lanes),
                                            depth=2 * (self._max_k // lanes), init=[])
        wr = banks.write_port()
        full = Signal(2)
        wbank, rbank = Signal(), Signal()
        wrow = Signal(row_bits)
        a = self.a_stream
        m.d.comb += a.ready.eq(~Mux(wbank, full[1], full[0]))
        a_fire = Signal()
        m.d.comb += [
            a_fire.eq(a.valid & a.ready),
            wr.addr.eq(Cat(wrow, wbank)),
            wr.data.eq(a.payload.data),
            wr.en.eq(a_fire),
        ]
        with m.If(a_fire):
            m.d.sync += wrow.eq(wrow + 1)
            with m.If(a.payload.last):
                m.d.sync += [wrow.eq(0), wbank.eq(~wbank)]

        # S1: the weight beat; it leaves S1 only when its vector's bank is full.
        w = self.w_stream
        s1_valid = Signal()
        s1 = Signal(WeightBeatLayout(lanes, width))
        fire = Signal()
        m.d.comb += [
            fire.eq(s1_valid & advance & Mux(rbank, full[1], full[0])),
            w.ready.eq(~s1_valid | fire),
        ]
        with m.If(w.ready):
            m.d.sync += [s1_valid.eq(w.valid), s1.eq(w.payload)]

        set_full, clear_full = Signal(2), Signal(2)
        m.d.comb += [
            set_full.eq(Mux(a_fire & a.payload.last, Mux(wbank, 0b10, 0b01), 0)),
            clear_full.eq(Mux(fire & s1.final, Mux(rbank, 0b10, 0b01), 0)),
        ]
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        with m.If(fire & s1.final):
            m.d.sync += rbank.eq(~rbank)

        # S1 decode: the position of every slot in its row.
        pos = Signal(pos_width)   # unstructured: next position; N:M: first position of the beat
        live = [Signal(name=f"live{s}") for s in range(lanes)]
        m.d.comb += [live[s].eq(s1.count > s) for s in range(lanes)]
        skips = _inclusive_scan([Mux(live[s], s1.index[s], 0) for s in range(lanes)])
        group_of = [Signal(range(lanes + 1), name=f"group{s}") for s in range(lanes)]
        nm_step = Signal(range(lanes * 2 ** 3 + 1))
        with m.Switch(self.nm_n):
            for n in range(1, MAX_N + 1):
                with m.Case(n):
                    m.d.comb += [group_of[s].eq(s // n) for s in range(lanes)]
                    m.d.comb += nm_step.eq(C(lanes // n, 7) << self.nm_m_log2)
        positions = []
        for s in range(lanes):
            p = Signal(pos_width, name=f"pos{s}")
            m.d.comb += p.eq(Mux(self.fmt,
                                 pos + (group_of[s] << self.nm_m_log2) + s1.index[s],
                                 pos + s + skips[s]))
            positions.append(p)
        with m.If(fire):
            with m.If(s1.last):
                m.d.sync += pos.eq(0)
            with m.Else():
                m.d.sync += pos.eq(pos + Mux(self.fmt, nm_step, s1.count + skips[-1]))

        # S2: one bank read per lane (the read happens on the edge that moves S1 to S2).
        s2_valid, s2_last = Signal(), Signal()
        s2_value = Signal(data.ArrayLayout(signed(width), lanes))
        s2_live = Signal(lanes)
        s2_lane = Signal(data.ArrayLayout(unsigned(lane_bits), lanes))
        reads = []
        for s in range(lanes):
            rd = banks.read_port()
            m.d.comb += [rd.addr.eq(Cat(positions[s][lane_bits:lane_bits + row_bits], rbank)),
                         rd.en.eq(advance)]
            reads.append(rd)
        with m.If(advance):
            m.d.sync += [s2_valid.eq(fire), s2_last.eq(s1.last), s2_value.eq(s1.value),
                         s2_live.eq(Cat(*live))]
            m.d.sync += [s2_lane[s].eq(positions[s][:lane_bits]) for s in range(lanes)]

        # S3: products (dead slots contribute 0).
        s3_valid, s3_last = Signal(), Signal()
        s3_prod = Signal(data.ArrayLayout(signed(width + act_width), lanes))
        with m.If(advance):
            m.d.sync += [s3_valid.eq(s2_valid), s3_last.eq(s2_last)]
            for s in range(lanes):
                act = reads[s].data[s2_lane[s]]
                m.d.sync += s3_prod[s].eq(Mux(s2_live[s], s2_value[s] * act, 0))

        # S4: the beat's sum.
        s4_valid, s4_last = Signal(), Signal()
        s4_sum = Signal(signed(width + act_width + lane_bits))
        with m.If(advance):
            m.d.sync += [s4_valid.eq(s3_valid), s4_last.eq(s3_last),
                         s4_sum.eq(_adder_tree([s3_prod[s] for s in range(lanes)]))]

        # Accumulate; a row's last beat moves the total to the output register.
        acc = Signal(signed(self._acc_width))
        total = Signal(signed(self._acc_width))
        m.d.comb += total.eq(acc + s4_sum)
        with m.If(advance):
            m.d.sync += self.o_stream.valid.eq(s4_valid & s4_last)
            with m.If(s4_valid):
                with m.If(s4_last):
                    m.d.sync += [self.o_stream.payload.eq(total), acc.eq(0)]
                with m.Else():
                    m.d.sync += acc.eq(total)
        return m
