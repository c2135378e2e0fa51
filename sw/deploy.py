"""Deploy a pruned PyTorch model onto the network engine: compile once, run batches on chip.

:func:`deploy` quantizes a model (``Linear`` layers with fused ``ReLU``; ``Flatten`` and
``Dropout`` pass through) to ``width``-bit weights and activations, compiles it into a
:class:`hwprune.contract.net_engine.NetProgram` (the engine's memory contents, EIE's column-wise
schedule, every layer's outputs spread over the lanes so that columns take few beats), checks
that it fits the engine's memories (a clear error naming the memory that overflows and by how
much, before anything is sent) and returns a :class:`Deployment`: calling it on a batch sends
the inputs and reads back only the logits; every layer runs back to back on the engine.

Everything on the host is vectorised: the compiler's work is a few sorts over the kept weights.
"""

from dataclasses import dataclass

import numpy as np

from .contract import net_engine as contract
from .quant import quantize

__all__ = ["ProgramLayer", "build_program", "Deployment", "deploy", "quantize_model",
           "load_program", "BOARD_ENGINES"]


@dataclass
class ProgramLayer:
    """One integer layer: ``y = weight @ x + bias``; then, unless final, the requantization.
    A convolution (``shape`` set: its input's height and width) has a ``(out, in, k, k)``
    weight (``k`` 1 or 3, 'same' padding, stride 1) and may end in 2x2 max pooling."""

    weight: np.ndarray          # int (out, in), or (out, in, k, k)
    bias: np.ndarray            # int (out,), accumulator units
    scale: int = 1
    shift: int = 0
    relu: bool = False
    shape: tuple = None         # a convolution's input (height, width)
    pool: bool = False          # a convolution's 2x2 max pooling
    #: how often each input is non-zero (example inputs): the columns zero-skipping runs, for
    #: the compiler to balance the lanes where it counts (default: every column alike)
    activity: np.ndarray = None


def _balance(weight, lanes, words):
    """Output position of each row: rows spread over the lanes (at most ``words`` each) so that
    the sum over columns of the busiest lane's kept weights (the column's beats) stays small.
    Greedy, heaviest rows first; returns positions ``local * lanes + lane``."""
    rows, k = weight.shape
    nz = weight != 0
    load = np.zeros((k, lanes), dtype=np.int64)
    colmax = np.zeros(k, dtype=np.int64)
    used = np.zeros(lanes, dtype=np.int64)
    total = np.zeros(lanes, dtype=np.int64)
    pos = np.empty(rows, dtype=np.int64)
    for r in np.argsort(-nz.sum(axis=1), kind="stable"):
        support = np.flatnonzero(nz[r])
        cost = (load[support] >= colmax[support, None]).sum(axis=0)
        # full lanes last; then the least added beats; then the least loaded lane
        key = np.where(used < words, 0, 1) * (1 << 40) + cost * (1 << 20) + total
        lane = int(np.argmin(key))
        pos[r] = used[lane] * lanes + lane
        used[lane] += 1
        total[lane] += support.size
        load[support, lane] += 1
        colmax[support] = np.maximum(colmax[support], load[support, lane])
    return pos


#: the lane refinement's work bound (array elements a pass: rows x rows x columns x lanes);
#: larger layers keep the greedy assignment
REFINE_BUDGET = 1 << 28
#: weight of the loads' sum of squares in the refinement's objective
SPREAD_TIE = 0.05


def _spread(load, act, tie=SPREAD_TIE):
    """The refinement's objective for loads ``(..., columns, lanes)``: expected beats, plus a
    little of the loads' sum of squares (the beats alone are flat under most single swaps;
    even columns are the way down)."""
    return (load.max(axis=-1) + tie * (load.astype(np.float64) ** 2).sum(axis=-1)) @ act


def _refine(weight, pos, lanes, words, activity=None, *, passes=4):
    """Improve a lane assignment (``pos``: ``local * lanes + lane`` per row) by swapping rows
    between lanes -- an empty slot counts as a row of zeros, so a swap may be a move -- while a
    swap lowers the expected beats ``sum_j activity[j] * max_p n[j, p]`` (``n[j, p]``: column
    ``j``'s kept weights in lane ``p``; ``activity[j]``: how often input ``j`` is non-zero,
    the columns zero-skipping runs; default 1). Each row takes the best swap it has (all
    candidates at once, vectorised); a few passes."""
    rows, k = weight.shape
    slots = words * lanes
    if slots * slots * k * lanes > REFINE_BUDGET or rows < 2:
        return pos
    nz = np.zeros((slots, k), dtype=np.int32)          # by slot (position), zeros where empty
    nz[pos] = weight != 0
    act = np.ones(k) if activity is None else np.asarray(activity, dtype=np.float64)
    lane = np.arange(slots) % lanes
    load = np.stack([nz[lane == p].sum(axis=0) for p in range(lanes)], axis=1)   # (k, lanes)
    who = np.full(slots, -1)
    who[pos] = np.arange(rows)                         # the row in each slot
    cols = np.arange(k)
    for _ in range(passes):
        swapped = False
        for a in range(slots):
            p = lane[a]
            b = np.flatnonzero((lane != p) & ((who >= 0) | (who[a] >= 0)))
            if not b.size:
                continue
            d = nz[b] - nz[a]                           # (B, k): into lane p, out of lane q
            new = np.broadcast_to(load, (len(b), k, lanes)).copy()
            new[:, :, p] += d
            new[np.arange(len(b))[:, None], cols[None, :], lane[b][:, None]] -= d
            gain = _spread(load[None], act)[0] - _spread(new, act)
            best = int(np.argmax(gain))
            if gain[best] > 1e-9:
                c = b[best]
                load = new[best]
                nz[[a, c]] = nz[[c, a]]
                who[[a, c]] = who[[c, a]]
                swapped = True
        if not swapped:
            break
    out = np.empty(rows, dtype=np.int64)
    out[who[who >= 0]] = np.flatnonzero(who >= 0)
    return out


def _pack(col, lane, row, v, n_cols, lanes):
    """Weight beats of one layer from its kept weights (column, lane, row field, value): per
    column its weights lane by lane, the column taking as many beats as its busiest lane.
    Returns (value, row, counts) with ``counts`` per column."""
    order = np.lexsort((row, lane, col))
    col, lane, row, v = col[order], lane[order], row[order], v[order]
    group = col * lanes + lane
    first = np.r_[0, np.flatnonzero(np.diff(group)) + 1] if group.size else np.zeros(0, int)
    sizes = np.diff(np.r_[first, group.size])
    rank = np.arange(group.size) - np.repeat(first, sizes)
    counts = np.zeros(n_cols, dtype=np.int64)
    np.maximum.at(counts, col, rank + 1)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    beats = int(counts.sum())
    value = np.zeros((beats, lanes), dtype=np.int16)
    rows = np.zeros((beats, lanes), dtype=np.uint16)
    value[starts[col] + rank, lane] = v
    rows[starts[col] + rank, lane] = row
    return value, rows, counts


def _encode_columns(weight, in_pos, out_pos, in_cols, lanes, *, dense=False):
    """The beats of one fully connected layer: per column (input position) its kept weights
    (``dense``: every weight, zeros included), lane by lane. Returns (value, row, counts) with
    ``counts`` per input position."""
    r, k = np.nonzero(np.ones(weight.shape, dtype=bool) if dense else weight)
    return _pack(in_pos[k], out_pos[r] % lanes, out_pos[r] // lanes, weight[r, k], in_cols,
                 lanes)


def _pow2_log2(n, what):
    if n < 1 or n & (n - 1):
        raise ValueError(f"deploy: {what} must be a power of two, not {n}")
    return int(n).bit_length() - 1


def _encode_conv(layer, i, in_pos, in_channels, lanes, beat_at, cols_at, bias_at, *,
                 dense=False):
    """A convolution's beats (one column per input channel: its weights at every tap, lane
    ``k % lanes`` for output channel ``k``), column table (``period`` entries, entry ``t`` the
    channel ``t % channels``), biases and layer entry; and its outputs' positions (``k * H' *
    W' + position`` of the torch output -> ``position * channels + k`` on the engine)."""
    w = np.asarray(layer.weight, dtype=np.int64)
    if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] not in (1, 3):
        raise ValueError(f"deploy: layer {i}: a convolution's weight must be (out, in, k, k) "
                         f"with k 1 or 3, not {w.shape}")
    out_c, in_c, k = w.shape[:3]
    height, width = map(int, layer.shape)
    h_log2, w_log2 = _pow2_log2(height, "a convolution's height"), \
        _pow2_log2(width, "a convolution's width")
    if in_c > in_channels or len(in_pos) != in_c * height * width:
        raise ValueError(f"deploy: layer {i} takes {in_c} channels of {height}x{width}, the "
                         f"previous layer gives {len(in_pos)} values")
    c_log2 = _pow2_log2(in_channels, "a convolution's channels")
    k_log2 = max(0, int(np.ceil(np.log2(-(-out_c // lanes)))))
    channels = lanes << k_log2
    pad = (k - 1) // 2
    o, c, dy, dx = np.nonzero(np.ones(w.shape, dtype=bool) if dense else w)
    row = (o // lanes) << contract.CONV_ROW_SHIFT | dy << 2 | dx
    value, rows, counts = _pack(c, o % lanes, row, w[o, c, dy, dx], in_channels, lanes)
    period = max(in_channels, lanes)
    t = np.arange(period) % in_channels
    starts = np.r_[0, np.cumsum(counts)[:-1]] + beat_at
    table = np.stack([np.where(counts[t] > 0, starts[t], 0), counts[t]], axis=1)
    bias = np.zeros(channels, dtype=np.int64)
    bias[:out_c] = np.asarray(layer.bias, dtype=np.int64)
    positions = (height * width) >> (2 * bool(layer.pool))
    desc = contract.NetLayer(
        in_words=(height * width * in_channels) // lanes, out_words=positions << k_log2,
        cols_base=cols_at, bias_base=bias_at, scale=int(layer.scale), shift=int(layer.shift),
        relu=bool(layer.relu), conv=True, pool=bool(layer.pool), c_log2=c_log2,
        w_log2=w_log2, h_log2=h_log2, k_log2=k_log2, pad=pad)
    if (height * width * in_channels) % lanes:
        raise ValueError(f"deploy: layer {i}: {height}x{width}x{in_channels} inputs are not "
                         f"whole words of {lanes}")
    out_pos = (np.arange(positions)[None, :] * channels + np.arange(out_c)[:, None]).ravel()
    return value, rows, table, bias.reshape(-1, lanes), desc, out_pos, channels


def build_program(layers, *, lanes, width, balance=True, dense=False):
    """Compile integer layers (:class:`ProgramLayer`) into a
    :class:`~hwprune.contract.net_engine.NetProgram`. Every fully connected layer's outputs are
    permuted over the lanes when ``balance`` (the next layer's columns follow; the final
    layer's results are put back in order through the program's ``outputs``); a
    convolution's channels go to lane ``channel % lanes``, its activations position-major
    (the program's ``input_map`` puts a first convolution's channel-major input there).
    ``dense``: store every weight, zeros too (the dense baseline's schedule). Returns
    ``(program, positions)``: per layer, the output position of each output (torch order)."""
    if not layers:
        raise ValueError("a program needs at least one layer")
    values, rows, cols, biases, descs, positions = [], [], [], [], [], []
    first = layers[0]
    input_map = None
    if first.shape is not None:
        in_c = np.asarray(first.weight).shape[1]
        hw = int(first.shape[0]) * int(first.shape[1])
        # a power of two, and whole words of input (zero channels added where needed)
        channels = max(1 << max(0, int(np.ceil(np.log2(in_c)))), -(-lanes // hw))
        in_pos = input_map = (np.arange(hw)[None, :] * channels
                              + np.arange(in_c)[:, None]).ravel()
        in_words = -(-hw * channels // lanes)
    else:
        channels = None
        in_pos = np.arange(np.asarray(first.weight).shape[1])
        in_words = -(-len(in_pos) // lanes)
    inputs = in_words * lanes if input_map is not None else len(in_pos)
    beat_at = cols_at = bias_at = 0
    for i, layer in enumerate(layers):
        final = i == len(layers) - 1
        if layer.shape is not None:
            if channels is None:
                raise ValueError(f"deploy: layer {i} is a convolution after a fully connected "
                                 f"layer; convolutions come first")
            if final:
                raise ValueError(f"deploy: layer {i}: the final layer must be fully connected")
            value, row, c, b, desc, out_pos, channels = _encode_conv(
                layer, i, in_pos, channels, lanes, beat_at, cols_at, bias_at, dense=dense)
            out_words = desc.out_words
        else:
            w = np.asarray(layer.weight, dtype=np.int64)
            out_f, in_f = w.shape
            if in_f != len(in_pos):
                raise ValueError(f"layer {i} takes {in_f} inputs, the previous layer gives "
                                 f"{len(in_pos)}")
            channels = None
            out_words = -(-out_f // lanes)
            out_pos = np.arange(out_f)
            if balance and not dense:
                out_pos = _refine(w, _balance(w, lanes, out_words), lanes, out_words,
                                  layer.activity)
            value, row, counts = _encode_columns(w, in_pos, out_pos, in_words * lanes, lanes,
                                                 dense=dense)
            c = np.stack([np.r_[0, np.cumsum(counts)[:-1]] + beat_at, counts], axis=1)
            c[counts == 0, 0] = 0
            b = np.zeros(out_words * lanes, dtype=np.int64)
            b[out_pos] = np.asarray(layer.bias, dtype=np.int64)
            b = b.reshape(-1, lanes)
            desc = contract.NetLayer(
                in_words=in_words, out_words=out_words, cols_base=cols_at, bias_base=bias_at,
                scale=int(layer.scale), shift=int(layer.shift), relu=bool(layer.relu),
                final=final, out_valid=out_f % lanes if final and not balance else 0)
        descs.append(desc)
        values.append(value), rows.append(row), cols.append(c), biases.append(b)
        positions.append(out_pos)
        beat_at += len(value)
        cols_at += len(c)
        bias_at += len(b)
        in_pos, in_words = out_pos, out_words
    program = contract.NetProgram(
        lanes=lanes, width=width, layers=descs,
        value=np.concatenate(values), row=np.concatenate(rows),
        cols=np.concatenate(cols), bias=np.concatenate(biases),
        inputs=inputs, outputs=positions[-1], input_map=input_map)
    return program, positions


# --- from a PyTorch model -----------------------------------------------------------------------

#: The engine of each board's deploy bitstream (lanes, widths, memory depths: the bridge's,
#: :func:`hwprune.contract.net_engine.bridge_engine`): the UP5K keeps its weight beats in the
#: four SPRAMs (64 bits x 16 K: 4 lanes of 8-bit weights and 7-bit rows), the ECP5-85F in block
#: RAM.
BOARD_LANES = {"icebreaker": 4, "ulx3s": 16}
BOARD_ENGINES = {board: contract.bridge_engine(lanes, 8) for board, lanes in BOARD_LANES.items()}


def _conv_ok(conv):
    """Why the engine cannot run a ``Conv2d`` (None when it can)."""
    k = conv.kernel_size
    if k[0] != k[1] or k[0] not in (1, 3):
        return f"a {k[0]}x{k[1]} kernel (the engine's are 1x1 or 3x3)"
    pad = conv.padding if isinstance(conv.padding, tuple) else None
    if conv.padding == "same":
        pad = ((k[0] - 1) // 2,) * 2
    if pad != ((k[0] - 1) // 2,) * 2 or conv.padding_mode != "zeros":
        return f"padding {conv.padding!r} (the engine pads 'same' with zeros)"
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        return "a stride, dilation or groups other than 1"
    return None


def _pool_ok(pool):
    k, st = pool.kernel_size, pool.stride
    pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v))
    if pair(k) != (2, 2) or pair(st) != (2, 2) or pair(pool.padding) != (0, 0) or \
            pair(pool.dilation) != (1, 1) or pool.ceil_mode or pool.return_indices:
        return "not a plain 2x2 pooling of stride 2"
    return None


def _layers_of(model):
    """The model as a list of steps ``[name, module, relu, pool]`` (``Conv2d`` layers first,
    each with its ReLU and 2x2 ``MaxPool2d`` fused; then ``Linear`` layers with their ReLU);
    a clear error for anything else."""
    import torch.nn as nn
    steps = []
    passthrough = (nn.Flatten, nn.Dropout, nn.Identity)
    flat = [False]

    def walk(module, prefix):
        if isinstance(module, nn.Sequential):
            for name, child in module.named_children():
                walk(child, f"{prefix}{name}.")
            return
        name = prefix.rstrip(".") or type(module).__name__
        last = steps[-1] if steps else None
        if isinstance(module, nn.Linear):
            if last is not None and isinstance(last[1], nn.Conv2d) and not flat[0]:
                raise ValueError(f"deploy: Linear '{name}' after a convolution needs a Flatten")
            steps.append([name, module, False, False])
        elif isinstance(module, nn.Conv2d):
            why = _conv_ok(module)
            if why:
                raise ValueError(f"deploy: Conv2d '{name}' has {why}")
            if last is not None and not isinstance(last[1], nn.Conv2d):
                raise ValueError(f"deploy: Conv2d '{name}' after a Linear layer (convolutions "
                                 f"come first)")
            steps.append([name, module, False, False])
        elif isinstance(module, nn.ReLU):
            if last is None or last[2]:
                raise ValueError(f"deploy: ReLU '{name}' must follow a Linear or Conv2d layer")
            last[2] = True
        elif isinstance(module, nn.MaxPool2d):
            why = _pool_ok(module)
            if last is None or not isinstance(last[1], nn.Conv2d) or last[3] or why:
                raise ValueError(f"deploy: MaxPool2d '{name}' must be a 2x2 pooling of stride "
                                 f"2 after a Conv2d" + (f" ({why})" if why else ""))
            last[3] = True
        elif isinstance(module, passthrough):
            if isinstance(module, nn.Flatten):
                if last is not None and isinstance(last[1], nn.Linear):
                    raise ValueError(f"deploy: Flatten '{name}' after a Linear layer")
                flat[0] = True
        else:
            raise ValueError(f"deploy: '{name}' is a {type(module).__name__}; the network engine "
                             f"runs Linear and Conv2d layers (ReLU and 2x2 MaxPool2d fused; "
                             f"Flatten, Dropout pass through)")

    top = list(model.named_children())
    if isinstance(model, nn.Sequential):
        walk(model, "")
    elif top and all(isinstance(m, nn.Sequential) for _, m in top):
        for name, child in top:             # modules of Sequentials (LeNet300, ReferenceCNN)
            walk(child, f"{name}.")
    else:
        raise ValueError(f"deploy: {type(model).__name__} is not a sequence of layers (an "
                         f"nn.Sequential, or a module holding them)")
    if not steps or not isinstance(steps[-1][1], nn.Linear):
        raise ValueError("deploy: the model has no Linear layer (the last layer gives the "
                         "logits)" if not steps or
                         not any(isinstance(s[1], nn.Linear) for s in steps)
                         else "deploy: the last layer must be a Linear layer")
    if steps[-1][2]:
        raise ValueError("deploy: the last Linear layer gives the logits; it cannot end in ReLU")
    return [tuple(s) for s in steps]


def _code_scale(max_abs, width):
    """An activation scale: :func:`hwprune.quant.quantize`'s rule (the largest magnitude on the
    largest code; 1 when everything is zero), from a maximum the calibration already has."""
    return float(max_abs) / (2 ** (width - 1) - 1) if float(max_abs) > 0 else 1.0


def _requant(m):
    """``scale / 2**shift`` closest to the real multiplier ``m`` (a ``SCALE_BITS`` scale)."""
    if m <= 0:
        return 0, 0
    shift = int(np.clip(np.floor(np.log2((2 ** contract.SCALE_BITS - 1) / m)), 0,
                        2 ** contract.SHIFT_BITS - 1))
    scale = int(np.clip(round(m * 2 ** shift), 0, 2 ** contract.SCALE_BITS - 1))
    return scale, shift


@dataclass
class Quantized:
    """A model as integer layers, with the scales that map codes back to real numbers."""

    names: list
    layers: list               # ProgramLayer
    input_scale: float         # real input = code * input_scale
    output_scale: float        # real logits = integer result * output_scale
    dense_weights: int
    kept_weights: int


def _step(module, relu, pool, y, flatten):
    """One step of the layer sequence in float (the model's own modules)."""
    import torch
    if flatten:
        y = y.flatten(1)
    y = module(y)
    if relu:
        y = torch.relu(y)
    return torch.nn.functional.max_pool2d(y, 2) if pool else y


def quantize_model(model, example_inputs, *, width=8):
    """Quantize a (pruned) model to ``width``-bit weights (per layer) and activations (per
    layer, from the largest value ``example_inputs`` give); biases in accumulator units; the
    requantization between layers a 15-bit scale and a shift. Zero weights stay zero."""
    import torch
    steps = _layers_of(model)
    x = torch.as_tensor(example_inputs, dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("deploy: example inputs hold NaN or Inf")
    seen = []
    hooks = [mod.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
             for _, mod, _, _ in steps]
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if len(seen) != len(steps):
        raise ValueError("deploy: the model's forward does not call its layers once each")
    with torch.no_grad():
        y = seen[0]
        for _, mod, relu, pool in steps:
            y = _step(mod, relu, pool, y, isinstance(mod, torch.nn.Linear) and y.dim() > 2)
        if not torch.allclose(y, model(x), rtol=1e-4, atol=1e-5):
            raise ValueError("deploy: the model's forward is not the sequence of its layers")
    # Activation codes: the inputs of every layer (after the previous ReLU) on their own scale.
    act_scales = [_code_scale(a.abs().max(), width) for a in seen]
    layers, dense, kept = [], 0, 0
    for i, (name, mod, relu, pool) in enumerate(steps):
        w = mod.weight.detach().double().cpu().numpy()
        if not np.isfinite(w).all():
            raise ValueError(f"deploy: layer '{name}' has NaN or Inf weights")
        q = quantize(w, width)                  # the engines' own per-tensor quantization
        wq, sw = q.codes.astype(np.int64), float(q.scale)
        acc_scale = sw * act_scales[i]
        b = mod.bias.detach().double().cpu().numpy() if mod.bias is not None else \
            np.zeros(w.shape[0])
        bias = np.rint(b / acc_scale).astype(np.int64)
        if i + 1 < len(steps):
            scale, shift = _requant(acc_scale / act_scales[i + 1])
        else:
            scale, shift = 1, 0
        conv = isinstance(mod, torch.nn.Conv2d)
        activity = None
        if not conv:            # how often each input's code is non-zero, for the lane balance
            codes = quantize(seen[i].flatten(1).double().cpu().numpy(), width,
                             scale=act_scales[i]).codes
            activity = (codes != 0).mean(axis=0)
        layers.append(ProgramLayer(wq, bias, scale=scale, shift=shift, relu=relu,
                                   shape=tuple(seen[i].shape[2:]) if conv else None,
                                   pool=pool, activity=activity))
        dense += w.size
        kept += int(np.count_nonzero(wq))
        last_scale = acc_scale
    return Quantized([s[0] for s in steps], layers, act_scales[0], last_scale, dense, kept)


# --- the deployed model ---------------------------------------------------------------------------

DEPLOY_BACKENDS = ("golden", "torch", "verilator", "cocotb", "uart-sim", "serial")


@dataclass
class DeployRun:
    """One batch through the engine: integer results, real logits, predictions and the
    engine's counters (``cycles``, ``layer_cycles``: from the RTL; 0 on golden / torch)."""

    out: np.ndarray
    logits: np.ndarray
    predictions: np.ndarray
    beats: int
    columns: int
    cycles: int
    layer_cycles: list

    @property
    def cycles_per_vector(self):
        return self.cycles / max(1, len(self.out))


@dataclass
class LayerFigures:
    name: str
    shape: tuple
    kept: int
    memory_bytes: int
    dense_cycles: float = None
    sparse_cycles: float = None
    dual_cycles: float = None


class Deployment:
    """A model compiled for the network engine (:func:`deploy` makes one).

    Call it on a batch (``deployment(x)``: real logits as a torch tensor) or use :meth:`run`
    for the integer results and the engine's counters; :meth:`profile` measures dense, sparse
    (zero weights skipped) and dual-sparse (zero activations too) cycles per layer on the RTL.
    """

    def __init__(self, quantized, program, positions, backend, *, board=None, engine=None):
        self.quantized, self.program, self.positions = quantized, program, positions
        self.backend, self.board = backend, board
        self.engine = engine or {}
        self.clock_mhz = None
        if board is not None:
            from .hw.boards import board_clock
            # the deploy top's core clock (PLL)
            self.clock_mhz = board_clock(board, blocks=("net_engine",))[1]
        self._dense = None

    @property
    def lanes(self):
        return self.program.lanes

    @property
    def width(self):
        return self.program.width

    def memory(self):
        """Bytes the program takes in each engine memory, and in all."""
        mem = contract.memory_bytes(self.program, **self._depths())
        return dict(mem, total=sum(mem.values()))

    def _depths(self):
        return {k: v for k, v in self.engine.items() if k not in ("lanes", "width")}

    def codes(self, x):
        """Input activation codes of a batch (real inputs quantized on the input scale)."""
        import torch
        x = torch.as_tensor(x, dtype=torch.float32)
        flat = x.reshape(len(x), -1).double().cpu().numpy()
        features = self.program.in_features if self.program.input_map is None else \
            len(self.program.input_map)
        if flat.shape[1] != features:
            raise ValueError(f"deploy: inputs have {flat.shape[1]} features, the model "
                             f"{features}")
        if not np.isfinite(flat).all():
            raise ValueError("deploy: inputs hold NaN or Inf")
        codes = quantize(flat, self.width, scale=self.quantized.input_scale).codes
        return self.program.arrange(codes.astype(np.int64))

    def run(self, x, *, skip_zero=True, program=None):
        """Run a batch (real inputs, or integer codes when ``x`` is an integer array)."""
        integer = isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer)
        codes = x if integer else self.codes(x)
        job = contract.NetJob(program or self.program, codes, skip_zero=skip_zero)
        result = self.backend.run("net_engine", [job])[0]
        out = result.out
        return DeployRun(out=out, logits=out * self.quantized.output_scale,
                         predictions=out.argmax(axis=1), beats=result.beats,
                         columns=result.columns, cycles=result.busy_cycles,
                         layer_cycles=list(result.layer_cycles[:len(self.program.layers)]))

    def __call__(self, x):
        import torch
        return torch.as_tensor(self.run(x).logits, dtype=torch.float32)

    def save(self, path):
        """Write the program (the engine's memory contents) and the quantization scales to an
        ``.npz`` file; :func:`load_program` reads the program back."""
        arrays = contract.NetJob(self.program, np.zeros((0, self.program.in_features),
                                                        dtype=np.int64)).to_arrays()
        arrays.pop("inputs"), arrays.pop("skip_zero")
        np.savez(path, **arrays, input_scale=self.quantized.input_scale,
                 output_scale=self.quantized.output_scale, names=np.array(self.quantized.names),
                 board=np.array(self.board or ""))
        return path

    def dense_program(self):
        """The same network with every weight stored (zeros too): the dense baseline."""
        if self._dense is None:
            self._dense, _ = build_program(self.quantized.layers, lanes=self.lanes,
                                           width=self.width, dense=True)
        return self._dense

    def profile(self, x):
        """Per layer: memory bytes and engine cycles per input, dense vs sparse vs dual-sparse,
        all three measured on the backend (``None`` where it does not time the engine)."""
        runs = {"dense": self.run(x, skip_zero=False, program=self.dense_program()),
                "sparse": self.run(x, skip_zero=False), "dual": self.run(x, skip_zero=True)}
        n = max(1, len(np.asarray(x)))
        g = contract.geometry(lanes=self.lanes, width=self.width, **self._depths())
        bits = g.entry_bits()
        cols = np.asarray(self.program.cols)
        figures = []
        for i, (name, layer) in enumerate(zip(self.quantized.names, self.quantized.layers)):
            d = self.program.layers[i]
            c = cols[d.cols_base:d.cols_base + d.columns(self.lanes)]
            words = 1 << d.k_log2 if d.conv else d.out_words
            stored = c[:1 << d.c_log2] if d.conv else c      # a channel's entry repeats
            mem = (int(stored[:, 1].sum()) * bits["weights"] + len(c) * bits["cols"]
                   + len(c) // self.lanes * bits["colmask"] + words * bits["bias"]
                   + bits["layers"] + 7) // 8
            timed = {k: (r.layer_cycles[i] / n if r.cycles else None) for k, r in runs.items()}
            figures.append(LayerFigures(name, tuple(layer.weight.shape),
                                        int(np.count_nonzero(layer.weight)), mem,
                                        timed["dense"], timed["sparse"], timed["dual"]))
        totals = {k: (r.cycles / n if r.cycles else None) for k, r in runs.items()}
        return figures, totals, runs

    def table(self, figures, totals):
        """A text table of :meth:`profile`'s figures."""
        lines = [f"{'layer':<16} {'shape':>10} {'kept':>7} {'bytes':>7} {'dense':>8} "
                 f"{'sparse':>8} {'dual':>8}"]

        def fmt(v):
            return f"{v:8.1f}" if v is not None else f"{'-':>8}"
        for f in figures:
            lines.append(f"{f.name:<16} {'x'.join(map(str, f.shape)):>10} {f.kept:>7} "
                         f"{f.memory_bytes:>7} {fmt(f.dense_cycles)} {fmt(f.sparse_cycles)} "
                         f"{fmt(f.dual_cycles)}")
        lines.append(f"{'network':<16} {'':>10} {sum(f.kept for f in figures):>7} "
                     f"{sum(f.memory_bytes for f in figures):>7} {fmt(totals['dense'])} "
                     f"{fmt(totals['sparse'])} {fmt(totals['dual'])}")
        if self.clock_mhz and totals["dual"]:
            lines.append(f"at the {self.board} top's {self.clock_mhz} MHz: "
                         f"{totals['dual'] / self.clock_mhz:.2f} us per input (dual-sparse), "
                         f"{totals['dense'] / self.clock_mhz:.2f} us dense")
        return "\n".join(lines)


def deploy(model, example_inputs, *, backend="verilator", board=None, lanes=None, width=8,
           balance=True, engine=None, **backend_options):
    """Compile a (pruned) model for the network engine and return a :class:`Deployment`.

    ``example_inputs`` set the activation scales. ``board`` (``"icebreaker"`` or ``"ulx3s"``)
    takes that board's engine (:data:`BOARD_ENGINES`: lanes and memory depths) and checks that
    the program fits it before anything runs; without it, ``lanes`` (default 8) and the
    engine's default memories. ``backend``: ``golden`` / ``torch`` (the integer reference),
    ``verilator`` / ``cocotb`` (the RTL), ``uart-sim`` (the board's deploy bitstream verilated:
    the program and the inputs cross a simulated 3 Mbit/s line) or ``serial`` (a board, with
    ``port=``). ``engine``: memory depths (``max_rows``, ``max_beats``, ``max_cols``) of an
    engine without a board (a model with convolutions gets ``conv=1`` and accumulators for
    its widest convolution). Nothing is changed in ``model``.
    """
    from .backends import get_backend
    depths = dict(engine or {})
    if backend not in DEPLOY_BACKENDS:
        raise ValueError(f"deploy: backend must be one of {DEPLOY_BACKENDS}, not {backend!r}")
    if board is not None:
        if board not in BOARD_ENGINES:
            raise ValueError(f"deploy: board must be one of {sorted(BOARD_ENGINES)}, not "
                             f"{board!r}")
        engine = dict(BOARD_ENGINES[board])
        if lanes is not None and lanes != engine["lanes"]:
            raise ValueError(f"deploy: the {board} engine has {engine['lanes']} lanes, not "
                             f"{lanes}")
        if width != engine["width"]:
            raise ValueError(f"deploy: the {board} engine has width {engine['width']}, not "
                             f"{width}")
        if depths:
            raise ValueError(f"deploy: the {board} engine's memories are the board's; "
                             f"engine= is for an engine without a board")
        lanes = engine["lanes"]
    else:
        lanes = 8 if lanes is None else lanes
        contract.DOMAIN.check(lanes=lanes, width=width, **depths)   # before any work
    quantized = quantize_model(model, example_inputs, width=width)
    program, positions = build_program(quantized.layers, lanes=lanes, width=width,
                                       balance=balance)
    if board is None:
        convs = [d for d in program.layers if d.conv]
        if convs:       # accumulators for the widest convolution, as the compiler laid it out
            depths.setdefault("conv", 1)
            widest = max(program.lanes << (d.h_log2 + d.w_log2 + d.k_log2) for d in convs)
            depths.setdefault("max_rows", max(contract.DOMAIN.check(
                lanes=program.lanes, width=width)["max_rows"], widest))
        engine = contract.DOMAIN.check(lanes=program.lanes, width=width, **depths)
    contract.check_program(program, **engine)          # fits the board, or says what does not
    if backend == "uart-sim":
        # the board's deploy bitstream: the bridge with the network engine, its UART divisor
        backend_options.setdefault("blocks", ("net_engine",))
        if board is not None:
            backend_options.setdefault("board", board)
    be = get_backend(backend, lanes=engine["lanes"], width=engine["width"], **backend_options)
    if backend not in ("uart-sim", "serial"):      # the RTL built as the board's engine
        be.configure("net_engine", **{k: v for k, v in engine.items()
                                      if k not in ("lanes", "width")})
    _, built = be.params("net_engine")
    contract.check_program(program, **built)           # and the engine the backend simulates
    return Deployment(quantized, program, positions, be, board=board, engine=engine)


def load_program(path):
    """The :class:`~hwprune.contract.net_engine.NetProgram` a :meth:`Deployment.save` wrote,
    checked."""
    with np.load(path) as f:
        arrays = dict(f)
    arrays.update(inputs=np.zeros((0, int(arrays["n_inputs"]))), skip_zero=np.asarray(True))
    program = contract.NetJob.from_arrays(arrays).program
    contract.check_program(program)
    return program
