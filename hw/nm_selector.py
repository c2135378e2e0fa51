"""Streaming N:M structured-sparsity selector.

The selector takes one tile of ``lanes`` signed ``width``-bit weights per beat (the threshold
engine's :class:`~hwprune.hw.threshold_engine.TileLayout`) and keeps the ``n`` largest magnitudes
in every group of ``M`` consecutive lanes (``M = 8`` while ``m8`` is high, else ``M = 4``). Groups
never straddle beats: lane ``i`` belongs to group ``i // M``, so ``lanes`` is a multiple of 8.

Ranking: lane ``k`` beats lane ``i`` of the same group when ``|w_k| > |w_i|``, or when the
magnitudes are equal and ``k < i`` (ties: the lower index wins, as NVIDIA ASP's ``m4n2_1d`` and a
stable sort do). A lane whose ``lane_valid`` bit is clear ranks below every valid lane and is never
kept. A lane is kept when it is valid and fewer than ``n`` lanes of its group beat it, so ``n = 0``
keeps nothing and ``n >= M`` keeps every valid lane. ``|-2**(width-1)| = 2**(width-1)`` is the
largest magnitude.

``m8`` and ``n`` are sampled with each input beat and travel down the pipeline with it, so they may
change between beats (a host holds them steady for a pass).

Output beat (:class:`NMTileLayout`):

``data``, ``mask``
    the dense pruned tile (pruned and padding lanes 0) and the keep mask, as the threshold engine's;
``values``
    the kept values compacted per group: group ``g``'s kept values in ascending lane order in slots
    ``g*M .. g*M + kept_g - 1``, the other slots 0;
``index``
    3 bits per slot: the lane index within the group of the value in that slot (``0..M-1``; for
    ``M = 4`` only the low 2 bits are used, as sparse tensor cores' 2-bit metadata), 0 for unused
    slots.

Pipeline (five register stages, one beat per clock while ``o_stream.ready`` is high)::

    i_stream -> [S1 input reg] -> [S2 pairwise |w| compare] -> [S3 rank < n: keep]
             -> [S4 slot of each kept lane] -> [S5 compaction, output reg] -> o_stream

All stages advance together when the output register is empty or being read
(``advance = ~o_stream.valid | o_stream.ready``), as in the threshold engine: ``o_stream.valid``
is a register output and never depends on ``o_stream.ready``.

Generated Verilog ports (the contract with ``sim/``; Amaranth flattens with ``__``)::

    clk, rst
    i_stream__payload  [lanes*width + lanes]  data (lane i at bits i*width..), then lane_valid
    i_stream__valid, i_stream__ready
    o_stream__payload  [2*lanes*width + 4*lanes]  data, mask [lanes], values, index [3*lanes]
    o_stream__valid, o_stream__ready
    m8, n [4], clear
    beats [32], kept [32]
"""

from amaranth import *
from amaranth.lib import data

from .arith import popcount
from ..contract import nm_selector as contract
from ..contract.block import COUNTER_WIDTH
from ..contract.nm_selector import INDEX_BITS
from .component import BlockComponent
from .layouts import amaranth_layout

__all__ = ["NMTileLayout", "NMSelector"]



def NMTileLayout(lanes, width):
    """One output beat (:func:`hwprune.contract.nm_selector.nm_tile_layout`)."""
    return amaranth_layout(contract.nm_tile_layout(lanes=lanes, width=width))


class NMSelector(BlockComponent):
    """N:M magnitude selector with runtime ``M`` (4 or 8) and ``N``.

    Parameters: ``lanes`` and ``width``, in the block's domain (:data:`contract.DOMAIN`:
    lanes a multiple of 8, ``hwprune info``).

    Attributes
    ----------
    i_stream : In(stream.Signature(TileLayout))
    o_stream : Out(stream.Signature(NMTileLayout))
    m8 : In(1)
        Group size: 8 when high, 4 when low. Sampled with each input beat.
    n : In(unsigned(4))
        Weights kept per group (0 keeps none, ``>= M`` keeps every valid lane). Sampled with each
        input beat.
    clear : In(1)
        Strobe: zero the counters.
    beats, kept : Out(unsigned(32))
        Output beats delivered and weights kept since the last ``clear``.
    """

    description = contract.BLOCK

    def elaborate(self, platform):
        m = Module()
        lanes, width = self.lanes, self.width
        blocks = lanes // 8
        tile = data.ArrayLayout(signed(width), lanes)

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o_stream.valid | self.o_stream.ready),
            self.i_stream.ready.eq(advance),
        ]

        def stage(name):
            """Valid, data, m8 and n registers of one stage."""
            valid = Signal(name=f"{name}_valid")
            tiles = Signal(tile, name=f"{name}_data")
            s_m8 = Signal(name=f"{name}_m8")
            s_n = Signal(4, name=f"{name}_n")
            return valid, tiles, s_m8, s_n

        # S1: input register, with the configuration the beat is to be selected with.
        s1_valid, s1_data, s1_m8, s1_n = stage("s1")
        s1_lane_valid = Signal(lanes)
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i_stream.valid), s1_data.eq(self.i_stream.payload.data),
                         s1_lane_valid.eq(self.i_stream.payload.lane_valid),
                         s1_m8.eq(self.m8), s1_n.eq(self.n)]

        # S2: pairwise compare inside each block of 8 lanes. The sort key puts lane_valid above
        # the magnitude, so padding ranks below every real weight. |-2**(w-1)| fits in `width`
        # unsigned bits. ge[b][(k, i)] (k < i): lane k beats lane i, i.e. key_k >= key_i.
        s2_valid, s2_data, s2_m8, s2_n = stage("s2")
        s2_lane_valid = Signal(lanes)
        keys = []
        for i in range(lanes):
            w = s1_data[i]
            mag = Signal(unsigned(width), name=f"mag{i}")
            m.d.comb += mag.eq(Mux(w < 0, -w, w))
            keys.append(Cat(mag, s1_lane_valid[i]))
        ge = [{} for _ in range(blocks)]
        for b in range(blocks):
            for i in range(8):
                for k in range(i):
                    ge[b][k, i] = Signal(name=f"ge{b}_{k}_{i}")
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_data.eq(s1_data),
                         s2_lane_valid.eq(s1_lane_valid), s2_m8.eq(s1_m8), s2_n.eq(s1_n)]
            for b in range(blocks):
                for (k, i), bit in ge[b].items():
                    m.d.sync += bit.eq(keys[8 * b + k] >= keys[8 * b + i])

        # S3: rank of each lane in its group (how many lanes beat it) and keep = rank < n.
        s3_valid, s3_data, s3_m8, s3_n = stage("s3")
        s3_keep = Signal(lanes)
        with m.If(advance):
            m.d.sync += [s3_valid.eq(s2_valid), s3_data.eq(s2_data), s3_m8.eq(s2_m8),
                         s3_n.eq(s2_n)]
        for b in range(blocks):
            for i in range(8):
                def beaten_by(k):
                    return ge[b][k, i] if k < i else ~ge[b][i, k]
                same4 = [k for k in range(8) if k != i and k // 4 == i // 4]
                other4 = [k for k in range(8) if k // 4 != i // 4]
                rank4 = popcount(Cat(*(beaten_by(k) for k in same4)))
                rank8 = rank4 + popcount(Cat(*(beaten_by(k) for k in other4)))
                rank = Mux(s2_m8, rank8, rank4)
                lane = 8 * b + i
                with m.If(advance):
                    m.d.sync += s3_keep[lane].eq(s2_lane_valid[lane] & (rank < s2_n))

        # S4: block-local slot of each kept lane: kept lanes before it in its group, plus 4 for
        # the upper group of a block when M = 4.
        s4_valid, s4_data, s4_m8, _ = stage("s4")
        s4_keep = Signal(lanes)
        s4_slot = Signal(data.ArrayLayout(unsigned(3), lanes))
        with m.If(advance):
            m.d.sync += [s4_valid.eq(s3_valid), s4_data.eq(s3_data), s4_m8.eq(s3_m8),
                         s4_keep.eq(s3_keep)]
        for b in range(blocks):
            lower_kept = popcount(s3_keep[8 * b:8 * b + 4])
            for i in range(8):
                lane = 8 * b + i
                half = 4 * (i // 4)
                before = popcount(s3_keep[8 * b + half:lane]) if i > half else C(0, 3)
                if i < 4:
                    slot = before
                else:
                    slot = before + Mux(s3_m8, lower_kept, 4)
                with m.If(advance):
                    m.d.sync += s4_slot[lane].eq(slot)

        # S5: output register: dense tile, mask, and each slot's value and index (a lane can only
        # land in a slot at or below its own block-local position).
        out = self.o_stream.payload
        with m.If(advance):
            m.d.sync += [self.o_stream.valid.eq(s4_valid), out.mask.eq(s4_keep)]
            m.d.sync += [out.data[i].eq(Mux(s4_keep[i], s4_data[i], 0)) for i in range(lanes)]
            for b in range(blocks):
                for t in range(8):
                    value = C(0, signed(width))
                    index = C(0, INDEX_BITS)
                    for i in range(t, 8):
                        lane = 8 * b + i
                        hit = s4_keep[lane] & (s4_slot[lane] == t)
                        value = value | Mux(hit, s4_data[lane], 0)
                        index = index | Mux(hit, Mux(s4_m8, i, i % 4), 0)
                    m.d.sync += [out.values[8 * b + t].eq(value),
                                 out.index[8 * b + t].eq(index)]

        # Counters count delivered beats, so a stalled output is never counted twice.
        beats = Signal(unsigned(COUNTER_WIDTH))
        kept = Signal(unsigned(COUNTER_WIDTH))
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += [beats.eq(beats + 1), kept.eq(kept + popcount(out.mask))]
        with m.If(self.clear):
            m.d.sync += [beats.eq(0), kept.eq(0)]
        m.d.comb += [self.beats.eq(beats), self.kept.eq(kept)]
        return m
