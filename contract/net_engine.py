"""Network engine: a compiled pruned network run layer after layer from on-chip memory, skipping
zero weights and zero activations (RTL: :mod:`hwprune.hw.net_engine`; the compiler that turns a
PyTorch model into a program is :mod:`hwprune.deploy`).

The program (:class:`NetProgram`)
---------------------------------
A network of up to :data:`MAX_LAYERS` fully connected layers, each ``y = W x + b`` with ``x`` the
previous layer's activations (``width``-bit signed integers) and ``y`` exact integers. Activations
and outputs are grouped in *words* of ``lanes`` values; position ``q`` of a vector is lane
``q % lanes`` of word ``q // lanes``. The engine keeps five memories:

``weights`` (``max_beats`` beats)
    the kept weights, column by column (EIE's schedule): a beat holds one slot per lane, slot
    ``p`` a weight ``value`` and the *local row* ``row`` it adds to, meaning output position
    ``row * lanes + p``. Lane ``p`` therefore owns the outputs ``p, p + lanes, ...`` and keeps
    their accumulators in its own memory: every lane adds one product per clock, without
    conflicts. A column ``j`` with ``n_p`` kept weights in lane ``p`` takes ``max_p n_p`` beats;
    slots left over are padding (value 0). The compiler permutes each layer's outputs to even
    the lanes out (a relabelling: the next layer's columns follow).
``cols`` (``max_cols`` entries)
    per column of every layer (the layer's columns start at ``cols_base``, a multiple of
    ``lanes``): the first beat ``start`` and the number of beats ``count``.
``colmask`` (``max_cols / lanes`` words)
    one bit per column: the column has kept weights (``count > 0``).
``bias`` (``max_cols / lanes`` words)
    per output word of every layer (from ``bias_base``): ``lanes`` biases in accumulator units,
    ``2 * width + 4`` bits signed each.
``layers`` (:data:`MAX_LAYERS` entries)
    per layer: ``in_words``, ``out_words``, ``cols_base``, ``bias_base``, the requantization
    ``scale`` (:data:`SCALE_BITS`) / ``shift`` / ``relu``, ``final`` on the last layer and, for
    it, ``out_valid`` (lanes holding results in its last output word); a convolution's shape
    (:data:`CONV_FIELDS`, below).

Each memory's entry has its layout (:func:`entry_layouts`); a program beat (the ``p_stream``
payload, and an NE_LOAD frame's unit) is a memory select, an address, ``last`` and the selected
memory's entry. (Where the RTL keeps a memory is its own choice: the layer table shares the
bias memory's block RAMs.)

Convolutions (engines built with ``conv = 1``)
-----------------------------------------------
A layer with ``conv`` set is a 'same' convolution (kernel ``2 pad + 1`` square, stride 1) of an
input of ``2**h_log2`` x ``2**w_log2`` positions of ``2**c_log2`` channels, stored
position-major: input ``j = position * channels + channel``. Its outputs are ``lanes <<
k_log2`` channels at every position, position-major too, so output channel ``k`` lives in lane
``k % lanes``. The column schedule is the fully connected one with weight sharing: the column
table holds one entry per input channel (repeated up to ``period = max(channels, lanes)``
entries; input ``j`` takes entry ``j % period``), whose beats hold every kept weight of that
input channel, the slot's ``row`` naming the tap and the output channel (``dx`` in bits 0-1,
``dy`` in bits 2-3, ``k // lanes`` from :data:`CONV_ROW_SHIFT` up). Input ``j`` at ``(y, x)``
adds ``value * x[j]`` to output ``(y + pad - dy, x + pad - dx)``, channel ``k``, when that
position lies inside the image (the zero padding: a tap outside is dropped). The biases are
per output channel (``2**k_log2`` words from ``bias_base``). With ``pool`` set, the outputs
are max-pooled 2x2 (stride 2) before the requantization (the same as after it: requantizing
never decreases a value), leaving a quarter of the positions. Zero activations skip their
column as on a fully connected layer.

Semantics (:func:`run`, the golden model; the integer reference of a deployed model)
-----------------------------------------------------------------------------------
For every input vector: per layer, ``acc[r] = sum_j W[r, j] x[j]`` over the columns, then
``y = acc + bias``. The final layer's ``y`` are the results (logits). Every other layer's ``y``
becomes the next layer's activations::

    q = (y * scale + (2**shift >> 1)) >> shift      (floor shift: round half up)
    q = max(q, 0) if relu
    q = clip(q, -2**(width-1), 2**(width-1) - 1)

Schedule: a column is *selected* when it has kept weights and, with ``skip_zero`` set, its
activation is not zero; a selected column costs its ``count`` beats, one per clock. With
``skip_zero`` clear every column with kept weights runs (weight sparsity only). The golden model
counts the selected columns and their beats exactly (the RTL's ``columns`` / ``beats`` counters
must agree); it does not time the engine: cycle counts come from the RTL alone.
"""

from dataclasses import dataclass, field

import numpy as np

from .block import COUNTER_WIDTH, Block, PassSpec, Port, Stream
from .layout import Field, Layout
from .params import Domain, Param

__all__ = ["MAX_LAYERS", "SCALE_BITS", "SHIFT_BITS", "MEMORIES", "DOMAIN", "Geometry",
           "geometry", "entry_layouts", "entry_bytes", "NetLayer", "NetProgram", "NetJob", "NetResult", "check_program",
           "memory_bytes", "requantize", "column_beats", "layer_entries", "dense_weights",
           "layer_bias", "pool", "forward", "run", "CONV_FIELDS", "CONV_ROW_SHIFT",
           "program_bytes", "run_slot", "ne_config", "run_frame", "run_results", "BLOCK"]

MAX_LAYERS = 8
#: a layer's requantization scale: unsigned, 15 bits, so that it and a signed weight share one
#: signed 16-bit multiplier operand (the engine multiplies weights in the column phase and
#: requantizes in the output phase on the same multiplier, one per lane)
SCALE_BITS = 15
SHIFT_BITS = 6
#: A convolution layer's fields in the layer table (all zero on a fully connected layer):
#: ``conv``, ``pool`` (2x2 max pooling fused), log2 of the input channels (``c_log2``), of the
#: input's width and height (``w_log2``, ``h_log2``) and of the output words a position takes
#: (``k_log2``: ``lanes << k_log2`` output channels), and ``pad`` (the kernel is ``2 pad + 1``
#: square).
CONV_FIELDS = (("conv", 1), ("pool", 1), ("c_log2", 4), ("w_log2", 4), ("h_log2", 4),
               ("k_log2", 3), ("pad", 1))
CONV_BITS = sum(bits for _, bits in CONV_FIELDS)
#: a convolution weight's ``row`` field: ``dx`` (bits 0-1), ``dy`` (bits 2-3), then the output
#: word of its channel (``k // lanes``) from this bit up
CONV_ROW_SHIFT = 4
#: memory select codes of the program stream
MEM_WEIGHTS, MEM_COLS, MEM_COLMASK, MEM_BIAS, MEM_LAYERS = range(5)
MEMORIES = ("weights", "cols", "colmask", "bias", "layers")

DOMAIN = Domain("net_engine", (
    Param("lanes", choices=(4, 8, 16, 32), doc="lanes (multipliers, accumulator memories)"),
    Param("width", choices=(4, 8, 16), doc="bits per weight and per activation"),
    Param("max_rows", lo=16, hi=4096, power_of_two=True, default=512,
          doc="widest layer (inputs or outputs; activation and accumulator depth)"),
    Param("max_beats", lo=64, hi=65536, power_of_two=True, default=16384,
          doc="weight memory depth in beats"),
    Param("max_cols", lo=16, hi=16384, power_of_two=True, default=1024,
          doc="column table entries (inputs of all layers)"),
    Param("conv", choices=(0, 1), default=0,
          doc="convolution layers (1x1 or 3x3 'same', stride 1, 2x2 max pooling fused)"),
), rules=((lambda p: p["max_rows"] >= 2 * p["lanes"], "max_rows must be at least 2 * lanes"),
          (lambda p: p["max_cols"] >= 2 * p["lanes"], "max_cols must be at least 2 * lanes"),
          (lambda p: not p["conv"] or p["max_rows"] >= 16 * p["lanes"],
           "conv needs max_rows of at least 16 * lanes (the weights' row field holds a "
           "kernel tap)")))


def _log2(n):
    return int(n).bit_length() - 1


def _bits_for(n):
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class Geometry:
    """Field widths and memory depths of one build (:func:`geometry`)."""

    lanes: int
    width: int
    max_rows: int
    max_beats: int
    max_cols: int
    conv: int = 0

    words = property(lambda self: self.max_rows // self.lanes)          # per bank / lane memory
    row_bits = property(lambda self: _log2(self.max_rows // self.lanes))
    word_bits = property(lambda self: _bits_for(self.max_rows // self.lanes))
    beat_bits = property(lambda self: _log2(self.max_beats))
    col_bits = property(lambda self: _log2(self.max_cols))
    bias_words = property(lambda self: self.max_cols // self.lanes)
    bias_bits = property(lambda self: _log2(self.max_cols // self.lanes))
    #: accumulator and result bits: products are 2 * width bits, at most max_rows of them, plus
    #: a bias of the same bound
    acc_width = property(lambda self: 2 * self.width + _log2(self.max_rows) + 1)
    #: bias bits (signed): up to 16 times the largest product (the accumulator's full width
    #: would take the UP5K's engine two more block RAMs: 4 x 20 bits is five 16-bit wide ones)
    bias_width = property(lambda self: 2 * self.width + 4)

    def entry_bits(self):
        """Bits of one entry of each memory."""
        return {"weights": self.lanes * (self.width + self.row_bits),
                "cols": self.beat_bits + self.word_bits, "colmask": self.lanes,
                "bias": self.lanes * self.bias_width,
                "layers": 2 * self.word_bits + _bits_for(self.lanes) + self.col_bits
                + self.bias_bits + SCALE_BITS + SHIFT_BITS + 2 + CONV_BITS}

    def depths(self):
        return {"weights": self.max_beats, "cols": self.max_cols, "colmask": self.bias_words,
                "bias": self.bias_words, "layers": MAX_LAYERS}


#: The engine behind a board's UART bridge, by lanes (the iCEBreaker's 4 lanes keep their weight
#: beats in the UP5K's SPRAMs: 16 K beats of 4 x (8 + 7) bits, and 512 columns keep its column
#: table in 3 of the UP5K's 30 block RAMs; the ULX3S's 16 lanes in block RAM); other lane
#: counts get the default depths.
BRIDGE_ENGINES = {
    4: {"max_rows": 512, "max_beats": 16384, "max_cols": 512},
    16: {"max_rows": 2048, "max_beats": 8192, "max_cols": 2048, "conv": 1},
}


def bridge_engine(lanes, width):
    """The parameters of the engine a bridge with ``lanes`` x ``width`` holds."""
    return DOMAIN.check(lanes=lanes, width=width, **BRIDGE_ENGINES.get(lanes, {}))


def geometry(**params):
    p = DOMAIN.check(**params)
    return Geometry(p["lanes"], p["width"], p["max_rows"], p["max_beats"], p["max_cols"],
                    p["conv"])


# --- the program ------------------------------------------------------------------------------

@dataclass
class NetLayer:
    in_words: int
    out_words: int
    cols_base: int
    bias_base: int
    scale: int = 1
    shift: int = 0
    relu: bool = False
    final: bool = False
    out_valid: int = 0       # final layer: lanes holding results in its last word (0: all)
    conv: bool = False       # a convolution (the fields below; :data:`CONV_FIELDS`)
    pool: bool = False
    c_log2: int = 0
    w_log2: int = 0
    h_log2: int = 0
    k_log2: int = 0
    pad: int = 0

    def period(self, lanes):
        """Column table entries of a convolution: input ``j`` takes entry ``j % period``."""
        return 1 << max(self.c_log2, _log2(lanes))

    def columns(self, lanes):
        """Column table entries the layer holds."""
        return self.period(lanes) if self.conv else self.in_words * lanes


@dataclass
class NetProgram:
    """A compiled network: the contents of the engine's five memories."""

    lanes: int
    width: int
    layers: list                 # NetLayer per layer
    value: np.ndarray            # int16 (beats, lanes)
    row: np.ndarray              # uint16 (beats, lanes)
    cols: np.ndarray             # int64 (columns, 2): start, count
    bias: np.ndarray             # int64 (words, lanes)
    inputs: int = None           # input features (default: the first layer's words x lanes)
    #: position of each result among the values the final layer sends (default: in order)
    outputs: np.ndarray = None
    #: the engine input of each of the model's input features (a first convolution takes its
    #: input position-major: ``position * channels + channel``); default: in order
    input_map: np.ndarray = None

    def arrange(self, features):
        """The model's input features (vectors x features) as the engine's input vectors."""
        x = np.asarray(features)
        if self.input_map is None:
            return x
        if x.ndim != 2 or x.shape[1] != len(self.input_map):
            raise ValueError(f"inputs must be (vectors, {len(self.input_map)}), not {x.shape}")
        out = np.zeros((len(x), self.in_features), dtype=x.dtype)
        out[:, self.input_map] = x
        return out

    @property
    def colmask(self):
        """One bit per column (``count > 0``), ``(columns / lanes, lanes)``."""
        return (np.asarray(self.cols)[:, 1] > 0).reshape(-1, self.lanes)

    @property
    def in_features(self):
        return self.inputs if self.inputs is not None else self.layers[0].in_words * self.lanes

    def padded(self, inputs):
        """``inputs`` (vectors x in_features) zero padded to whole words, checked."""
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"inputs must be (vectors, {self.in_features}), not {x.shape}")
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"inputs must be integer activation codes, not {x.dtype}")
        if x.size and (x.min() < -2 ** (self.width - 1) or x.max() >= 2 ** (self.width - 1)):
            raise ValueError(f"an input does not fit {self.width} signed bits")
        out = np.zeros((len(x), self.layers[0].in_words * self.lanes), dtype=np.int64)
        out[:, :x.shape[1]] = x
        return out

    @property
    def sent(self):
        """Values the engine sends per vector (the final layer's words, ``out_valid`` lanes of
        the last one)."""
        last = self.layers[-1]
        return (last.out_words - 1) * self.lanes + (last.out_valid or self.lanes)

    @property
    def positions(self):
        return np.arange(self.sent) if self.outputs is None else np.asarray(self.outputs)

    @property
    def out_features(self):
        return len(self.positions)

    def usage(self):
        """Entries used in each memory."""
        return {"weights": int(np.asarray(self.value).shape[0]), "cols": int(len(self.cols)),
                "colmask": int(len(self.cols)) // self.lanes,
                "bias": int(np.asarray(self.bias).shape[0]), "layers": len(self.layers)}


def memory_bytes(program, **params):
    """Bytes each memory of the engine holds for ``program`` (entries used x entry bits / 8)."""
    params = {k: v for k, v in params.items() if k not in ("lanes", "width")}
    g = geometry(lanes=program.lanes, width=program.width, **params)
    bits = g.entry_bits()
    return {name: (n * bits[name] + 7) // 8 for name, n in program.usage().items()}


def _fail(msg):
    raise ValueError(msg)


def check_program(program, **params):
    """Raise ValueError unless ``program`` runs on the engine built with ``params``; a memory
    that overflows is named with the entries needed, held and over (every backend and the
    compiler call this before anything is sent)."""
    params = dict(params)
    for name in ("lanes", "width"):
        built = params.pop(name, getattr(program, name))
        if built != getattr(program, name):
            _fail(f"the program was compiled for {name} = {getattr(program, name)}, the engine "
                  f"is built with {built}")
    g = geometry(lanes=program.lanes, width=program.width, **params)
    lanes, w = g.lanes, g.width
    layers = list(program.layers)
    if not 1 <= len(layers) <= MAX_LAYERS:
        _fail(f"a program holds 1 to {MAX_LAYERS} layers, not {len(layers)} (the engine's "
              f"layer table has {MAX_LAYERS} entries)")
    convs = [i for i, layer in enumerate(layers) if layer.conv]
    if convs and not g.conv:
        _fail(f"layer {convs[0]} is a convolution; the engine is built without them (conv = 0)")
    used, depths = program.usage(), g.depths()
    for name in MEMORIES:
        if used[name] > depths[name]:
            bits = g.entry_bits()[name]
            _fail(f"the program needs {used[name]:,} {name} entries, the engine's {name} memory "
                  f"holds {depths[name]:,} ({used[name] - depths[name]:,} over; "
                  f"{(used[name] - depths[name]) * bits // 8:,} bytes)")
    value, row = np.asarray(program.value), np.asarray(program.row)
    cols, bias = np.asarray(program.cols, dtype=np.int64), np.asarray(program.bias)
    if value.ndim != 2 or value.shape[1] != lanes or row.shape != value.shape:
        _fail(f"weight beats must be (beats, {lanes}) values and rows")
    if cols.ndim != 2 or cols.shape[1] != 2 or len(cols) % lanes:
        _fail(f"the column table must be (columns, 2), a multiple of {lanes} columns")
    if bias.ndim != 2 or bias.shape[1] != lanes:
        _fail(f"biases must be (words, {lanes})")
    if value.size and (value.min() < -2 ** (w - 1) or value.max() >= 2 ** (w - 1)):
        _fail(f"a weight does not fit {w} signed bits")
    lo, hi = -2 ** (g.bias_width - 1), 2 ** (g.bias_width - 1) - 1
    if bias.size and (bias.min() < lo or bias.max() > hi):
        worst = int(bias.max()) if bias.max() > hi else int(bias.min())
        _fail(f"a bias ({worst}) does not fit the bias memory's {g.bias_width} signed bits "
              f"({lo} to {hi})")
    if program.outputs is not None:
        pos = np.asarray(program.outputs)
        if pos.ndim != 1 or not len(pos) or pos.min() < 0 or pos.max() >= program.sent:
            _fail(f"result positions must lie among the {program.sent} values the final "
                  f"layer sends")
    if program.input_map is not None:
        imap = np.asarray(program.input_map)
        if imap.ndim != 1 or not len(imap) or imap.min() < 0 or \
                imap.max() >= program.in_features or len(np.unique(imap)) != len(imap):
            _fail(f"the input map must place each input at its own one of the "
                  f"{program.in_features} engine inputs")
    for i, layer in enumerate(layers):
        where = f"layer {i}"
        if not (1 <= layer.in_words <= g.words and 1 <= layer.out_words <= g.words):
            _fail(f"{where}: {layer.in_words} input and {layer.out_words} output words, the "
                  f"engine holds 1 to {g.words} ({g.max_rows} values)")
        if i and layer.in_words != layers[i - 1].out_words:
            _fail(f"{where} takes {layer.in_words} words, layer {i - 1} gives "
                  f"{layers[i - 1].out_words}")
        if layer.final != (i == len(layers) - 1):
            _fail("exactly the last layer must be final")
        if layer.conv:
            _check_conv(g, layer, where, value, row, cols, bias)
        if layer.cols_base % lanes or layer.cols_base + layer.columns(lanes) > len(cols):
            _fail(f"{where}: its columns lie outside the column table")
        if not layer.conv and layer.bias_base + layer.out_words > len(bias):
            _fail(f"{where}: its biases lie outside the bias memory")
        if not (0 <= layer.scale < 2 ** SCALE_BITS and 0 <= layer.shift < 2 ** SHIFT_BITS):
            _fail(f"{where}: scale must fit {SCALE_BITS} and shift {SHIFT_BITS} unsigned bits")
        if not 0 <= layer.out_valid < lanes:
            _fail(f"{where}: out_valid must be 0 (all) to {lanes - 1}")
        c = cols[layer.cols_base:layer.cols_base + layer.columns(lanes)]
        most = (2 * layer.pad + 1) ** 2 << layer.k_log2 if layer.conv else layer.out_words
        if (c < 0).any() or (c[:, 1] > most).any() or (c.sum(axis=1) > len(value)).any():
            _fail(f"{where}: a column's beats lie outside the weight memory")
        beats, _ = column_beats(c)
        if layer.conv or not beats.size:
            continue
        if (row[beats] >= layer.out_words).any():
            _fail(f"{where}: a weight adds to a row beyond its {layer.out_words} output words")
    return g


def _check_conv(g, layer, where, value, row, cols, bias):
    """A convolution layer's fields against its neighbours and the build."""
    lanes = g.lanes
    if not g.conv:
        _fail(f"{where} is a convolution; the engine is built without them (conv = 0)")
    if layer.final:
        _fail(f"{where}: a convolution cannot be the final layer")
    for name, bits in CONV_FIELDS:
        if not 0 <= int(getattr(layer, name)) < 2 ** bits:
            _fail(f"{where}: {name} must fit {bits} unsigned bits")
    hw = 1 << (layer.h_log2 + layer.w_log2)
    if layer.in_words * lanes != hw << layer.c_log2:
        _fail(f"{where}: {layer.in_words * lanes} inputs are not {1 << layer.h_log2} x "
              f"{1 << layer.w_log2} positions of {1 << layer.c_log2} channels")
    if layer.pool and (layer.h_log2 == 0 or layer.w_log2 == 0):
        _fail(f"{where}: 2x2 pooling needs a height and a width of 2 or more")
    if layer.out_words != (hw >> (2 * layer.pool)) << layer.k_log2:
        _fail(f"{where}: {layer.out_words} output words are not its "
              f"{hw >> (2 * layer.pool)} positions of {1 << layer.k_log2} words")
    if hw << layer.k_log2 > g.words:
        _fail(f"{where}: its {hw} positions of {lanes << layer.k_log2} channels need "
              f"{hw << layer.k_log2} accumulator words a lane, the engine holds {g.words} "
              f"({g.max_rows} values)")
    if (1 << CONV_ROW_SHIFT) << layer.k_log2 > 2 ** g.row_bits:
        _fail(f"{where}: {lanes << layer.k_log2} output channels do not fit the weights' "
              f"{g.row_bits}-bit row field ({(1 << CONV_ROW_SHIFT) << layer.k_log2} codes)")
    if layer.bias_base + (1 << layer.k_log2) > len(bias):
        _fail(f"{where}: its biases lie outside the bias memory")
    c = cols[layer.cols_base:layer.cols_base + layer.period(lanes)]
    if len(c) == layer.period(lanes) and (c >= 0).all() and (c.sum(axis=1) <= len(value)).all():
        beats, _ = column_beats(c)
        r = row[beats]
        dy, dx = (r >> 2) & 3, r & 3
        if ((r >> CONV_ROW_SHIFT) >= 1 << layer.k_log2).any() or (dy > 2 * layer.pad).any() \
                or (dx > 2 * layer.pad).any():
            _fail(f"{where}: a weight's row names a channel or a kernel tap the layer lacks")


def requantize(y, scale, shift, relu, width):
    """A layer's outputs ``y`` (int64) to the next layer's ``width``-bit activations."""
    q = (np.asarray(y, dtype=np.int64) * int(scale) + ((1 << int(shift)) >> 1)) >> int(shift)
    if relu:
        q = np.maximum(q, 0)
    return np.clip(q, -2 ** (width - 1), 2 ** (width - 1) - 1)


def column_beats(cols):
    """The weight beats of column table entries ``cols`` (``(columns, 2)``: start, count), in
    order: ``(beat address, column)`` of each (vectorised)."""
    cols = np.asarray(cols, dtype=np.int64).reshape(-1, 2)
    counts = cols[:, 1]
    beat_col = np.repeat(np.arange(len(cols)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return cols[beat_col, 0] + np.arange(beat_col.size) - first, beat_col


def layer_entries(program, i):
    """The column table entry ``(start, count)`` of every input of layer ``i`` (a convolution's
    inputs share their channel's entry: input ``j`` takes entry ``j % period``)."""
    lanes, layer = program.lanes, program.layers[i]
    cols = np.asarray(program.cols, dtype=np.int64)
    j = np.arange(layer.in_words * lanes)
    return cols[layer.cols_base + (j & (layer.period(lanes) - 1) if layer.conv else j)]


def dense_weights(program, i):
    """Layer ``i``'s weight matrix (int64, outputs x inputs), decoded from the weight and
    column memories. A convolution's is the whole map from its input positions to its output
    positions before pooling, both position-major (``position * channels + channel``), a
    weight that would fall outside the image dropped (the zero padding)."""
    lanes, layer = program.lanes, program.layers[i]
    beat, j = column_beats(layer_entries(program, i))
    value = np.asarray(program.value, dtype=np.int64)[beat]
    r = np.asarray(program.row, dtype=np.int64)[beat]
    n_in = layer.in_words * lanes
    if not layer.conv:
        out = r * lanes + np.arange(lanes)
        w = np.zeros((layer.out_words * lanes, n_in), dtype=np.int64)
        np.add.at(w, (out.ravel(), np.repeat(j, lanes)), value.ravel())
        return w
    height, width, channels = 1 << layer.h_log2, 1 << layer.w_log2, lanes << layer.k_log2
    pos = (j >> layer.c_log2)[:, None]
    yo = (pos >> layer.w_log2) + layer.pad - ((r >> 2) & 3)
    xo = (pos & (width - 1)) + layer.pad - (r & 3)
    ok = (yo >= 0) & (yo < height) & (xo >= 0) & (xo < width)
    out = (yo * width + xo) * channels + (r >> CONV_ROW_SHIFT) * lanes + np.arange(lanes)
    w = np.zeros((height * width * channels, n_in), dtype=np.int64)
    np.add.at(w, (out[ok], np.broadcast_to(j[:, None], out.shape)[ok]), value[ok])
    return w


def layer_bias(program, i):
    """Layer ``i``'s biases, one per output (a convolution's: its channels' at every position,
    before pooling)."""
    layer = program.layers[i]
    bias = np.asarray(program.bias, dtype=np.int64)
    if not layer.conv:
        return bias[layer.bias_base:layer.bias_base + layer.out_words].reshape(-1)
    return np.tile(bias[layer.bias_base:layer.bias_base + (1 << layer.k_log2)].reshape(-1),
                   1 << (layer.h_log2 + layer.w_log2))


def pool(y, layer, lanes):
    """A convolution's 2x2 max pooling of ``y`` (vectors x outputs, position-major); other
    layers' ``y`` unchanged. (Pooling before the requantization is pooling after it: the
    requantization, ReLU included, never decreases.)"""
    if not layer.pool:
        return y
    h, w, k = 1 << layer.h_log2, 1 << layer.w_log2, lanes << layer.k_log2
    return y.reshape(len(y), h // 2, 2, w // 2, 2, k).max(axis=(2, 4)).reshape(len(y), -1)


def forward(program, inputs, *, skip_zero=True, weights=None):
    """The integer network: ``(results, selected columns, beats)`` for ``inputs`` (vectors x
    in_features); ``weights`` (the per-layer dense matrices) may be passed in precomputed."""
    x = program.padded(inputs)
    columns = beats = 0
    for i, layer in enumerate(program.layers):
        w = dense_weights(program, i) if weights is None else weights[i]
        c = layer_entries(program, i)[:, 1]
        selected = (c > 0) & (x != 0) if skip_zero else np.broadcast_to(c > 0, x.shape)
        columns += int(selected.sum())
        beats += int((selected * c).sum())
        y = pool(x @ w.T + layer_bias(program, i), layer, program.lanes)
        x = y if layer.final else requantize(y, layer.scale, layer.shift, layer.relu,
                                             program.width)
    return x[:, program.positions], columns, beats


@dataclass
class NetJob:
    """Load ``program`` and run ``inputs`` (vectors x in_features activation codes) through it."""

    program: NetProgram
    inputs: np.ndarray
    skip_zero: bool = True

    _LAYER_FIELDS = ("in_words", "out_words", "cols_base", "bias_base", "scale", "shift", "relu",
                     "final", "out_valid", *(name for name, _ in CONV_FIELDS))

    def to_arrays(self):
        """The job as flat arrays (the cocotb backend's job files)."""
        p = self.program
        return {"inputs": np.asarray(self.inputs), "skip_zero": np.asarray(self.skip_zero),
                "lanes": np.asarray(p.lanes), "width": np.asarray(p.width),
                "n_inputs": np.asarray(p.in_features), "outputs": p.positions,
                "value": np.asarray(p.value),
                "row": np.asarray(p.row), "cols": np.asarray(p.cols), "bias": np.asarray(p.bias),
                "layers": np.array([[int(getattr(x, k)) for k in self._LAYER_FIELDS]
                                    for x in p.layers], dtype=np.int64),
                **({} if p.input_map is None else {"input_map": np.asarray(p.input_map)})}

    @classmethod
    def from_arrays(cls, a):
        layers = [NetLayer(**dict(zip(cls._LAYER_FIELDS, map(int, row)))) for row in a["layers"]]
        for layer in layers:
            for flag in ("relu", "final", "conv", "pool"):
                setattr(layer, flag, bool(getattr(layer, flag)))
        program = NetProgram(lanes=int(a["lanes"]), width=int(a["width"]), layers=layers,
                             value=a["value"], row=a["row"], cols=a["cols"], bias=a["bias"],
                             inputs=int(a["n_inputs"]), outputs=a["outputs"],
                             input_map=a["input_map"] if "input_map" in a else None)
        return cls(program, a["inputs"], bool(a["skip_zero"]))


@dataclass
class NetResult:
    """Results (vectors x out_features, int64) and the engine's counters. ``cycles`` and
    ``layer_cycles`` (cycles spent in each layer, over all vectors) come from the RTL; the golden
    model leaves them 0."""

    out: np.ndarray
    columns: int
    beats: int
    vectors: int
    cycles: int = 0
    busy_cycles: int = 0
    layer_cycles: list = field(default_factory=lambda: [0] * MAX_LAYERS)

    #: the fields only the RTL fills in (not compared with the golden model)
    timed_fields = ("cycles", "busy_cycles", "layer_cycles")


def run(job, **params):
    """Run one :class:`NetJob` through the model."""
    check_program(job.program, **params)
    out, columns, beats = forward(job.program, job.inputs, skip_zero=job.skip_zero)
    return NetResult(out=out, columns=columns, beats=beats, vectors=len(out))


# --- streams, encode / decode ------------------------------------------------------------------

def entry_layouts(**params):
    """Each memory's entry, by memory name: the one description of the engine's memory shapes
    (the RTL derives them from it) and of a program beat's ``entry`` bits."""
    g = geometry(**params)
    return {
        "weights": Layout("weights_entry", [Field("value", g.width, g.lanes, signed=True),
                                            Field("row", max(1, g.row_bits), g.lanes)]),
        "cols": Layout("cols_entry", [Field("start", g.beat_bits), Field("count", g.word_bits)]),
        "colmask": Layout("colmask_entry", [Field("mask", 1, g.lanes)]),
        "bias": Layout("bias_entry", [Field("bias", g.bias_width, g.lanes, signed=True)]),
        "layers": Layout("layers_entry", [
            Field("in_words", g.word_bits), Field("out_words", g.word_bits),
            Field("out_valid", _bits_for(g.lanes)), Field("cols_base", g.col_bits),
            Field("bias_base", max(1, g.bias_bits)), Field("scale", SCALE_BITS),
            Field("shift", SHIFT_BITS), Field("relu", 1), Field("final", 1),
            *(Field(name, bits) for name, bits in CONV_FIELDS)]),
    }


def entry_bytes(**params):
    """Bytes of a program beat's ``entry``: the widest memory entry, rounded up to bytes."""
    return -(-max(layout.size for layout in entry_layouts(**params).values()) // 8)


def program_layout(**params):
    """One program beat: memory select, address, ``last`` (the program is complete) and the
    selected memory's entry (:func:`entry_layouts`), packed LSB first into ``entry`` bytes (the
    memories share those bits: a beat is as wide as the widest entry, not all of them)."""
    return Layout("program_beat", [Field("mem", 3), Field("addr", 16), Field("last", 1),
                                   Field("entry", 8, entry_bytes(**params))])


def input_layout(**params):
    """One word of an input vector; ``last`` on its final word."""
    g = geometry(**params)
    return Layout("input_word", [Field("data", g.width, g.lanes, signed=True), Field("last", 1)])


def output_layout(**params):
    """One word of the final layer's results; ``valid`` marks the lanes holding results."""
    g = geometry(**params)
    return Layout("output_word", [Field("value", g.acc_width, g.lanes, signed=True),
                                  Field("valid", 1, g.lanes)])


def program_beats(program, **params):
    """The program stream's fields (one beat per memory entry, ``last`` on the final one)."""
    g = check_program(program, **params)
    lanes = g.lanes
    parts = []

    def beats(mem, n, **fields):
        parts.append((mem, n, fields))

    value = np.asarray(program.value)
    beats(MEM_WEIGHTS, len(value), value=value, row=np.asarray(program.row))
    cols = np.asarray(program.cols, dtype=np.int64)
    beats(MEM_COLS, len(cols), start=cols[:, 0], count=cols[:, 1])
    beats(MEM_COLMASK, len(cols) // lanes, mask=program.colmask)
    beats(MEM_BIAS, len(program.bias), bias=np.asarray(program.bias, dtype=np.int64))
    lay = program.layers
    beats(MEM_LAYERS, len(lay), **{k: np.array([getattr(x, k) for x in lay], dtype=np.int64)
                                   for k in ("in_words", "out_words", "out_valid", "cols_base",
                                             "bias_base", "scale", "shift", "relu", "final",
                                             *(name for name, _ in CONV_FIELDS))})
    entries = entry_layouts(**params)
    nbytes = entry_bytes(**params)
    total = sum(n for _, n, _ in parts)
    out = {"mem": np.zeros(total, dtype=np.int64), "addr": np.zeros(total, dtype=np.int64),
           "last": np.zeros(total, dtype=np.int64),
           "entry": np.zeros((total, nbytes), dtype=np.uint8)}
    at = 0
    for mem, n, fields in parts:
        out["mem"][at:at + n] = mem
        out["addr"][at:at + n] = np.arange(n)
        layout = entries[MEMORIES[mem]]
        raw = layout.pack({k: np.asarray(v, dtype=np.int64).reshape(n, layout[k].count)
                           for k, v in fields.items()}, n).view(np.uint8).reshape(n, -1)
        used = min(nbytes, raw.shape[1])
        out["entry"][at:at + n, :used] = raw[:, :used]
        at += n
    out["last"][-1] = 1
    return out, total


def program_bytes(program, **params):
    """The program as NE_LOAD wire bytes: ``(beats, bytes a beat)`` uint8, each beat the program
    layout packed little-endian and cut to whole bytes (``protocol.program_beat_bytes``)."""
    fields, total = program_beats(program, **params)
    layout = program_layout(**params)
    nbytes = -(-layout.size // 8)
    return np.ascontiguousarray(layout.pack(fields, total).view(np.uint8)
                                .reshape(total, -1)[:, :nbytes])


# --- the NE_RUN wire format (docs/uart_protocol.md) ----------------------------------------------

def run_slot(program):
    """Result words a vector's slot takes in an NE_RUN frame: room for its input words
    (``lanes`` bytes each) and for its result words (``4 * lanes`` bytes each)."""
    from .protocol import result_bytes
    lanes = program.lanes
    in_words, out_words = program.layers[0].in_words, program.layers[-1].out_words
    return max(out_words, -(-in_words * lanes // result_bytes(lanes)))


def ne_config(program, *, skip_zero=True, new_program=False):
    """The NE_CONFIG payload that runs ``program`` (or, ``new_program``, that starts its load)."""
    import struct
    return struct.pack("<HHHBB", program.layers[0].in_words, program.layers[-1].out_words,
                       run_slot(program), int(bool(new_program)), int(bool(skip_zero)))


def run_frame(program, inputs):
    """The NE_RUN payload of ``inputs`` (vectors x in_features codes): a vector slot each,
    its input words first, zeros after."""
    from .protocol import result_bytes
    x = program.padded(inputs)
    frame = np.zeros((len(x), run_slot(program) * result_bytes(program.lanes)), dtype=np.uint8)
    frame[:, :x.shape[1]] = x.astype(np.int8).view(np.uint8)
    return frame


def run_results(program, answer, vectors):
    """The results (vectors x out_features, int64) in an NE_RUN answer's bytes (the status
    byte left off)."""
    words = np.frombuffer(bytes(answer), dtype="<i4").reshape(vectors, run_slot(program),
                                                             program.lanes)
    sent = words[:, :program.layers[-1].out_words].reshape(vectors, -1)[:, :program.sent]
    return sent[:, program.positions].astype(np.int64)


def encode(job, **params):
    g = geometry(**params)
    fields, total = program_beats(job.program, **params)
    x = job.program.padded(job.inputs)
    words = x.shape[1] // g.lanes
    last = np.zeros((len(x), words), dtype=bool)
    last[:, -1] = True
    return PassSpec(
        inputs={"p_stream": (fields, total, 1),
                "x_stream": ({"data": x.reshape(-1, g.lanes), "last": last.reshape(-1)},
                             len(x) * words, 1)},
        config={"skip_zero": int(bool(job.skip_zero))},
        items=len(x) * job.program.sent)


def decode(job, outputs, counters, cycles, **params):
    vectors = len(np.asarray(job.inputs))
    n = job.program.sent
    values = outputs["value"][outputs["valid"].astype(bool)].astype(np.int64)
    if counters["vectors"] != vectors:
        raise RuntimeError(f"the network engine ran {counters['vectors']} vectors, "
                           f"the job has {vectors}")
    out = values[:vectors * n].reshape(vectors, n)[:, job.program.positions]
    return NetResult(out=out, columns=counters["columns"],
                     beats=counters["beats"], vectors=counters["vectors"], cycles=cycles,
                     busy_cycles=counters["compute"],
                     layer_cycles=[counters[f"layer{i}"] for i in range(MAX_LAYERS)])


BLOCK = Block(
    name="net_engine",
    doc="a compiled pruned network, layer after layer from on-chip memory (zero weights and "
        "zero activations skipped)",
    domain=DOMAIN,
    streams=(Stream("p_stream", program_layout), Stream("x_stream", input_layout),
             Stream("y_stream", output_layout, "out", items="valid")),
    job=NetJob, result=NetResult, golden=run,
    component="hwprune.hw.net_engine:NetEngine",
    encode=encode, decode=decode,
    config=(Port("skip_zero", 1),),
    counters=(Port("program", 1), Port("compute", COUNTER_WIDTH), Port("beats", COUNTER_WIDTH),
              Port("columns", COUNTER_WIDTH), Port("vectors", COUNTER_WIDTH),
              *(Port(f"layer{i}", COUNTER_WIDTH) for i in range(MAX_LAYERS))),
    clear="clear",
    busy="init_busy",
    bench="hwprune.sim.cocotb_tb.net_engine_tb",
    bridge_bit=5,
)
