"""Run a model's Conv2d and Linear layers on the sparse MAC unit, the rest in torch.

Each supported layer is compiled once per call (:func:`compile_layer`): its weight, as the forward
pass sees it (pruning masks applied), is quantized to ``width``-bit codes (:mod:`hwprune.quant`),
laid out as a ``rows x K`` matrix in its reduction order (Conv2d: im2col, ``F.unfold`` order) and
compressed (:mod:`hwprune.compress`). At run time each layer's input is quantized to ``width``-bit
codes with one symmetric scale per call (``max|x| / (2**(width-1) - 1)``), cut into activation
vectors (one per Linear input row, one per Conv2d output position), and run on the backend. The
unit's integer accumulators are rescaled on the host: ``y = acc * (weight_scale * act_scale) +
bias``. :func:`reference` computes the same layers with an integer convolution in torch and the
same rescaling, so its outputs equal the unit's bit for bit (a fake-quantized model).

Layers the unit cannot run (grouped or non-2-D convolutions, padding modes other than zeros,
rows longer than the unit's ``max_k``) run in torch in floating point, and the report says so.
"""

import glob
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backends import Backend, get_backend
from .compress import (compress, compress_nm, parse_format, reduction_matrix,
                       reduction_vectors)
from .contract.sparse_mac import make_job, stall_free_cycles
from .contract.sparse_mac import DEFAULT_MAX_K, PIPELINE_LATENCY, check_mac_params
from .native import NonFiniteWeights, quantize_compress
from .quant import GRANULARITIES, quantize

__all__ = ["run", "reference", "compile_layer", "LayerProgram", "LayerRun", "RunReport",
           "synthesis_clock", "DEFAULT_CLOCK_MHZ", "plot_cycles", "mac_demo"]

#: Clock used for projected latency when neither the caller nor a synthesis report gives one
#: (the order of the ECP5 figures in the project's synthesis notes).
DEFAULT_CLOCK_MHZ = 100.0
_FORMATS_DOC = "'auto', 'unstructured' or 'N:M' (e.g. '2:4')"


@dataclass
class LayerProgram:
    """One layer compiled for the unit."""

    name: str
    kind: str
    codes: np.ndarray        # int16, the quantized weight in the layer's own shape
    weight_scale: np.ndarray  # float64 (rows,)
    bias: object             # float64 tensor (rows,) or None
    compressed: object       # CompressedWeights
    pad_m: int = 0           # N:M group size the input channels are padded to (0: none)

    @property
    def k(self):
        """Inputs per output in the layer itself (before any N:M channel padding)."""
        return int(np.prod(self.codes.shape[1:]))


@dataclass
class LayerRun:
    """What the unit (or torch) did for one layer call."""

    name: str
    kind: str
    on_unit: bool
    reason: str = ""             # why the layer ran in torch
    rows: int = 0
    k: int = 0
    vectors: int = 0
    fmt: str = ""
    nnz: int = 0
    beats: int = 0               # weight beats per vector
    cycles: int = 0              # measured by the backend (golden: stall-free model)
    dense_cycles: int = 0        # the same unit streaming the uncompressed weights (packed rows)
    ideal_cycles: int = 0        # ceil(nnz / lanes) per row and vector + pipeline latency (rows
    #                              shorter than a beat share beats, so a layer can beat it)
    lanes: int = 0
    backend_s: float = 0.0       # wall time of the backend call

    @property
    def density(self):
        return self.nnz / (self.rows * self.k) if self.rows * self.k else 0.0

    @property
    def useful_macs(self):
        return self.nnz * self.vectors

    @property
    def utilisation(self):
        return self.useful_macs / (self.lanes * self.cycles) if self.cycles else 0.0

    @property
    def speedup(self):
        return self.dense_cycles / self.cycles if self.cycles else 0.0

    @property
    def efficiency(self):
        return self.ideal_cycles / self.cycles if self.cycles else 0.0

    def to_dict(self):
        d = asdict(self)
        d.update(density=self.density, useful_macs=self.useful_macs,
                 utilisation=self.utilisation, speedup=self.speedup, efficiency=self.efficiency)
        return d


@dataclass
class RunReport:
    """The result of :func:`run`: the model's output and one :class:`LayerRun` per layer call."""

    backend: str
    lanes: int
    width: int
    clock_mhz: float
    clock_source: str
    output: object = None
    layers: list = field(default_factory=list)

    @property
    def unit_layers(self):
        return [layer for layer in self.layers if layer.on_unit]

    @property
    def cycles(self):
        return sum(layer.cycles for layer in self.unit_layers)

    @property
    def dense_cycles(self):
        return sum(layer.dense_cycles for layer in self.unit_layers)

    def latency_us(self, cycles):
        return cycles / self.clock_mhz

    def to_dict(self):
        return {"backend": self.backend, "lanes": self.lanes, "width": self.width,
                "clock_mhz": self.clock_mhz, "clock_source": self.clock_source,
                "layers": [dict(layer.to_dict(),
                                latency_us=self.latency_us(layer.cycles),
                                dense_latency_us=self.latency_us(layer.dense_cycles))
                           for layer in self.layers],
                "total": {"cycles": self.cycles, "dense_cycles": self.dense_cycles,
                          "latency_us": self.latency_us(self.cycles)}}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def table(self):
        """The report as a fixed-width text table."""
        head = ("layer", "type", "rows x K", "vectors", "format", "density", "dense cyc",
                "sparse cyc", "speedup", "util", "latency us")
        rows = []
        for layer in self.layers:
            if not layer.on_unit:
                rows.append((layer.name, layer.kind, "", "", f"torch: {layer.reason}", "", "", "",
                             "", "", ""))
                continue
            rows.append((layer.name, layer.kind, f"{layer.rows}x{layer.k}", f"{layer.vectors:,}",
                         layer.fmt, f"{layer.density:.1%}", f"{layer.dense_cycles:,}",
                         f"{layer.cycles:,}", f"{layer.speedup:.2f}x",
                         f"{layer.utilisation:.1%}", f"{self.latency_us(layer.cycles):,.1f}"))
        total = self.cycles
        rows.append(("total (unit)", "", "", "", "", "", f"{self.dense_cycles:,}", f"{total:,}",
                     f"{self.dense_cycles / total:.2f}x" if total else "", "",
                     f"{self.latency_us(total):,.1f}"))
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        align = "<<>><>>>>>>"

        def fmt(row):
            return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(row, align, widths)).rstrip()
        rule = "-" * len(fmt(head))
        title = (f"hwprune sparse MAC: {self.backend} backend, {self.lanes} lanes x {self.width} "
                 f"bits, latency at {self.clock_mhz:g} MHz ({self.clock_source})")
        return "\n".join([title, rule, fmt(head), rule, *map(fmt, rows[:-1]), rule,
                          fmt(rows[-1])])

    __str__ = table


def _find_fmax(obj):
    """An Fmax in MHz from a synthesis report: ``fmax``/``fmax_mhz`` as a number or as nextpnr's
    per-clock ``{"clk": {"achieved": ...}}`` (the slowest clock); None when there is none."""
    if isinstance(obj, dict):
        for key in ("fmax_mhz", "fmax"):
            if key in obj:
                v = obj[key]
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    return float(v)
                if isinstance(v, dict):
                    found = [c.get("achieved") if isinstance(c, dict) else c for c in v.values()]
                    found = [float(f) for f in found if isinstance(f, (int, float)) and f > 0]
                    if found:
                        return min(found)
        for v in obj.values():
            got = _find_fmax(v)
            if got:
                return got
    elif isinstance(obj, list):
        for v in obj:
            got = _find_fmax(v)
            if got:
                return got
    return None


def synthesis_clock(build_dir="build"):
    """``(mhz, source)``: the Fmax of the newest synthesis report under ``build_dir`` of a design
    that contains the sparse MAC (a ``report.json`` of :mod:`hwprune.hw.boards` whose ``blocks``
    list names ``sparse_mac``); else :data:`DEFAULT_CLOCK_MHZ`, and the source says that no such
    report exists. Reports of designs without the MAC (today's board tops) are not its clock."""
    # Only the reports hwprune.hw.boards writes (report.json); nextpnr's own JSON files are
    # megabytes each and would cost seconds to parse on every call.
    files = sorted(glob.glob(os.path.join(str(build_dir), "**", "report.json"), recursive=True),
                   key=os.path.getmtime, reverse=True)
    for path in files:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(report, dict) and "sparse_mac" in (report.get("blocks") or ())):
            continue
        mhz = _find_fmax(report)
        if mhz:
            return mhz, f"Fmax of {path}"
    return DEFAULT_CLOCK_MHZ, ("default clock: no synthesis report of a design containing the "
                               f"sparse MAC under {build_dir}/")


def _unsupported_reason(module, k, max_k):
    if isinstance(module, nn.Conv2d) and not isinstance(module, nn.modules.conv._ConvTransposeNd):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"padding_mode {module.padding_mode!r}"
        if isinstance(module.padding, str):
            return f"padding={module.padding!r} (give the padding as numbers)"
    elif not isinstance(module, nn.Linear):
        return f"{type(module).__name__} is not supported by the unit (Linear and Conv2d are)"
    if k > max_k:
        return f"rows of {k} inputs exceed the unit's max_k = {max_k}"
    return ""


def _weight(module):
    """The weight as a CPU array: float32 as it is (no copy; :func:`quantize` computes
    float32 weights in float32), any other dtype in float64."""
    w = module.weight.detach().cpu()
    return (w if w.dtype == torch.float32 else w.to(torch.float64)).numpy()


def _is_nm_sparse(codes, n, m):
    """No group of ``m`` consecutive inputs of a row holds more than ``n`` non-zeros (the
    numpy path, for convolutions; a Linear's check is part of :mod:`hwprune.native`'s pass)."""
    k = codes.shape[1]
    padded = np.zeros((codes.shape[0], -(-k // m) * m), dtype=bool)
    padded[:, :k] = codes != 0
    return bool((padded.reshape(codes.shape[0], -1, m).sum(axis=2) <= n).all())


def compile_layer(name, module, *, lanes, width, fmt="auto", granularity="tensor"):
    """Quantize and compress one Linear/Conv2d layer (see the module docstring)."""
    w = _weight(module)
    native = w.ndim == 2 and w.dtype == np.float32 and fmt in ("auto", "unstructured")
    if native:      # a Linear: quantized and compressed in C++, one pass each (hwprune.native)
        try:
            q, unstructured, nm_ok = quantize_compress(w, width, lanes, granularity=granularity)
        except NonFiniteWeights:
            raise ValueError(f"layer {name!r} has NaN or Inf weights") from None
    else:
        if not torch.isfinite(torch.from_numpy(w)).all():
            raise ValueError(f"layer {name!r} has NaN or Inf weights")
        q = quantize(w, width, granularity)
    codes = q.codes                         # int16
    scale = np.broadcast_to(np.asarray(q.scale, dtype=np.float64).reshape(-1, 1),
                            (w.shape[0], 1))[:, 0].copy()
    if fmt == "auto":
        pad_m, compressed = 0, (unstructured if native else
                                compress(reduction_matrix(codes), lanes, "unstructured"))
        nm_codes = reduction_matrix(codes, 4)
        if (nm_ok if native else _is_nm_sparse(nm_codes, 2, 4)) and \
                nm_codes.shape[1] <= DEFAULT_MAX_K:
            nm = compress_nm(nm_codes, 2, 4, lanes)
            if nm.beats <= compressed.beats:      # same work, fewer metadata bits
                pad_m, compressed = 4, nm
    elif native:
        pad_m, compressed = 0, unstructured
    else:
        _, _, pad_m = parse_format(fmt)
        compressed = compress(reduction_matrix(codes, pad_m), lanes, fmt)
    bias = None if module.bias is None else module.bias.detach().to("cpu", torch.float64)
    return LayerProgram(name, type(module).__name__, codes, scale, bias, compressed, pad_m)


def _check_input(name, module, x):
    kind = type(module).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"layer {name!r} ({kind}) needs a torch.Tensor input, "
                        f"not {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"layer {name!r} ({kind}) needs floating-point activations, not {x.dtype}")
    if isinstance(module, nn.Linear):
        if x.dim() < 1 or x.shape[-1] != module.in_features:
            raise ValueError(f"layer {name!r} (Linear) expects activations of shape "
                             f"(..., {module.in_features}), not {tuple(x.shape)}")
    elif x.dim() not in (3, 4) or x.shape[-3] != module.in_channels:
        raise ValueError(f"layer {name!r} (Conv2d) expects activations of shape "
                         f"(N, {module.in_channels}, H, W), not {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"layer {name!r} ({kind}) got NaN or Inf activations")


def _quantize_acts(x, width):
    qmax = 2 ** (width - 1) - 1
    x64 = x.detach().to("cpu", torch.float64)
    amax = float(x64.abs().max()) if x64.numel() else 0.0
    scale = amax / qmax if amax > 0 else 1.0
    return torch.clamp(torch.round(x64 / scale), -qmax, qmax), scale


def _vectors(program, module, xq):
    """Activation vectors ``(vectors, K)`` (int16, reduction order) and a function shaping
    the result ``(vectors, rows)`` like the layer's output."""
    if isinstance(module, nn.Linear):
        lead = xq.shape[:-1]

        def shape(out):
            return out.reshape(*lead, out.shape[-1])
        return xq.reshape(-1, xq.shape[-1]).numpy().astype(np.int16), shape
    batched = xq if xq.dim() == 4 else xq.unsqueeze(0)
    n = batched.shape[0]
    cols = F.unfold(batched, module.kernel_size, dilation=module.dilation,
                    padding=module.padding, stride=module.stride)       # (N, K, L)
    ho, wo = _conv_out_size(module, batched.shape[2:])
    vectors = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy().astype(np.int16)

    def shape(out):
        y = out.reshape(n, ho * wo, -1).transpose(1, 2).reshape(n, -1, ho, wo)
        return y if xq.dim() == 4 else y[0]
    return reduction_vectors(vectors, module.in_channels, program.pad_m), shape


def _conv_out_size(module, size):
    return tuple((size[i] + 2 * module.padding[i] - module.dilation[i] *
                  (module.kernel_size[i] - 1) - 1) // module.stride[i] + 1 for i in range(2))


def _rescale(acc, program, act_scale, dtype):
    """``acc * (weight_scale * act_scale) + bias``, the same expression for unit and reference."""
    tail = (1, 1) if program.kind == "Conv2d" else ()
    y = acc * torch.as_tensor(program.weight_scale * act_scale).view(-1, *tail)
    if program.bias is not None:
        y = y + program.bias.view(-1, *tail)
    return y.to(dtype)


class _Session:
    """Hooks that run each supported layer through ``compute`` (the unit, or the reference)."""

    def __init__(self, model, *, lanes, width, fmt, granularity, max_k, compute):
        self.model, self.lanes, self.width, self.fmt = model, lanes, width, fmt
        self.granularity, self.max_k, self.compute = granularity, max_k, compute
        self.layers, self.programs, self.handles = [], {}, []

    def __enter__(self):
        for name, module in self.model.named_modules():
            if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                continue
            k = int(np.prod(module.weight.shape[1:]))
            reason = _unsupported_reason(module, k, self.max_k)
            if reason:
                self.handles.append(module.register_forward_hook(self._fallback(name, reason)))
                continue
            try:
                self.programs[name] = compile_layer(name, module, lanes=self.lanes,
                                                    width=self.width, fmt=self.fmt,
                                                    granularity=self.granularity)
            except ValueError as exc:
                if str(exc).startswith(f"layer {name!r}"):
                    raise
                raise ValueError(f"layer {name!r} ({type(module).__name__}): {exc}") from None
            self.handles.append(module.register_forward_pre_hook(self._pre(name)))
            self.handles.append(module.register_forward_hook(self._post(name)))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def _fallback(self, name, reason):
        def hook(module, args, output):
            self.layers.append(LayerRun(name=name, kind=type(module).__name__, on_unit=False,
                                        reason=reason))
        return hook

    def _pre(self, name):
        def hook(module, args):
            if len(args) != 1:
                raise TypeError(f"layer {name!r} ({type(module).__name__}) takes one input")
            _check_input(name, module, args[0])
        return hook

    def _post(self, name):
        def hook(module, args, output):
            program = self.programs[name]
            xq, act_scale = _quantize_acts(args[0], self.width)
            vectors, shape = _vectors(program, module, xq)
            # float64 integers, contiguous: the layers after it (in torch) then see the same memory
            # layout from the unit and from the reference, and round the same way
            acc = self.compute(program, module, xq, vectors, shape).contiguous()
            return _rescale(acc, program, act_scale, output.dtype)
        return hook


def _unit_compute(session, backend):
    def compute(program, module, xq, vectors, shape):
        cw = program.compressed
        acts = vectors
        job = make_job(cw, acts)
        start = time.perf_counter()
        result = backend.run("sparse_mac", [job])[0]
        backend_s = time.perf_counter() - start
        n = acts.shape[0]
        dense_act_beats = max(1, -(-program.k // cw.lanes))
        session.layers.append(LayerRun(
            name=program.name, kind=program.kind, on_unit=True, rows=cw.rows, k=program.k,
            vectors=n, fmt=cw.fmt if cw.fmt == "unstructured" else f"{cw.n}:{cw.m}",
            nnz=cw.nnz, beats=cw.beats, cycles=int(result.cycles),
            dense_cycles=stall_free_cycles(-(-cw.rows * program.k // cw.lanes),
                                           dense_act_beats, n),
            ideal_cycles=n * cw.ideal_beats + PIPELINE_LATENCY, lanes=cw.lanes,
            backend_s=backend_s))
        return shape(torch.as_tensor(result.out, dtype=torch.float64))
    return compute


def _reference_compute(program, module, xq, vectors, shape):
    w = torch.as_tensor(program.codes, dtype=torch.float64)
    if isinstance(module, nn.Linear):
        return F.linear(xq, w)        # exact: integer values far below 2**53
    return F.conv2d(xq, w, stride=module.stride,
                    padding=module.padding, dilation=module.dilation)


def _check_common(model, x, lanes, width, fmt, granularity):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {type(x).__name__}")
    check_mac_params(lanes=lanes, width=width, act_width=width, max_k=DEFAULT_MAX_K)
    if fmt != "auto":
        try:
            parse_format(fmt)
        except ValueError:
            raise ValueError(f"fmt must be {_FORMATS_DOC}, not {fmt!r}") from None
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")


def run(model, x, *, backend="verilator", lanes=16, width=8, fmt="auto", granularity="tensor",
        clock_mhz=None, build_dir="build", **backend_options):
    """Run ``model`` on ``x`` with its Conv2d/Linear layers on the sparse MAC unit.

    Parameters
    ----------
    model : torch.nn.Module
        Pruned (torch.nn.utils.prune masks are honoured) or not; it is not modified.
    x : torch.Tensor
        The model's input.
    backend : {"verilator", "golden", "cocotb"} or Backend
        How to run the unit.
    lanes, width : int
        Unit parameters: multipliers (4 to 64, a power of two) and bits of weights and activations.
    fmt : str
        Weight format: ``"auto"`` (whichever of unstructured and, for a 2:4-sparse layer, 2:4
        takes fewer beats; 2:4 on a tie), ``"unstructured"`` or ``"N:M"``.
    granularity : {"tensor", "channel"}
        Weight quantization scale per tensor or per output channel.
    clock_mhz : float, optional
        Clock for projected latency; default: :func:`synthesis_clock` of ``build_dir``.

    Returns
    -------
    RunReport
        ``.output`` is the model's output (equal to :func:`reference`'s); ``.layers`` the per-layer
        cycles, dense cycles, utilisation, and the layers that ran in torch.
    """
    _check_common(model, x, lanes, width, fmt, granularity)
    if clock_mhz is None:
        clock_mhz, source = synthesis_clock(build_dir)
    else:
        if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or \
                not math.isfinite(clock_mhz) or clock_mhz <= 0:
            raise ValueError(f"clock_mhz must be a positive number, not {clock_mhz!r}")
        source = "given"
    engine = backend if isinstance(backend, Backend) else \
        get_backend(backend, lanes=lanes, width=width, **backend_options)
    if (engine.lanes, engine.width) != (lanes, width):
        raise ValueError(f"backend is built for {engine.lanes} lanes x {engine.width} bits, "
                         f"not {lanes} x {width}")
    report = RunReport(backend=engine.name, lanes=lanes, width=width, clock_mhz=float(clock_mhz),
                       clock_source=source)
    # the longest row this backend runs (a board's bridge splits longer ones into slices)
    max_k = engine.longest_row()
    session = _Session(model, lanes=lanes, width=width, fmt=fmt, granularity=granularity,
                       max_k=max_k, compute=None)
    session.compute = _unit_compute(session, engine)
    with torch.no_grad(), session:
        report.output = model(x)
    report.layers = session.layers
    return report


def reference(model, x, *, lanes=16, width=8, fmt="auto", granularity="tensor",
              max_k=DEFAULT_MAX_K):
    """The fake-quantized model in PyTorch: what :func:`run` must return, bit for bit.

    Each layer :func:`run` puts on the unit is computed as an integer convolution / matrix product
    of the same codes in torch (float64, exact for these sizes) and rescaled the same way.
    ``max_k``: the longest row of the backend :func:`run` used (its ``longest_row()``: the
    default unit's on every backend but a ``verilator`` one configured otherwise): longer rows
    stay in floating point, as they do there.
    """
    _check_common(model, x, lanes, width, fmt, granularity)
    session = _Session(model, lanes=lanes, width=width, fmt=fmt, granularity=granularity,
                       max_k=max_k, compute=_reference_compute)
    with torch.no_grad(), session:
        return model(x)


def plot_cycles(report, path):
    """Write a bar chart (PNG) of cycles per layer, dense vs sparse, for the unit's layers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report.unit_layers
    names = [f"{layer.name}\n{layer.fmt}" for layer in layers]
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(layers)), 4.5))
    ax.bar(x - 0.2, [layer.dense_cycles for layer in layers], 0.4, label="dense")
    ax.bar(x + 0.2, [layer.cycles for layer in layers], 0.4, label="sparse (measured)")
    ax.set_xticks(x, names)
    ax.set_yscale("log")
    ax.set_ylabel("clock cycles")
    ax.set_title(f"Sparse MAC, {report.lanes} lanes x {report.width} bits ({report.backend})")
    for xi, layer in zip(x, layers):
        ax.annotate(f"{layer.speedup:.1f}x", (xi + 0.2, layer.cycles), ha="center",
                    va="bottom", fontsize=8)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def mac_demo(model_name="cnn", *, seed=0, amount=0.9, pattern="unstructured", backend="verilator",
             lanes=16, width=8, batch=1, clock_mhz=None, chart="results/sparse_mac_cycles.png",
             **backend_options):
    """Prune a model through the engines and run it on the unit (``hwprune mac``):
    ``model_name`` is a built-in model or a ``(module, input shape)`` pair.

    ``pattern="unstructured"`` prunes ``amount`` of every layer; ``"N:M"`` keeps N of every M
    (:func:`hwprune.prune` on the same backend) and runs the unit's N:M format. One backend
    (``backend_options`` passed to it: e.g. ``board="ulx3s"`` for ``uart-sim``) prunes and runs.
    Returns ``(report, chart path)``.
    """
    from .models import INPUT_SHAPES, build_model
    from .pruning import prune

    name, n, m = parse_format(pattern)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    check_mac_params(lanes=lanes, width=width, act_width=width, max_k=DEFAULT_MAX_K)
    if isinstance(model_name, tuple):     # (a user's module, one input's shape)
        model, shape = model_name
        model.eval()
    else:
        model, shape = build_model(model_name, seed=seed).eval(), INPUT_SHAPES[model_name]
    if not isinstance(backend, Backend):
        backend = get_backend(backend, lanes=lanes, width=width, **backend_options)
    if name == "unstructured":
        prune(model, amount=amount, backend=backend, lanes=lanes, width=width)
    else:
        prune(model, pattern=f"{n}:{m}", backend=backend, lanes=lanes, width=width)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))
    report = run(model, x, backend=backend, lanes=lanes, width=width, clock_mhz=clock_mhz,
                 fmt="unstructured" if name == "unstructured" else f"{n}:{m}")
    return report, plot_cycles(report, chart)
