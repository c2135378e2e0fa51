"""Magnitude histogram and radix select: the engine finds its own threshold for exact sparsity.

A pass streams tiles in (one beat per clock) and counts each valid weight's magnitude bin in a
per-lane bank of counters (one block RAM per lane on an FPGA, so every lane counts every clock).
A *select* walk then reads the bins from the largest magnitude down, adding the lanes' counts,
until the running total reaches the requested keep count ``k``; it reports

- ``found_bin``: the bin holding the k-th largest magnitude (the threshold),
- ``above``: how many weights lie strictly above it,
- ``ties``: ``k - above``, how many weights *at* the threshold to keep,

and clears every bin on the way, ready for the next pass. The host only configures passes and
reads these registers; it never sorts.

Binning: ``bin = (|w| >> shift) & (bins - 1)``, counted only for valid lanes and, when
``match_en`` is set, only for weights whose ``|w| >> 8`` equals ``match_value``. So width 4 and 8
take one pass (``shift = 0``; magnitudes 0..8 / 0..128), and width 16 takes two radix passes: the
high byte (``shift = 8``, magnitudes >> 8 are 0..128), then the low byte of the weights whose
high byte is the one found (``shift = 0``, ``match_en``). Histograms accumulate over any number of
tensors until the select, which is how global (cross-tensor) scope works.

With ``banks`` below ``lanes`` (a board whose line, not its unit, bounds a pass: the UP5K), a
beat is counted ``banks`` lanes a clock over ``lanes / banks`` clocks (each part's bins picked
from the offered beat into a register; the beat is taken with its last part), into ``banks`` counter
memories: the same counts for a fraction of the logic (one bank's update pipeline and walk
adder instead of one a lane).

The memories are not reset by ``rst``; instead, after reset (and at power-up) the unit walks all
bins writing zeros, busy for ``bins`` cycles, so a reset in mid-stream never leaves stale counts.

Ports (Verilog): ``clk``, ``rst``, ``i_stream__{payload,valid,ready}`` (payload as the threshold
engine's), ``shift``, ``match_en``, ``match_value``, ``keep``, ``select``, ``busy``, ``done``,
``found_bin``, ``above``, ``ties``, ``counted``.
"""

from amaranth import *
from amaranth.lib import data
from amaranth.lib.memory import Memory

from .arith import tree_sum
from ..contract import magnitude_histogram as contract
from ..contract.block import COUNTER_WIDTH
from ..contract.magnitude_histogram import histogram_bins
from .component import BlockComponent

__all__ = ["MagnitudeHistogram"]


class MagnitudeHistogram(BlockComponent):
    """Per-lane magnitude histograms with a radix-select walk.

    Parameters
    ----------
    lanes : int
        Weights per beat, 4 to 64.
    width : int
        Bits per weight: 4, 8 or 16.
    banks : int
        Counter banks, dividing ``lanes`` (default: one a lane, a beat a clock).

    Attributes
    ----------
    i_stream : In(stream.Signature(TileLayout))
        Tiles to count; ``ready`` is low while the unit is busy walking.
    shift, match_en, match_value : In
        Binning configuration of the pass (see the module documentation).
    keep : In(unsigned(32))
        The ``k`` the select walk looks for.
    select : In(1)
        Strobe (with no beat in flight): start the select walk.
    busy, done : Out(1)
        Walking; the last walk has finished (until the next beat or ``select``).
    found_bin, above, ties : Out
        Results of the last walk.
    counted : Out(unsigned(32))
        Weights counted in the pass that the last walk selected from.
    """

    description = contract.BLOCK

    def __init__(self, *, lanes, width, banks=None):
        super().__init__(lanes=lanes, width=width, banks=banks)
        self._lanes, self._width = self.lanes, self.width
        self._banks = self.params["banks"]
        self._bins = histogram_bins(width)

    @property
    def bins(self):
        return self._bins

    def _bin(self, m, w, valid, name):
        """A weight's bin and whether it counts (``valid``, and the pass's match)."""
        mag = Signal(unsigned(self._width), name=f"mag{name}")
        m.d.comb += mag.eq(Mux(w < 0, -w, w))
        lane_bin = Signal(unsigned(self._bins.bit_length() - 1), name=f"bin{name}")
        m.d.comb += lane_bin.eq((mag >> self.shift)[:len(lane_bin)])
        counted = Signal(name=f"counted{name}")
        if self._width > 8:
            m.d.comb += counted.eq(valid & (~self.match_en | ((mag >> 8) == self.match_value)))
        else:
            m.d.comb += counted.eq(valid & ~self.match_en)
        return lane_bin, counted

    def _parts(self, m):
        """The lanes counted this clock: ``(counting, bins, counted)``, ``banks`` lanes a clock.
        With one bank a lane the accepted beat itself; else the offered beat's parts are picked
        a clock each, their bins registered, and the beat is taken (``ready``) with its last
        part (a stream's beat holds still until it is taken)."""
        lanes, banks = self._lanes, self._banks
        stream_in = self.i_stream
        payload = stream_in.payload
        if banks == lanes:
            m.d.comb += stream_in.ready.eq(~self.busy)
            found = [self._bin(m, payload.data[i], payload.lane_valid[i], i)
                     for i in range(lanes)]
            return (stream_in.valid & stream_in.ready, *map(list, zip(*found)))
        ways = lanes // banks
        way = Signal(range(ways))
        pick = Signal()
        m.d.comb += [pick.eq(stream_in.valid & ~self.busy),
                     stream_in.ready.eq(~self.busy & (way == ways - 1))]
        with m.If(pick):
            m.d.sync += way.eq(Mux(way == ways - 1, 0, way + 1))
        part_valid = Signal()
        m.d.sync += part_valid.eq(pick)
        bins, counted = [], []
        for j in range(banks):
            # (timing: the bin, not the weight, is registered: the memory's address and its
            # transparent read's bypass compare start from a register)
            w = Signal(signed(self._width), name=f"pick{j}")
            valid = Signal(name=f"pick_valid{j}")
            with m.Switch(way):
                for k in range(ways):
                    with m.Case(k):
                        m.d.comb += [w.eq(payload.data[k * banks + j]),
                                     valid.eq(payload.lane_valid[k * banks + j])]
            lane_bin, lane_counted = self._bin(m, w, valid, f"_pick{j}")
            part_bin = Signal.like(lane_bin, name=f"part_bin{j}")
            part_counted = Signal(name=f"part_counted{j}")
            m.d.sync += [part_bin.eq(lane_bin), part_counted.eq(lane_counted)]
            bins.append(part_bin)
            counted.append(part_counted)
        return part_valid, bins, counted

    def elaborate(self, platform):
        m = Module()
        bins = self._bins
        bin_bits = bins.bit_length() - 1

        walking = Signal()           # select walk in progress (reads, accumulates, clears)
        clearing = Signal(init=1)    # clear walk after reset (writes zeros only)
        m.d.comb += self.busy.eq(walking | clearing)
        accept = Signal()
        m.d.comb += accept.eq(self.i_stream.valid & self.i_stream.ready)
        counting, lane_bins, lane_counted = self._parts(m)
        lanes = len(lane_bins)       # the lanes counted a clock: one a bank

        # The walk address counts down from the top bin.
        walk_addr = Signal(range(bins), init=bins - 1)
        walk_last = Signal()
        m.d.comb += walk_last.eq(walk_addr == 0)

        # Walk pipeline: the bin read this cycle is summed and cleared the next.
        rd_valid = Signal()          # read data of a walk step arrives this cycle
        rd_bin = Signal(range(bins))
        rd_final = Signal()

        # Per-bank update pipeline: the bin is read as its lanes are counted, its count + 1
        # registered the next clock, and written back the clock after. A count read one clock
        # before the previous write to the same bin is stale: that written count + 1 is taken
        # instead (a read in the same clock as the write sees it, the ports being transparent).
        upd_inc = Signal(lanes)
        upd_bin = Signal(data.ArrayLayout(unsigned(bin_bits), lanes))
        upd2_inc = Signal(lanes)
        upd2_bin = Signal(data.ArrayLayout(unsigned(bin_bits), lanes))
        upd_beat, upd2_beat = Signal(), Signal()     # a beat in the pipeline's stages
        updating = Signal()
        # (a unit with fewer banks than lanes: a part of a beat in its register, too)
        m.d.comb += updating.eq(upd_beat | upd2_beat | (counting if lanes < self._lanes else 0))
        m.d.sync += [upd2_inc.eq(upd_inc), upd2_bin.eq(upd_bin), upd_beat.eq(counting),
                     upd2_beat.eq(upd_beat)]
        counts = []
        for i in range(lanes):
            mem = Memory(shape=unsigned(COUNTER_WIDTH), depth=bins, init=[])
            m.submodules[f"bank{i}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            lane_bin = lane_bins[i]
            m.d.sync += [upd_inc[i].eq(counting & lane_counted[i]), upd_bin[i].eq(lane_bin)]
            m.d.comb += [
                rp.en.eq(1),
                rp.addr.eq(Mux(walking, walk_addr, lane_bin)),
            ]
            # Stage 2 writes `new_count`: the read count + 1, or, when the clock before wrote this
            # bin (`fwd`, decided a clock early), that written count + 1. Both increments are
            # registered (timing: no carry chain between the bin compare and the memory's
            # write data, which the transparent read port also bypasses to its output).
            new_count = Signal(unsigned(COUNTER_WIDTH), name=f"new_count{i}")
            read_p1 = Signal(unsigned(COUNTER_WIDTH), name=f"read_p1_{i}")
            last_p1 = Signal(unsigned(COUNTER_WIDTH), name=f"last_p1_{i}")
            fwd = Signal(name=f"fwd{i}")
            m.d.comb += new_count.eq(Mux(fwd, last_p1, read_p1))
            m.d.sync += [read_p1.eq(rp.data + 1), last_p1.eq(new_count + 1),
                         fwd.eq(upd2_inc[i] & ~clearing & ~rd_valid
                                & (upd2_bin[i] == upd_bin[i]))]
            with m.If(clearing):
                m.d.comb += [wp.addr.eq(walk_addr), wp.data.eq(0), wp.en.eq(1)]
            with m.Elif(rd_valid):
                m.d.comb += [wp.addr.eq(rd_bin), wp.data.eq(0), wp.en.eq(1)]
            with m.Else():
                m.d.comb += [wp.addr.eq(upd2_bin[i]), wp.data.eq(new_count),
                             wp.en.eq(upd2_inc[i])]
            counts.append(rp.data)

        # The lanes' counts of the bin being walked, summed in three registered steps (timing:
        # the block RAMs' outputs registered, then sums of four lanes, then their sum), with the
        # walk step's bin and last flag travelling beside them.
        stages = [(rd_valid, rd_bin, rd_final)]

        def follow(name):
            valid, at, last = Signal(name=f"{name}_valid"), Signal(range(bins), name=f"{name}_bin"), \
                Signal(name=f"{name}_final")
            m.d.sync += [valid.eq(stages[-1][0]), at.eq(stages[-1][1]), last.eq(stages[-1][2])]
            stages.append((valid, at, last))
        lane_counts = [Signal(COUNTER_WIDTH, name=f"lane_count{i}") for i in range(lanes)]
        m.d.sync += [r.eq(c) for r, c in zip(lane_counts, counts)]
        follow("read")
        # A pass counts fewer than 2**32 weights (``counted`` is 32 bits), so every sum of
        # counts fits COUNTER_WIDTH bits (timing: the select's subtraction is 33 bits long).
        quads = [Signal(COUNTER_WIDTH, name=f"quad{j}") for j in range((lanes + 3) // 4)]
        m.d.sync += [q.eq(tree_sum(lane_counts[4 * j:4 * j + 4])) for j, q in enumerate(quads)]
        follow("quad")
        bin_total = Signal(unsigned(COUNTER_WIDTH))
        m.d.sync += bin_total.eq(tree_sum(quads))
        follow("sum")
        sum_valid, sum_bin, sum_final = stages[-1]   # bin_total holds a walked bin's count
        # The decision's results load a clock after it, from registered candidates (timing: the
        # subtraction's sign enables `found` alone, not the result registers); `done` with them.
        take, last = Signal(), Signal()
        take_bin = Signal.like(self.found_bin)
        take_above, take_ties = Signal.like(self.above), Signal.like(self.ties)
        in_flight = Cat(*(v for v, _, _ in stages), take, last).any()

        # The decision keeps `need = keep - cum - 1` (signed): the bin holds the keep-th largest
        # magnitude when `need - bin_total` goes negative, the sign bit of one subtraction (a
        # carry chain) that is also the next `need`; `cum` adds up beside it.
        cum = Signal(unsigned(COUNTER_WIDTH))
        need = Signal(signed(COUNTER_WIDTH + 1))
        step = Signal(signed(COUNTER_WIDTH + 1))
        hit = Signal()
        m.d.comb += [step.eq(need - bin_total), hit.eq(step < 0)]
        found = Signal()
        counted_total = Signal(unsigned(COUNTER_WIDTH))
        inc_sum = Signal(range(lanes + 1))
        m.d.comb += inc_sum.eq(sum(upd_inc[i] for i in range(lanes)))
        m.d.sync += counted_total.eq(counted_total + inc_sum)

        m.d.sync += rd_valid.eq(0)
        # A select strobed while beats are still being counted (the update pipeline is two
        # clocks deep) waits here; `done` drops at once.
        select_pending = Signal()
        with m.If(self.select):
            m.d.sync += [select_pending.eq(1), self.done.eq(0)]
        with m.If(accept):
            m.d.sync += self.done.eq(0)
        with m.If(clearing):
            m.d.sync += walk_addr.eq(walk_addr - 1)
            with m.If(walk_last):
                m.d.sync += [clearing.eq(0), walk_addr.eq(bins - 1)]
        with m.Elif(walking):
            m.d.sync += [rd_valid.eq(1), rd_bin.eq(walk_addr), rd_final.eq(walk_last)]
            with m.If(walk_last):
                m.d.sync += [walking.eq(0), walk_addr.eq(bins - 1)]
            with m.Else():
                m.d.sync += walk_addr.eq(walk_addr - 1)
        # (the walk starts from the registered strobe, timing: the adapter's decision to walk
        # does not reach the walk's two hundred register enables in the same clock)
        with m.Elif(select_pending & ~in_flight & ~updating):
            m.d.sync += [walking.eq(1), select_pending.eq(0), cum.eq(0),
                         need.eq(self.keep - 1), found.eq(0), self.done.eq(0), counted_total.eq(0),
                         self.counted.eq(counted_total + inc_sum)]

        m.d.sync += [take.eq(0), last.eq(0)]
        with m.If(sum_valid):
            m.d.sync += [cum.eq(cum + bin_total), need.eq(step), take_bin.eq(sum_bin),
                         take_above.eq(cum), take_ties.eq(self.keep - cum)]
            with m.If(~found & hit):
                m.d.sync += [found.eq(1), take.eq(1)]
            with m.If(sum_final):
                m.d.sync += last.eq(1)
                with m.If(~found & ~hit):
                    # k exceeds everything counted: keep everything (threshold 0, all ties).
                    m.d.sync += [take.eq(1), take_bin.eq(0)]
        with m.If(take):
            m.d.sync += [self.found_bin.eq(take_bin), self.above.eq(take_above),
                         self.ties.eq(take_ties)]
        with m.If(last):
            m.d.sync += self.done.eq(1)
        return m
