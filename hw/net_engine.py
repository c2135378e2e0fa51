"""Network engine: a compiled pruned network, layer after layer from on-chip memory.

The program format and its semantics are in :mod:`hwprune.contract.net_engine`; in short, every
layer is a column-wise (EIE) schedule over compressed weights: for each input activation
``x[j]`` whose column has kept weights (and, with ``skip_zero``, that is not zero), the
column's beats stream out of the weight memory one per clock, and lane ``p`` adds
``value * x[j]`` to the accumulator of its local row. Lanes own disjoint outputs (``row * lanes
+ p``), so the ``lanes`` accumulator memories each take one read-modify-write per clock.

Pipeline of the column phase (one weight beat per clock once it runs)::

    word   read an activation word and its column mask; pick the selected columns, one a clock
    col    read the column's (start, count)
    issue  count beats from the weight memory, back to back across columns
    mul    weight beat x activation, accumulator read (transparent for the write below)
    acc    accumulator write: old + product

Output phase (one word of ``lanes`` outputs a clock): accumulators and biases read (and the
accumulators cleared for the next layer), ``y = acc + bias``, ``y * scale``, rounding shift,
ReLU and clamp, written into the other activation bank; the final layer's ``y`` go out on
``y_stream`` instead. The two phases never overlap, so each lane has one multiplier for both:
``value * x`` in the column phase, ``y * scale`` in the output phase (``acc_width`` x 16 bits
signed: two SB_MAC16 a lane on the UP5K instead of three). After reset, the engine clears its
accumulators (``init_busy``).

Convolutions (``conv = 1`` builds; the contract has the format): a column is an input channel
walked at every input position. As a column issues, its position gives the first accumulator
word of that position and which kernel rows and columns land inside the image; each lane adds
the tap's offset (a layer constant: ``((pad - dy) * width + pad - dx) << k_log2`` words, nine
registers) and its channel word to that first word, and drops a product whose tap falls
outside. The output phase reads a pooled word's four accumulator words one a clock and keeps
their maximum; biases are per channel word. A build without ``conv`` has none of this logic.

Ports (the contract with ``sim/``; from the block's description)::

    p_stream   program beats: memory select, address, last and that memory's entry (its layout
               from the contract's entry_layouts, LSB first in the beat's entry bytes)
    x_stream   input words (lanes activations), last on a vector's final word
    y_stream   the final layer's result words: value[lanes] (signed), valid[lanes]
    skip_zero  configuration: skip zero activations
    clear      strobe: zero the counters and forget the program (a pass loads its own)
    program: a program is loaded; compute, beats, columns, vectors, layer0..layer7: counters
               (compute and the layer clocks leave out clocks spent waiting for the reader)
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract import net_engine as contract
from .component import NO_RW_CHECK, BlockComponent
from .layouts import amaranth_layout

__all__ = ["NetEngine"]

# The memories marked NO_RW_CHECK are never read and written at one address in one clock: the
# program is written only while the engine is idle (no read port enabled, or its data unused),
# and the activation banks are written in the output phase (the other bank) and read in the
# column phase. The accumulators stay transparent (their read-modify-write does meet its own
# write).


class _BeatMemory(wiring.Component):
    """The weight beats: one write port (program load) and one read port (data one clock after
    its address; the column phase). Block RAM through ``lib.memory``, or on the UP5K its four
    SPRAMs side by side (64 bits x 16 K words: one port, so the address is the write's while
    ``w_en``; the engine never reads and loads at once). The SPRAM form is not simulated (no
    model of the primitive here): the block RAM form is what every test runs."""

    def __init__(self, shape, depth):
        self.shape, self.depth = shape, depth
        super().__init__({"w_addr": In(range(depth)), "w_data": In(shape.size), "w_en": In(1),
                          "r_addr": In(range(depth)), "r_data": Out(shape.size)})

    def elaborate(self, platform):
        m = Module()
        if (str(getattr(platform, "family", "")).lower() == "ice40" and self.shape.size <= 64
                and self.depth <= 16384):
            addr = Mux(self.w_en, self.w_addr, self.r_addr)
            data = Cat(self.w_data, C(0, 64 - self.shape.size))
            outs = []
            for k in range(4):
                out = Signal(16, name=f"spram{k}_out")
                m.submodules[f"spram{k}"] = Instance(
                    "SB_SPRAM256KA", i_ADDRESS=addr, i_DATAIN=data[16 * k:16 * k + 16],
                    i_MASKWREN=C(0b1111, 4), i_WREN=self.w_en, i_CHIPSELECT=1,
                    i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=out)
                outs.append(out)
            m.d.comb += self.r_data.eq(Cat(*outs))
            return m
        m.submodules.mem = mem = Memory(shape=self.shape.size, depth=self.depth, init=[],
                                        attrs=NO_RW_CHECK)
        wp, rp = mem.write_port(), mem.read_port()
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                     rp.addr.eq(self.r_addr), self.r_data.eq(rp.data)]
        return m


class NetEngine(BlockComponent):
    """Runs a :class:`hwprune.contract.net_engine.NetProgram` on input vectors.

    Parameters
    ----------
    lanes, width : int
        Lanes (one multiplier and one accumulator memory each) and bits per weight/activation.
    max_rows, max_beats, max_cols : int
        Memory depths (:class:`hwprune.contract.net_engine.Geometry`).
    """

    description = contract.BLOCK

    def __init__(self, **params):
        super().__init__(**params)
        self.geometry = contract.geometry(**self.params)

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        lanes, width, acc_w = g.lanes, g.width, g.acc_width
        row_bits = max(1, g.row_bits)
        p, x, y = self.p_stream, self.x_stream, self.y_stream

        # --- memories --------------------------------------------------------------------------
        # memory entries: the contract's entry layouts (a program beat carries one of them)
        entries = {name: amaranth_layout(layout)
                   for name, layout in contract.entry_layouts(**self.params).items()}
        beat_shape, col_shape, layer_shape = (entries["weights"], entries["cols"],
                                              entries["layers"])
        act_word = data.ArrayLayout(signed(width), lanes)
        m.submodules.weights = weights = _BeatMemory(beat_shape, g.max_beats)
        m.submodules.cols = cols = Memory(shape=col_shape, depth=g.max_cols, init=[],
                                          attrs=NO_RW_CHECK)
        m.submodules.colmask = colmask = Memory(shape=unsigned(lanes), depth=g.bias_words,
                                                init=[], attrs=NO_RW_CHECK)
        # The bias memory also holds the layer table, after the biases (bias_words + layer):
        # a layer's entry is read once as the layer starts, when the output phase does not
        # use the port; on the UP5K the eight entries would otherwise take 4 more block RAMs,
        # or ~500 flip-flops.
        bias_shape = data.ArrayLayout(signed(g.bias_width), lanes)
        m.submodules.bias = bias = Memory(shape=max(bias_shape.size, layer_shape.size),
                                          depth=g.bias_words + contract.MAX_LAYERS, init=[],
                                          attrs=NO_RW_CHECK)
        m.submodules.acts = acts = Memory(shape=act_word, depth=2 * g.words, init=[],
                                          attrs=NO_RW_CHECK)
        accs = []
        for lane in range(lanes):
            mem = Memory(shape=signed(acc_w), depth=g.words, init=[])
            m.submodules[f"acc{lane}"] = mem
            accs.append(mem)

        # --- program load ----------------------------------------------------------------------
        loaded = Signal()
        idle = Signal()
        p_fire = Signal()
        m.d.comb += [p.ready.eq(idle), p_fire.eq(p.valid & p.ready)]
        pl = p.payload
        entry = Value.cast(pl.entry)          # the selected memory's entry, LSB first
        m.d.comb += [weights.w_addr.eq(pl.addr), weights.w_data.eq(entry[:beat_shape.size]),
                     weights.w_en.eq(p_fire & (pl.mem == contract.MEM_WEIGHTS))]
        for mem, code in [(cols, contract.MEM_COLS), (colmask, contract.MEM_COLMASK)]:
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(pl.addr), wp.data.eq(entry[:len(Value.cast(wp.data))]),
                         wp.en.eq(p_fire & (pl.mem == code))]
        b_wp = bias.write_port()
        m.d.comb += [b_wp.addr.eq(Mux(pl.mem == contract.MEM_LAYERS, g.bias_words + pl.addr,
                                      pl.addr)),
                     b_wp.data.eq(entry[:len(b_wp.data)]),
                     b_wp.en.eq(p_fire & ((pl.mem == contract.MEM_BIAS)
                                          | (pl.mem == contract.MEM_LAYERS)))]
        # A program counts once its last beat is in; a new beat or `clear` forgets the old one
        # (inputs sent before a pass's program arrives would otherwise run on the previous).
        m.d.comb += self.program.eq(loaded)
        with m.If(p_fire):
            m.d.sync += loaded.eq(pl.last)
        with m.Elif(self.clear):
            m.d.sync += loaded.eq(0)

        # --- the layer in progress -------------------------------------------------------------
        layer = Signal(range(contract.MAX_LAYERS))
        inbank = Signal()
        desc = Signal(layer_shape)
        desc_read = Signal()               # the bias port reads the layer's entry

        act_wp = acts.write_port()
        act_rd = acts.read_port()
        cm_rd = colmask.read_port()
        col_rd = cols.read_port()
        b_rd = bias.read_port()
        b_bias = data.View(bias_shape, b_rd.data[:bias_shape.size])
        acc_wps = [mem.write_port() for mem in accs]
        acc_rds = [mem.read_port(transparent_for=(wp,)) for mem, wp in zip(accs, acc_wps)]

        # Input load: x words into bank 0.
        xw = Signal(g.word_bits)
        x_fire = Signal()
        m.d.comb += [x.ready.eq(idle & loaded & ~p.valid), x_fire.eq(x.valid & x.ready)]

        # --- column phase state ----------------------------------------------------------------
        cols_on = Signal()                 # the column phase runs
        fetch_w = Signal(g.word_bits)      # next activation word to read
        b_valid, b_w = Signal(), Signal(g.word_bits)
        taken = Signal(lanes)
        c_valid, c_x = Signal(), Signal(signed(width))
        cur_addr, cur_left = Signal(g.beat_bits), Signal(g.word_bits)
        cur_x = Signal(signed(width))
        m1_valid, m1_x = Signal(), Signal(signed(width))
        m2_valid = Signal()
        m2_prod = Signal(data.ArrayLayout(signed(2 * width), lanes))
        m2_row = Signal(data.ArrayLayout(unsigned(row_bits), lanes))

        if g.conv:
            # A convolution's input j = position * channels + channel takes the column table
            # entry j % period (period = max(channels, lanes), a power of two): the masks of
            # the entry's word and of the entry, all ones on a fully connected layer. Layer
            # constants, registered (the column phase starts a clock after the entry is read,
            # and reads no mask before its second clock).
            lanes_log2 = lanes.bit_length() - 1
            p_log2 = Mux(desc.c_log2 > lanes_log2, desc.c_log2, lanes_log2)
            conv_cmask = Signal(g.col_bits + 1)
            conv_wmask = Signal(g.word_bits)
            m.d.sync += [conv_cmask.eq(Mux(desc.conv, (C(1, 16) << p_log2) - 1, ~0)),
                         conv_wmask.eq(Mux(desc.conv,
                                           (C(1, 16) << (p_log2 - lanes_log2)[:4]) - 1, ~0))]

        word = Signal(act_word)
        m.d.comb += word.eq(act_rd.data)
        nonzero = Cat(*(word[i] != 0 for i in range(lanes)))
        sel = Signal(lanes)
        m.d.comb += sel.eq(cm_rd.data & Mux(self.skip_zero, nonzero, ~C(0, lanes)) & ~taken)
        pick = Signal(lanes)
        pick_lane = Signal(range(lanes))
        m.d.comb += pick.eq(sel & (-sel)[:lanes])
        for i in reversed(range(lanes)):
            with m.If(sel[i]):
                m.d.comb += pick_lane.eq(i)

        issue = Signal()
        i_take = Signal()
        c_can = Signal()
        b_emit, b_finish, b_load = Signal(), Signal(), Signal()
        m.d.comb += [
            issue.eq(cur_left != 0),
            i_take.eq(c_valid & (cur_left <= 1)),
            c_can.eq(~c_valid | i_take),
            b_emit.eq(b_valid & sel.any() & c_can),
            b_finish.eq(b_valid & ((sel & ~pick) == 0) & (b_emit | ~sel.any())),
            b_load.eq(cols_on & (fetch_w < desc.in_words) & (~b_valid | b_finish)),
            act_rd.addr.eq(Mux(cols_on, Cat(fetch_w, inbank), 0)),
            act_rd.en.eq(b_load),
            cm_rd.addr.eq((desc.cols_base >> (lanes.bit_length() - 1))
                          + (fetch_w & conv_wmask if g.conv else fetch_w)),
            cm_rd.en.eq(b_load),
            col_rd.addr.eq(desc.cols_base + (Cat(pick_lane, b_w) & conv_cmask if g.conv
                                             else Cat(pick_lane, b_w))),
            col_rd.en.eq(b_emit),
            weights.r_addr.eq(cur_addr),
        ]
        with m.If(b_load):
            m.d.sync += [fetch_w.eq(fetch_w + 1), b_valid.eq(1), b_w.eq(fetch_w), taken.eq(0)]
        with m.Elif(b_finish):
            m.d.sync += b_valid.eq(0)
        with m.Elif(b_emit):
            m.d.sync += taken.eq(taken | pick)
        with m.If(b_emit):
            m.d.sync += [c_valid.eq(1), c_x.eq(word[pick_lane])]
        with m.Elif(i_take):
            m.d.sync += c_valid.eq(0)
        with m.If(i_take):
            m.d.sync += [cur_addr.eq(col_rd.data.start), cur_left.eq(col_rd.data.count),
                         cur_x.eq(c_x)]
        with m.Elif(issue):
            m.d.sync += [cur_addr.eq(cur_addr + 1), cur_left.eq(cur_left - 1)]
        m.d.sync += [m1_valid.eq(issue), m1_x.eq(cur_x)]
        if g.conv:
            # A convolution's column: its input position (column >> c_log2), then, as its beats
            # issue, the first accumulator word of that position and which of the kernel's rows
            # and columns (dy, dx: 0 to 2) land inside the image.
            c_pos = Signal(g.word_bits + lanes_log2)
            with m.If(b_emit):
                m.d.sync += c_pos.eq(Cat(pick_lane, b_w) >> desc.c_log2)
            y_in = (c_pos >> desc.w_log2) + desc.pad
            x_in = (c_pos & ((C(1, 16) << desc.w_log2) - 1)) + desc.pad
            cur_base, m1_base = Signal(g.row_bits), Signal(g.row_bits)
            cur_yok, cur_xok, m1_yok, m1_xok = Signal(3), Signal(3), Signal(3), Signal(3)
            with m.If(i_take):
                m.d.sync += [cur_base.eq(c_pos << desc.k_log2),
                             cur_yok.eq(Cat(*((y_in >= d) & (y_in < (C(1, 16) << desc.h_log2) + d)
                                              for d in range(3)))),
                             cur_xok.eq(Cat(*((x_in >= d) & (x_in < (C(1, 16) << desc.w_log2) + d)
                                              for d in range(3))))]
            m.d.sync += [m1_base.eq(cur_base), m1_yok.eq(cur_yok), m1_xok.eq(cur_xok)]
            # offset of tap (dy, dx): ((pad - dy) * width + pad - dx) << k_log2 words
            offsets = []
            for code in range(16):
                dx, dy = code & 3, code >> 2
                off = Signal(g.row_bits, name=f"tap_offset{code}")
                if dx < 3 and dy < 3:
                    m.d.sync += off.eq((((desc.pad - dy) << desc.w_log2) + desc.pad - dx)
                                       << desc.k_log2)
                offsets.append(off)
            offsets = Array(offsets)
            m2_ok = Signal(lanes)

        # mul: products and accumulator reads; acc: write back.
        beat = Signal(beat_shape)
        m.d.comb += beat.eq(weights.r_data)
        m.d.sync += m2_valid.eq(m1_valid)
        m1_row = []                        # the accumulator word each lane's beat adds to
        for lane in range(lanes):
            if g.conv:
                r = beat.row[lane]
                dx, dy = r[:2], r[2:4]
                addr = Signal(g.row_bits, name=f"conv_row{lane}")
                m.d.comb += addr.eq(Mux(desc.conv, m1_base + offsets[r[:4]]
                                        + r[contract.CONV_ROW_SHIFT:], r))
                m.d.sync += m2_ok[lane].eq(~desc.conv | (m1_yok.bit_select(dy, 1)
                                                         & m1_xok.bit_select(dx, 1)))
                m1_row.append(addr)
            else:
                m1_row.append(beat.row[lane])
            m.d.sync += m2_row[lane].eq(m1_row[lane])

        # --- output phase state ----------------------------------------------------------------
        out_on = Signal()
        o_w = Signal(g.word_bits)          # next word to issue
        o1_valid, o1_w = Signal(), Signal(g.word_bits)
        o2_valid, o2_w = Signal(), Signal(g.word_bits)
        o2_y = Signal(data.ArrayLayout(signed(acc_w), lanes))
        o3_valid, o3_w = Signal(), Signal(g.word_bits)
        o3_p = Signal(data.ArrayLayout(signed(acc_w + contract.SCALE_BITS + 1), lanes))

        # One multiplier a lane for both phases (they never overlap: the output phase starts
        # once the column pipeline is empty): weight x activation in the column phase,
        # y x scale in the output phase. On the UP5K that is two SB_MAC16 a lane, not three.
        for lane in range(lanes):
            mul_a = Signal(signed(acc_w), name=f"mul_a{lane}")
            mul_b = Signal(signed(contract.SCALE_BITS + 1), name=f"mul_b{lane}")
            product = Signal(signed(acc_w + contract.SCALE_BITS + 1), name=f"product{lane}")
            m.d.comb += [mul_a.eq(Mux(o2_valid, o2_y[lane], m1_x)),
                         mul_b.eq(Mux(o2_valid, desc.scale, beat.value[lane])),
                         m2_prod[lane].eq(product), o3_p[lane].eq(product)]
            m.d.sync += product.eq(mul_a * mul_b)
        o35_valid, o35_w = Signal(), Signal(g.word_bits)   # the product's window, registered
        o4_valid, o4_w = Signal(), Signal(g.word_bits)
        o4_q = Signal(act_word)
        final = desc.final
        o_issue = Signal()
        o_busy = Signal()
        o_addr = Signal(g.word_bits)       # the accumulator word read
        o1_addr = Signal(g.word_bits)
        o1_last = Signal()                 # the word's last read (pooling: its fourth)
        if g.conv:
            # A convolution's output word o_w is (position, channel word); its biases are the
            # channel word's; with pooling, each output word reads the four accumulator words
            # of its 2x2 window (o_sub: dx, dy) and keeps their maximum.
            o_sub = Signal(2)
            o1_first = Signal()
            kmask = Signal(1 << len(desc.k_log2))         # (channel words a position) - 1
            m.d.sync += kmask.eq(Mux(desc.conv, (C(1, len(kmask) + 1) << desc.k_log2) - 1, 0))
            o_kw = o_w & kmask
            o_t = o_w >> desc.k_log2
            o_px = o_t & (((C(1, 16) << desc.w_log2) - 1) >> 1)    # the pooled column
            o_py = (o_t << 1) >> desc.w_log2                      # and row
            pooled = (((Cat(o_sub[1], o_py) << desc.w_log2) | Cat(o_sub[0], o_px))
                      << desc.k_log2) | o_kw
            o_more = desc.pool & (o_sub != 3)
            m.d.comb += [o_addr.eq(Mux(desc.pool, pooled, o_w)),
                         b_rd.addr.eq(Mux(desc_read, g.bias_words + layer,
                                          desc.bias_base + Mux(desc.conv, o_kw, o_w)))]
            with m.If(o_issue):
                m.d.sync += o_sub.eq(Mux(o_more, o_sub + 1, 0))
            with m.If(o_issue & ~o_more):
                m.d.sync += o_w.eq(o_w + 1)
            m.d.sync += [o1_addr.eq(o_addr), o1_last.eq(~o_more), o1_first.eq(o_sub == 0)]
        else:
            m.d.comb += [o_addr.eq(o_w), o1_addr.eq(o1_w), o1_last.eq(1),
                         b_rd.addr.eq(Mux(desc_read, g.bias_words + layer,
                                          desc.bias_base + o_w))]
            with m.If(o_issue):
                m.d.sync += o_w.eq(o_w + 1)
        m.d.comb += [
            o_busy.eq(o1_valid | o2_valid | o3_valid | o35_valid | o4_valid | y.valid),
            o_issue.eq(out_on & (o_w < desc.out_words) & (~final | ~o_busy)),
        ]
        m.d.sync += [o1_valid.eq(o_issue), o1_w.eq(o_w),
                     o2_valid.eq(o1_valid & o1_last), o2_w.eq(o1_w),
                     o3_valid.eq(o2_valid & ~final), o3_w.eq(o2_w),
                     o35_valid.eq(o3_valid), o35_w.eq(o3_w),
                     o4_valid.eq(o35_valid), o4_w.eq(o35_w)]

        init = Signal(init=1)
        init_w = Signal(g.word_bits)
        m.d.comb += self.init_busy.eq(init)
        with m.If(init):
            m.d.sync += init_w.eq(init_w + 1)
            with m.If(init_w == g.words - 1):
                m.d.sync += init.eq(0)

        # The product's bits at or above shift + width (a layer's constant, registered: the
        # column phase runs for clocks before the first output).
        p_bits = acc_w + contract.SCALE_BITS + 1
        over_mask = Signal(p_bits)
        m.d.sync += over_mask.eq(Cat(*(desc.shift + width <= j for j in range(p_bits))))

        for lane in range(lanes):
            wp, rd = acc_wps[lane], acc_rds[lane]
            m.d.comb += [
                rd.addr.eq(Mux(out_on, o_addr, m1_row[lane])),
                wp.addr.eq(Mux(init, init_w, Mux(out_on, o1_addr, m2_row[lane]))),
                wp.data.eq(Mux(init | out_on, 0, rd.data + m2_prod[lane])),
                wp.en.eq(init | Mux(out_on, o1_valid, m2_valid & (m2_ok[lane] if g.conv
                                                                  else 1))),
            ]
            acc = rd.data
            if g.conv:
                # pooling: the largest of the window's accumulators (before the bias, which
                # the four share; the requantization never decreases)
                pmax = Signal(signed(acc_w), name=f"pool_max{lane}")
                acc = Mux(o1_first | (rd.data > pmax), rd.data, pmax)
                with m.If(o1_valid):
                    m.d.sync += pmax.eq(acc)
            # held after: the final layer's result word (and never while y offers it, which
            # a word entering the pipeline cannot do anyway: stated for the stream rules' proof)
            with m.If(o1_valid & o1_last & ~y.valid if g.conv else o1_valid & ~y.valid):
                m.d.sync += o2_y[lane].eq(acc + b_bias[lane])
            # (p + 2**(s-1)) >> s, rounded half up, as ((2p >> s) + 1) >> 1, clamped to `width`
            # bits. Only a window of width + 2 bits of 2p >> s is computed (a full-width shifter
            # of the product is ~250 LUTs a lane on the iCE40): a p whose bits at or above
            # s + width are not all its sign lies outside the window and saturates.
            # (two clocks: the window's shifter, then rounding and clamping; in one, the
            # path missed the UP5K top's 27 MHz)
            pv = o3_p[lane]
            outside = Signal(name=f"outside{lane}")
            sign = Signal(name=f"sign{lane}")
            window = Signal(signed(width + 2), name=f"window{lane}")
            rounded = Signal(signed(width + 2), name=f"rounded{lane}")
            m.d.sync += [outside.eq(((pv ^ pv[-1].replicate(len(pv))) & over_mask).any()),
                         sign.eq(pv[-1]), window.eq((pv << 1) >> desc.shift)]
            m.d.comb += rounded.eq((window + 1) >> 1)
            hi, lo = 2 ** (width - 1) - 1, -2 ** (width - 1)
            with m.If(outside):
                m.d.sync += o4_q[lane].eq(Mux(sign, Mux(desc.relu, 0, lo), hi))
            with m.Elif(rounded > hi):
                m.d.sync += o4_q[lane].eq(hi)
            with m.Elif((rounded < 0) & desc.relu):
                m.d.sync += o4_q[lane].eq(0)
            with m.Elif(rounded < lo):
                m.d.sync += o4_q[lane].eq(lo)
            with m.Else():
                m.d.sync += o4_q[lane].eq(rounded)

        # The final layer's result word is o2_y itself: o2_y changes only as a word enters the
        # output pipeline, and the final layer issues its next word once y was taken.
        m.d.comb += y.payload.value.eq(o2_y)
        vec_done = Signal()
        # Final layer: results out (one word at a time; the pipeline waits for the reader).
        with m.If(y.valid & y.ready):
            m.d.sync += y.valid.eq(0)
        # (the reader's beat is never overwritten: the pipeline issues one final word at a time)
        y_last = Signal()                  # the beat is the vector's last result word
        m.d.comb += vec_done.eq(y.valid & y.ready & y_last)
        with m.If(o2_valid & final & (~y.valid | y.ready)):
            last_word = o2_w == desc.out_words - 1
            m.d.sync += [y.valid.eq(1), y_last.eq(last_word),
                         y.payload.valid.eq(Mux(last_word & (desc.out_valid != 0),
                                                (C(1, lanes + 1) << desc.out_valid) - 1,
                                                ~C(0, lanes)))]

        # Activation bank writes: inputs, or the output phase into the other bank.
        m.d.comb += [
            act_wp.addr.eq(Mux(x_fire, Cat(xw, C(0, 1)), Cat(o4_w, ~inbank))),
            act_wp.data.eq(Mux(x_fire, x.payload.data, o4_q)),
            act_wp.en.eq(x_fire | o4_valid),
        ]

        # --- sequencing ------------------------------------------------------------------------
        with m.If(self.clear):
            m.d.sync += [c.eq(0) for c in (self.compute, self.beats, self.columns, self.vectors,
                                            *(getattr(self, f"layer{i}")
                                              for i in range(contract.MAX_LAYERS)))]
        with m.Else():
            with m.If(issue):
                m.d.sync += self.beats.eq(self.beats + 1)
            with m.If(b_emit):
                m.d.sync += self.columns.eq(self.columns + 1)
            with m.If(vec_done):
                m.d.sync += self.vectors.eq(self.vectors + 1)
            # compute: the engine's own clocks, not those it waits for its reader
            with m.If(~idle & ~init & ~(y.valid & ~y.ready)):
                m.d.sync += self.compute.eq(self.compute + 1)
                with m.Switch(layer):
                    for i in range(contract.MAX_LAYERS):
                        with m.Case(i):
                            c = getattr(self, f"layer{i}")
                            m.d.sync += c.eq(c + 1)

        cols_done = Signal()
        m.d.comb += cols_done.eq((fetch_w >= desc.in_words) & ~b_valid & ~c_valid & ~issue
                                 & ~m1_valid & ~m2_valid)
        with m.FSM(init="INIT"):
            with m.State("INIT"):
                with m.If(~init):
                    m.next = "IDLE"
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(x_fire):
                    m.d.sync += xw.eq(xw + 1)
                    with m.If(x.payload.last):
                        m.d.sync += [xw.eq(0), layer.eq(0), inbank.eq(0)]
                        m.next = "LAYER"
            with m.State("LAYER"):         # the layer's entry is read
                m.d.comb += desc_read.eq(1)
                m.next = "DESC"
            with m.State("DESC"):
                m.d.sync += [desc.eq(b_rd.data[:layer_shape.size]), fetch_w.eq(0),
                             cols_on.eq(1)]
                m.next = "COLUMNS"
            with m.State("COLUMNS"):
                with m.If(cols_done):
                    m.d.sync += [cols_on.eq(0), out_on.eq(1), o_w.eq(0)]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                with m.If((o_w >= desc.out_words) & ~o_busy):
                    m.d.sync += out_on.eq(0)
                    with m.If(final):
                        m.d.sync += inbank.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [layer.eq(layer + 1), inbank.eq(~inbank)]
                        m.next = "LAYER"
        return m
