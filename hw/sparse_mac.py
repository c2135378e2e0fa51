"""Sparse multiply-accumulate unit: matrix-vector products that skip zero weights.

The unit computes ``y[c, r] = sum_k W[r, k] * x[c, k]`` for every activation vector (column) ``c``
of a layer, from a *compressed* weight stream that carries only the kept weights and where they
sit. The compressed formats are defined, encoded and decoded in one place, :mod:`hwprune.compress`;
in short, a weight beat holds up to ``lanes`` (value, index) slots (slots ``0 .. count-1`` are live),
an ``end`` bit per slot marks the last slot of a row, and ``final`` ends the matrix:

``fmt = 0``, unstructured (EIE-style relative indices)
    ``index`` is the number of zero weights skipped since the previous slot of the row (8 bits; a
    longer run of zeros is bridged by a padding slot of value 0 and index 255). Rows follow each
    other slot after slot, so a beat can finish one row and start the next (a segmented prefix sum
    restarts positions and sums there): short rows (a 3x3x3 convolution has 27 inputs) do not
    waste the rest of a beat. Relative indices rather than an occupancy bitmap because a bitmap
    covers a fixed span of the dense row per beat, so a fixed-width bitmap keeps the multipliers
    busy at one density only and costs ``1/density`` bits per kept weight; relative indices cost 8
    bits per kept weight at any density, decode with one ``lanes``-wide prefix sum, and every beat
    carries ``lanes`` kept weights whatever the sparsity.
``fmt = 1``, N:M
    beats hold ``lanes // N`` whole groups of ``N`` slots, rows following each other group after
    group; ``index`` is the position of the kept weight inside its group of ``M`` (``log2(M)``
    bits used), ascending within a group: exactly N/M of the dense work.

Throughput: one weight beat per clock, so a matrix costs ``ceil(slots / lanes)`` cycles per vector
(slots: kept weights plus rare padding slots; N:M: ``ceil(groups / (lanes // N))``) whatever its
dense size; see :data:`PIPELINE_LATENCY`. A beat can end up to ``lanes`` rows, so a result beat
carries up to ``lanes`` results.

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

    w_stream -> [S1 beat, scan the slots' steps] -> [E half the scan] -> [D positions, bank read]
             -> [S2 bank row] -> [A the slot's activation] -> [S3 products]
             -> [H per-row sums in the beat, half the scan] -> [S4 the sums]
             -> [add the open row's accumulator; results out]

Generated Verilog ports (the contract with ``sim/``)::

    clk, rst
    w_stream__payload  value[lanes*width] index[lanes*8] count[bits_for(lanes)] end[lanes] final
    w_stream__valid, w_stream__ready
    a_stream__payload  data[lanes*act_width] last
    a_stream__valid, a_stream__ready
    o_stream__payload  value[lanes*accumulator_width] (signed) valid[lanes]: the results of the
                       rows ending in one weight beat, at their end slots; rows in order
    o_stream__valid, o_stream__ready
    fmt [1], nm_n [3], nm_m_log2 [2]     configuration: change only while the unit is idle
"""

from amaranth import *
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.utils import bits_for, exact_log2

from ..contract import sparse_mac as contract
from ..contract.sparse_mac import (DEFAULT_MAX_K, INDEX_WIDTH, MAX_N,
                                   accumulator_width)
from .arith import segmented_scan
from .component import BlockComponent
from .layouts import amaranth_layout

__all__ = ["WeightBeatLayout", "ActBeatLayout", "ResultLayout", "SparseMac"]

#: The two segmented scans register their sums after the levels of distance below this.
SCAN_SPLIT = 4


def WeightBeatLayout(lanes, width):
    """One compressed weight beat (:func:`hwprune.contract.sparse_mac.weight_beat_layout`)."""
    return amaranth_layout(contract.weight_beat_layout(lanes=lanes, width=width))


def ActBeatLayout(lanes, act_width):
    """One activation beat (:func:`hwprune.contract.sparse_mac.act_beat_layout`)."""
    return amaranth_layout(contract.act_beat_layout(lanes=lanes, width=act_width,
                                                    act_width=act_width))


def ResultLayout(lanes, acc_width):
    """One result beat: ``lanes`` signed ``acc_width``-bit results and their valid bitmap."""
    return amaranth_layout(contract.Layout("result", [
        contract.Field("value", acc_width, lanes, signed=True),
        contract.Field("valid", 1, lanes)]))


class SparseMac(BlockComponent):
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
    o_stream : Out(stream.Signature(ResultLayout))
        The results of the rows that end in a weight beat (``valid`` bit per slot), rows in order,
        vector after vector.
    fmt : In(1)
        0: unstructured (relative indices), 1: N:M.
    nm_n, nm_m_log2 : In(3), In(2)
        The N:M pattern (``M = 2**nm_m_log2``); ignored when ``fmt`` is 0.
    """

    description = contract.BLOCK

    def __init__(self, *, lanes, width, act_width=None, max_k=DEFAULT_MAX_K):
        super().__init__(lanes=lanes, width=width, act_width=act_width, max_k=max_k)
        p = self.params
        self._lanes, self._width = p["lanes"], p["width"]
        self._act_width, self._max_k = p["act_width"], p["max_k"]
        self._acc_width = accumulator_width(self._width, self._act_width, self._max_k)

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
        # One copy of both banks per lane, each with one write and one read port: the shape an
        # FPGA's block RAMs have (one memory with `lanes` read ports is what yosys'
        # memory_libmap would have to split, and at 16 lanes it aborts on it).
        banks = []
        for s in range(lanes):
            bank = Memory(shape=data.ArrayLayout(signed(act_width), lanes),
                          depth=2 * (self._max_k // lanes), init=[])
            m.submodules[f"bank{s}"] = bank
            banks.append(bank)
        writes = [bank.write_port() for bank in banks]
        full = Signal(2)
        wbank, rbank = Signal(), Signal()
        wrow = Signal(row_bits)
        a = self.a_stream
        m.d.comb += a.ready.eq(~Mux(wbank, full[1], full[0]))
        a_fire = Signal()
        m.d.comb += a_fire.eq(a.valid & a.ready)
        for wr in writes:
            m.d.comb += [wr.addr.eq(Cat(wrow, wbank)), wr.data.eq(a.payload.data),
                         wr.en.eq(a_fire)]
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

        # A bank is free for the next vector once its vector's last beat made its read (leaving
        # D, BANK_FREE_DELAY clocks after it left S1): `clear_full`, set below.
        set_full, clear_full = Signal(2), Signal(2)
        m.d.comb += set_full.eq(Mux(a_fire & a.payload.last, Mux(wbank, 0b10, 0b01), 0))
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        with m.If(fire & s1.final):
            m.d.sync += rbank.eq(~rbank)

        # S1 decode: the position of every slot in its row. A row may start and end anywhere in a
        # beat (unstructured); `starts[s]`: slot s begins a row after an earlier slot's row ended.
        pos = Signal(pos_width)   # the position after the open row's last slot so far
        live = Signal(lanes)
        ends = Signal(lanes)
        m.d.comb += [live[s].eq(s1.count > s) for s in range(lanes)]
        m.d.comb += ends.eq(s1.end & live)
        starts = Cat(C(0, 1), ends[:-1])
        # A slot's step: unstructured, the zeros it skips plus itself; N:M, a whole group of M
        # positions on the first slot of each group (groups never straddle beats).
        first_of_group = Signal(lanes)
        with m.Switch(self.nm_n):
            for n in range(1, MAX_N + 1):
                with m.Case(n):
                    m.d.comb += [first_of_group[s].eq(s % n == 0) for s in range(lanes)]
        group_size = Signal(4)
        m.d.comb += group_size.eq(C(1, 4) << self.nm_m_log2)
        # The scan in two halves (each level is an adder and a multiplexer; at 16 lanes, four
        # levels after the steps' own logic). It did not move the ULX3S top's placement
        # estimate (45.1 -> 44.5 MHz): that top's critical path is elsewhere.
        steps, started = segmented_scan(
            [Mux(live[s], Mux(self.fmt, Mux(first_of_group[s], group_size, 0), s1.index[s] + 1), 0)
             for s in range(lanes)],
            [starts[s] for s in range(lanes)], until=SCAN_SPLIT)

        # E: the first half of the scan registered; the beat keeps its bank.
        e_valid, e_bank, e_final = Signal(), Signal(), Signal()
        e_ends, e_starts = Signal(lanes), Signal(lanes)
        e_live, e_started = Signal(lanes), Signal(lanes)
        e_steps = Signal(data.ArrayLayout(unsigned(pos_width), lanes))
        e_value = Signal(data.ArrayLayout(signed(width), lanes))
        e_index = Signal(data.ArrayLayout(unsigned(INDEX_WIDTH), lanes))
        with m.If(advance):
            m.d.sync += [e_valid.eq(fire), e_bank.eq(rbank), e_final.eq(s1.final),
                         e_ends.eq(ends), e_starts.eq(starts),
                         e_live.eq(live), e_started.eq(Cat(*started)), e_value.eq(s1.value),
                         e_index.eq(s1.index)]
            m.d.sync += [e_steps[s].eq(steps[s]) for s in range(lanes)]
        steps, started = segmented_scan([e_steps[s] for s in range(lanes)],
                                        [e_started[s] for s in range(lanes)], step=SCAN_SPLIT)

        # D: the whole scan registered (with the scan, the positions' additions and the bank
        # read in one clock, and the pick of the activation before the multiplier (A), the
        # ULX3S top placed at 29 MHz; with D and A, at 45).
        d_valid, d_bank, d_final = Signal(), Signal(), Signal()
        d_ends, d_starts = Signal(lanes), Signal(lanes)
        d_live, d_started = Signal(lanes), Signal(lanes)
        d_steps = Signal(data.ArrayLayout(unsigned(pos_width), lanes))
        d_value = Signal(data.ArrayLayout(signed(width), lanes))
        d_index = Signal(data.ArrayLayout(unsigned(INDEX_WIDTH), lanes))
        with m.If(advance):
            m.d.sync += [d_valid.eq(e_valid), d_bank.eq(e_bank), d_final.eq(e_final),
                         d_ends.eq(e_ends),
                         d_starts.eq(e_starts), d_live.eq(e_live), d_started.eq(Cat(*started)),
                         d_value.eq(e_value), d_index.eq(e_index)]
            m.d.sync += [d_steps[s].eq(steps[s]) for s in range(lanes)]
        positions = []
        for s in range(lanes):
            p = Signal(pos_width, name=f"pos{s}")
            base = Mux(d_started[s], 0, pos) + d_steps[s]
            m.d.comb += p.eq(Mux(self.fmt, base - group_size + d_index[s], base - 1))
            positions.append(p)
        with m.If(advance & d_valid):
            m.d.sync += pos.eq(Mux(d_ends[-1], 0, Mux(d_started[-1], 0, pos) + d_steps[-1]))

        # S2: one bank read per lane (the read happens on the edge that moves D to S2).
        m.d.comb += clear_full.eq(Mux(advance & d_valid & d_final, Mux(d_bank, 0b10, 0b01), 0))
        s2_valid = Signal()
        s2_ends, s2_starts = Signal(lanes), Signal(lanes)
        s2_value = Signal(data.ArrayLayout(signed(width), lanes))
        s2_live = Signal(lanes)
        s2_lane = Signal(data.ArrayLayout(unsigned(lane_bits), lanes))
        reads = []
        for s in range(lanes):
            rd = banks[s].read_port()
            m.d.comb += [rd.addr.eq(Cat(positions[s][lane_bits:lane_bits + row_bits], d_bank)),
                         rd.en.eq(advance)]
            reads.append(rd)
        with m.If(advance):
            m.d.sync += [s2_valid.eq(d_valid), s2_ends.eq(d_ends), s2_starts.eq(d_starts),
                         s2_value.eq(d_value), s2_live.eq(d_live)]
            m.d.sync += [s2_lane[s].eq(positions[s][:lane_bits]) for s in range(lanes)]

        # A: each slot's activation picked from its bank row and registered (the block RAM's
        # output, the pick and the multiplier in one clock).
        a_valid = Signal()
        a_ends, a_starts, a_live = Signal(lanes), Signal(lanes), Signal(lanes)
        a_value = Signal(data.ArrayLayout(signed(width), lanes))
        a_act = Signal(data.ArrayLayout(signed(act_width), lanes))
        with m.If(advance):
            m.d.sync += [a_valid.eq(s2_valid), a_ends.eq(s2_ends), a_starts.eq(s2_starts),
                         a_live.eq(s2_live), a_value.eq(s2_value)]
            m.d.sync += [a_act[s].eq(reads[s].data[s2_lane[s]]) for s in range(lanes)]

        # S3: products (dead slots contribute 0).
        s3_valid = Signal()
        s3_ends, s3_starts = Signal(lanes), Signal(lanes)
        s3_prod = Signal(data.ArrayLayout(signed(width + act_width), lanes))
        with m.If(advance):
            m.d.sync += [s3_valid.eq(a_valid), s3_ends.eq(a_ends), s3_starts.eq(a_starts)]
            for s in range(lanes):
                m.d.sync += s3_prod[s].eq(Mux(a_live[s], a_value[s] * a_act[s], 0))

        # S4: per-row sums inside the beat (a segmented scan of the products), in two halves.
        sum_shape = signed(width + act_width + lane_bits + 1)
        sums, started = segmented_scan([s3_prod[s] for s in range(lanes)],
                                       [s3_starts[s] for s in range(lanes)], until=SCAN_SPLIT)
        h_valid = Signal()
        h_ends, h_started = Signal(lanes), Signal(lanes)
        h_sum = Signal(data.ArrayLayout(sum_shape, lanes))
        with m.If(advance):
            m.d.sync += [h_valid.eq(s3_valid), h_ends.eq(s3_ends), h_started.eq(Cat(*started))]
            m.d.sync += [h_sum[s].eq(sums[s]) for s in range(lanes)]
        s4_valid = Signal()
        s4_ends = Signal(lanes)
        s4_started = Signal(lanes)
        s4_sum = Signal(data.ArrayLayout(sum_shape, lanes))
        sums, started = segmented_scan([h_sum[s] for s in range(lanes)],
                                       [h_started[s] for s in range(lanes)], step=SCAN_SPLIT)
        with m.If(advance):
            m.d.sync += [s4_valid.eq(h_valid), s4_ends.eq(h_ends), s4_started.eq(Cat(*started))]
            m.d.sync += [s4_sum[s].eq(sums[s]) for s in range(lanes)]

        # Accumulate: the row open at the beat's start carries `acc`; every ended row goes out.
        acc = Signal(signed(self._acc_width))
        out = self.o_stream.payload
        with m.If(advance):
            m.d.sync += self.o_stream.valid.eq(s4_valid & s4_ends.any())
            with m.If(s4_valid):
                m.d.sync += out.valid.eq(s4_ends)
                m.d.sync += [out.value[s].eq(Mux(s4_started[s], 0, acc) + s4_sum[s])
                             for s in range(lanes)]
                m.d.sync += acc.eq(Mux(s4_ends[-1], 0,
                                       Mux(s4_started[-1], 0, acc) + s4_sum[lanes - 1]))
        return m
