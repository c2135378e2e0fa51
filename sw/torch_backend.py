"""The ``torch`` backend: every block's semantics as vectorised tensor operations, on CPU or CUDA.

It runs the same jobs as every other backend (:meth:`TorchBackend.run`, the golden models'
Job/Result dataclasses) and returns the same results, bit for bit: masks, values, counters and
the stall-free cycle counts the golden models give (the RTL backends are the reference it is
checked against in the backend-parity tests). Its kernels also work on whole flat tensors of
integer codes with no tiling at all, which is what :mod:`hwprune.tensor_prune` (the fast path of
:func:`hwprune.prune` for this backend) uses on models of any size.

Kernels, one per block, each the transaction-level semantics of its golden model in
:mod:`hwprune.contract`:

``mask_codes``
    the threshold engine: ``|w| > T`` kept, ``|w| == T`` kept in stream order while the tie
    budget lasts (a running count of ties only where the budget runs out inside the tensor);
``histogram_counts`` / :func:`select_walk`
    the magnitude histogram (additive, so shards and tensors are summed) and its select walk;
``nm_keep``
    the N:M selector: a group's rank of each lane from pairwise compares of a unique key
    (magnitude, valid bit, lower lane first), ``m`` element-wise passes instead of a sort;
``channel_sums``
    the channel-norm unit: L1 and L2 per channel as segment sums in int64;
``score_codes``
    the score unit: ``(|w| * s) >> width`` in int64;
``row_counts`` / ``select_rows`` / ``row_keep``
    the row blocks: every group's 16 digit counts as one ``bincount`` over (group, digit), the
    select of all groups at once from suffix sums, and per-group tie budgets from a running
    count of ties minus each group's start;
``mac``
    the sparse MAC: the compressed stream decoded with the contract's format semantics, the
    product in float64 (exact: every partial sum is below 2**53), cycles from the contract's
    two-bank schedule.
"""

import numpy as np
import torch

from . import contract
from .backend_api import Backend
from .contract import magnitude_histogram as _hist
from .contract import net_engine as _net
from .contract import nm_selector as _nm
from .contract import row_mask as _rm
from .contract import row_select as _rs
from .contract import score_unit as _su
from .contract import sparse_mac as _mac
from .contract import threshold_engine as _te
from .contract.channel_norms import MAX_CHANNEL_WEIGHTS
from .contract.channel_norms import PIPELINE_LATENCY as _CN_LATENCY

__all__ = ["TorchBackend", "mask_codes", "histogram_counts", "select_walk", "nm_keep",
           "channel_sums", "score_codes", "row_counts", "select_rows", "row_keep",
           "resolve_device"]

#: Elements per chunk of a flat tensor: bounds every temporary (a few bytes per element).
CHUNK = 1 << 22


def resolve_device(device):
    """``None`` -> CUDA when one exists, else the CPU; a name or torch.device as given (checked)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', "
                         f"not {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} asked for, but torch sees no CUDA device here")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {str(dev)!r}")
    return dev


# --- kernels -------------------------------------------------------------------------------------

def _mag(codes, symmetric=False):
    """Magnitudes; ``symmetric`` codes (never ``-2**15``, as quantization makes them) keep
    their 16 bits, others widen to 32 so that ``|-2**15|`` does not overflow."""
    return codes.abs() if symmetric and codes.dtype == torch.int16 else \
        codes.to(torch.int32).abs()


def mask_codes(codes, threshold, budget, valid=None, *, symmetric=False):
    """The threshold engine on a flat (or any-shape, stream order = C order) tensor of codes.

    Returns ``(keep, ties)``: the keep mask and how many ties (``|w| == T``, valid) the tensor
    holds; the budget left afterwards is ``budget - min(ties, budget)``.
    """
    mag = _mag(codes, symmetric and threshold < 2**15)
    keep = mag > threshold
    eq = mag == threshold
    if valid is not None:
        keep &= valid
        eq &= valid
    ties = int(torch.count_nonzero(eq))
    if ties and budget >= ties:
        keep |= eq
    elif ties and budget > 0:
        # The budget runs out inside this tensor: ties are granted in stream order.
        order = torch.cumsum(eq.reshape(-1), 0, dtype=torch.int64).reshape(eq.shape)
        keep |= eq & (order <= budget)
    return keep, ties


def histogram_counts(codes, width, shift=0, match=None, valid=None, *, symmetric=False):
    """The histogram unit's bins for ``codes`` (additive: shards and tensors are summed).

    ``match`` (width 16's second radix pass) counts only magnitudes whose high byte equals it.
    Returns int64 counts on the codes' device.
    """
    bins = _hist.histogram_bins(width)
    mag = _mag(codes, symmetric).reshape(-1)
    if valid is not None:
        mag = mag[valid.reshape(-1)]
    if match is not None:
        mag = mag[(mag >> 8) == match] if width > 8 else mag[:0]
    # Below width 16 every magnitude (at most 2**(width-1)) is its own bin.
    index = mag if width <= 8 and shift == 0 else (mag >> shift) & (bins - 1)
    return torch.bincount(index, minlength=bins).to(torch.int64)


def select_walk(counts, keep):
    """The select walk over a histogram (the golden model's own, on the bins brought to the
    host: 256 numbers): ``(found_bin, above, ties)`` as the unit reports them."""
    return _hist.select_walk(counts.cpu().numpy() if torch.is_tensor(counts) else counts, keep)


def nm_keep(groups, n, valid=None):
    """The N:M selector's keep mask for codes shaped ``(..., m)``: the ``n`` largest magnitudes
    of each group, the lower lane first among equals, padding (``valid`` False) never kept."""
    m = groups.shape[-1]
    # A unique key per lane: larger magnitude first, then (among equals) the lower lane; padding
    # lanes below every valid one. 16 bits hold it while magnitudes stay below 2**12.
    narrow = groups.numel() == 0
    if not narrow and groups.dtype == torch.int16:
        lo, hi = torch.aminmax(groups)
        narrow = -(1 << 12) < int(lo) and int(hi) < (1 << 12)
    kind = torch.int16 if narrow else torch.int32
    key = groups.to(kind).abs() * m + torch.arange(m - 1, -1, -1, device=groups.device,
                                                    dtype=kind)
    if valid is not None:
        key = torch.where(valid, key, -1)
    rank = (key[..., 0:1] > key).to(torch.int8)
    for j in range(1, m):
        rank += key[..., j:j + 1] > key
    keep = rank < n
    if valid is not None:
        keep &= valid
    return keep


def channel_sums(data, valid, last):
    """L1 and L2 of each channel (int64): channels are runs of beats ended by ``last``."""
    mag = torch.where(valid, _mag(data), 0).to(torch.int64)
    channel = torch.cumsum(last.to(torch.int64), 0) - last.to(torch.int64)
    channels = int(torch.count_nonzero(last))
    l1 = torch.zeros(channels, dtype=torch.int64, device=data.device)
    l2 = torch.zeros_like(l1)
    count = torch.zeros_like(l1)
    l1.index_add_(0, channel, mag.sum(1))
    l2.index_add_(0, channel, (mag * mag).sum(1))
    count.index_add_(0, channel, valid.sum(1).to(torch.int64))
    return l1, l2, count


def score_codes(codes, scale, width, valid=None):
    """The score unit: ``(|w| * s) >> width`` (int16; 0 where ``valid`` is False)."""
    score = (_mag(codes).to(torch.int64) * scale.to(torch.int64)) >> width
    if valid is not None:
        score = torch.where(valid, score, 0)
    return score.to(torch.int16)


def _groups_of(last, shape):
    last = last.to(torch.int64)
    return (torch.cumsum(last, 0) - last)[:, None].expand(shape)


def row_counts(codes, valid, last, shift, prefix, groups):
    """The row-select unit's 16 digit counts of every group, ``(groups, 16)`` int64."""
    mag = _mag(codes).to(torch.int64)
    g = _groups_of(last, mag.shape)
    counted = valid & ((mag >> (shift + _rs.DIGIT_BITS)) == prefix[g])
    index = g * _rs.DIGITS + ((mag >> shift) & (_rs.DIGITS - 1))
    return torch.bincount(index[counted], minlength=groups * _rs.DIGITS).reshape(
        groups, _rs.DIGITS)


def select_rows(counts, keep):
    """Every group's select at once (:func:`hwprune.contract.row_select.select_rows`)."""
    top = torch.zeros((counts.shape[0], counts.shape[1] + 1), dtype=torch.int64,
                      device=counts.device)
    top[:, :-1] = torch.cumsum(counts.flip(1), 1).flip(1)
    hits = (top[:, :-1] >= keep[:, None]).sum(1)
    found = torch.clamp(hits - 1, min=0)
    above = torch.gather(top, 1, (found + 1)[:, None])[:, 0]
    return found, above, keep - above


def row_keep(codes, valid, last, threshold, budget):
    """The row-mask unit's keep mask: per group ``|w| > T``, ties while its budget lasts."""
    mag = _mag(codes).to(torch.int64)
    g = _groups_of(last, mag.shape)
    t = threshold[g]
    eq = valid & (mag == t)
    order = torch.cumsum(eq.reshape(-1), 0)
    starts = torch.nonzero(torch.cat([last.new_ones(1), last[:-1]])).reshape(-1)
    before = torch.cat([order.new_zeros(1), order])[starts * mag.shape[1]]
    rank = order - before[g.reshape(-1)]
    return (valid & (mag > t)) | (eq & (rank <= budget[g].reshape(-1)).reshape(mag.shape))


# --- the backend ---------------------------------------------------------------------------------

class TorchBackend(Backend):
    """Every block as vectorised tensor operations on integer codes (``device``: ``"cpu"``,
    ``"cuda"``, or ``None`` for CUDA where it exists). Bit-identical to ``golden`` and the RTL
    backends; the fast path for large models."""

    name = "torch"
    #: :func:`hwprune.prune` hands this backend whole tensors (:mod:`hwprune.tensor_prune`).
    tensor_path = True

    def __init__(self, *, lanes, width, device=None):
        super().__init__(lanes=lanes, width=width)
        self.device = resolve_device(device)

    def __repr__(self):
        return f"TorchBackend(lanes={self.lanes}, width={self.width}, device={str(self.device)!r})"

    def _t(self, array, dtype):
        return torch.as_tensor(np.ascontiguousarray(array)).to(self.device, dtype)

    def run(self, block, jobs):
        desc, params = self.params(block)
        step = getattr(self, "_" + desc.name)
        return [step(job, params) for job in jobs]

    def _threshold_engine(self, job, params):
        data = self._t(job.data, torch.int16)
        valid = self._t(job.lane_valid, torch.bool)
        if data.shape != valid.shape or data.ndim != 2:
            raise ValueError(f"tiles and lane_valid must both have shape (beats, lanes), "
                             f"not {tuple(data.shape)} and {tuple(valid.shape)}")
        keep, ties = mask_codes(data, int(job.threshold), int(job.tie_budget), valid)
        beats = data.shape[0]
        return contract.MaskResult(
            data=torch.where(keep, data, 0).cpu().numpy().astype(np.int16),
            mask=keep.cpu().numpy(), beats=beats, kept=int(torch.count_nonzero(keep)),
            ties_left=int(job.tie_budget) - min(ties, int(job.tie_budget)),
            cycles=beats + _te.PIPELINE_LATENCY if beats else 0)

    def _magnitude_histogram(self, job, params):
        if int(job.width) != params["width"]:
            raise ValueError(f"job is for width {job.width}, the unit has width {params['width']}")
        data = self._t(job.data, torch.int16)
        valid = self._t(job.lane_valid, torch.bool)
        counts = histogram_counts(data, int(job.width), int(job.shift),
                                  int(job.match_value) if job.match_en else None, valid)
        found, above, ties = select_walk(counts, int(job.keep))
        return contract.HistogramResult(
            found_bin=found, above=above, ties=ties, counted=int(counts.sum()),
            cycles=_hist.stall_free_cycles(data.shape[0], int(job.width),
                                           _hist.ways(data.shape[1], params["banks"])))

    def _nm_selector(self, job, params):
        _nm.check_job(job)
        m, n = int(job.m), int(job.n)
        data = self._t(job.data, torch.int16)
        valid = self._t(job.lane_valid, torch.bool)
        beats, lanes = data.shape
        groups = data.reshape(beats, lanes // m, m)
        keep = nm_keep(groups, n, valid.reshape(groups.shape))
        # Compaction: each kept lane goes to slot (kept lanes before it in its group).
        slot = torch.cumsum(keep.to(torch.int64), -1) - keep.to(torch.int64)
        lane = torch.arange(m, device=self.device).expand(keep.shape)
        target = torch.where(keep, slot, m)      # unkept lanes go to a spare slot m, dropped
        values = torch.zeros((beats, lanes // m, m + 1), dtype=torch.int16, device=self.device)
        index = torch.zeros((beats, lanes // m, m + 1), dtype=torch.int64, device=self.device)
        values.scatter_(-1, target, torch.where(keep, groups, 0))
        index.scatter_(-1, target, torch.where(keep, lane, 0))
        keep = keep.reshape(beats, lanes)
        return contract.NMResult(
            data=torch.where(keep, data, 0).cpu().numpy().astype(np.int16),
            mask=keep.cpu().numpy(),
            values=values[..., :m].reshape(beats, lanes).cpu().numpy().astype(np.int16),
            index=index[..., :m].reshape(beats, lanes).cpu().numpy().astype(np.uint8),
            beats=beats, kept=int(torch.count_nonzero(keep)),
            cycles=beats + _nm.PIPELINE_LATENCY if beats else 0)

    def _channel_norms(self, job, params):
        data = self._t(job.data, torch.int16)
        valid = self._t(job.lane_valid, torch.bool)
        last = self._t(job.last, torch.bool)
        if data.shape != valid.shape or data.ndim != 2 or last.shape != data.shape[:1]:
            raise ValueError(f"tiles and lane_valid must have shape (beats, lanes) and last "
                             f"(beats,), not {tuple(data.shape)}, {tuple(valid.shape)} and "
                             f"{tuple(last.shape)}")
        beats = data.shape[0]
        if not beats:
            empty = np.zeros(0, dtype=np.int64)
            return contract.ChannelResult(l1=empty, l2=empty.copy(), beats=0, cycles=0)
        if not bool(last[-1]):
            raise ValueError("the final beat must have last set (channels occupy whole beats)")
        l1, l2, count = channel_sums(data, valid, last)
        if int(count.max()) > MAX_CHANNEL_WEIGHTS:
            raise ValueError(f"a channel may hold at most {MAX_CHANNEL_WEIGHTS} weights, "
                             f"not {int(count.max())}")
        return contract.ChannelResult(l1=l1.cpu().numpy(), l2=l2.cpu().numpy(), beats=beats,
                                      cycles=beats + _CN_LATENCY)

    def _score_unit(self, job, params):
        if int(job.width) != params["width"]:
            raise ValueError(f"job is for width {job.width}, the unit has width {params['width']}")
        _su.check_job(job)
        valid = self._t(job.lane_valid, torch.bool)
        score = score_codes(self._t(job.data, torch.int16), self._t(job.scale, torch.int64),
                            int(job.width), valid)
        beats = valid.shape[0]
        return _su.ScoreResult(data=score.cpu().numpy(), lane_valid=valid.cpu().numpy(),
                               beats=beats, cycles=beats + _su.PIPELINE_LATENCY if beats else 0)

    def _row_select(self, job, params):
        if int(job.width) != params["width"]:
            raise ValueError(f"job is for width {job.width}, the unit has width {params['width']}")
        groups = _rs.check_job(job, params["width"])
        keep = self._t(job.keep, torch.int64)
        prefix = self._t(job.prefix, torch.int64)
        counts = row_counts(self._t(job.data, torch.int16), self._t(job.lane_valid, torch.bool),
                            self._t(job.last, torch.bool), int(job.shift), prefix, groups)
        found, above, ties = select_rows(counts, keep)
        beats = np.asarray(job.data).shape[0]
        return _rs.RowSelectResult(
            found=found.cpu().numpy(), above=above.cpu().numpy(), ties=ties.cpu().numpy(),
            counted=counts.sum(1).cpu().numpy(), groups=groups,
            cycles=beats + _rs.PIPELINE_LATENCY if beats else 0)

    def _row_mask(self, job, params):
        _rm.check_job(job)
        beats = np.asarray(job.data).shape[0]
        if not beats:
            return _rm.run(job)
        keep = row_keep(self._t(job.data, torch.int16), self._t(job.lane_valid, torch.bool),
                        self._t(job.last, torch.bool), self._t(job.threshold, torch.int64),
                        self._t(job.tie_budget, torch.int64))
        return _rm.RowMaskResult(mask=keep.cpu().numpy(), beats=beats,
                                 kept=int(torch.count_nonzero(keep)),
                                 cycles=beats + _rm.PIPELINE_LATENCY)

    def _sparse_mac(self, job, params):
        acts = np.asarray(job.acts)
        lanes = np.asarray(job.value).shape[1]
        if acts.ndim != 2 or acts.shape[1] % lanes:
            raise ValueError(f"acts must be (vectors, act_beats * {lanes}), not {acts.shape}")
        # The compressed format's meaning is the contract's (one decoder for every backend).
        dense = _mac.decode_stream(job.value, job.index, job.count, job.end, fmt=int(job.fmt),
                                   n=int(job.nm_n), m=int(job.nm_m), k=acts.shape[1])
        out = self._t(acts, torch.float64) @ self._t(dense, torch.float64).T
        cycles = _mac.stall_free_cycles(np.asarray(job.value).shape[0], acts.shape[1] // lanes,
                                        acts.shape[0])
        return contract.SparseMacResult(out=out.cpu().numpy().astype(np.int64), cycles=cycles)

    def _net_engine(self, job, params):
        program = job.program
        _net.check_program(program, **params)
        x = self._t(program.padded(job.inputs), torch.int64)
        columns = beats = 0
        for i, layer in enumerate(program.layers):
            # Products and sums are below 2**53: exact in float64 (CUDA has no int64 matmul).
            w = self._t(_net.dense_weights(program, i), torch.float64)
            c = self._t(_net.layer_entries(program, i)[:, 1], torch.int64)
            selected = (c > 0) & (x != 0) if job.skip_zero else (c > 0).expand_as(x)
            columns += int(selected.sum())
            beats += int((selected * c).sum())
            b = self._t(_net.layer_bias(program, i), torch.int64)
            y = (x.to(torch.float64) @ w.T).to(torch.int64) + b
            if layer.pool:
                h, wd = 1 << layer.h_log2, 1 << layer.w_log2
                y = y.reshape(len(y), h // 2, 2, wd // 2, 2, -1).amax(dim=(2, 4)) \
                    .reshape(len(y), -1)
            if layer.final:
                x = y
                break
            q = (y * int(layer.scale) + ((1 << int(layer.shift)) >> 1)) >> int(layer.shift)
            if layer.relu:
                q = q.clamp(min=0)
            x = q.clamp(-2 ** (program.width - 1), 2 ** (program.width - 1) - 1)
        out = x[:, self._t(program.positions, torch.int64)].cpu().numpy().astype(np.int64)
        return _net.NetResult(out=out, columns=columns, beats=beats, vectors=len(out))
