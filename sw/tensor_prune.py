"""The fast path of :func:`hwprune.prune` for the ``torch`` backend: whole tensors, bounded memory.

The same plan as the tiled path (:mod:`hwprune.pruning`), on flat tensors of integer codes with
no tiling: quantize (bit-identical to :func:`hwprune.quant.quantize`), count the histogram,
walk it, mask with the tie budget carried in stream order, and hand back one plan per tensor.
The RTL backends stay the reference: the tests check that this path gives the same masks,
kept counts, thresholds and cycle counts as ``golden`` and ``verilator``.

Memory stays bounded for models of any size: tensors are read one at a time and cut into chunks
of :data:`~hwprune.torch_backend.CHUNK` weights; global scope keeps only histograms and the
common scale between its passes (codes are kept between passes only while they fit in
:data:`KEEP_CODES_BYTES`, else they are quantized again); ``write_back="inplace"`` keeps each
tensor's mask as packed bits (1/8 byte a weight) until every tensor is planned.
"""

import math

import numpy as np
import torch

from .contract import HistogramResult, select_threshold_passes
from .contract import magnitude_histogram as _hist
from .contract import nm_selector as _nm
from .contract import threshold_engine as _te
from .report import LayerReport
from .torch_backend import CHUNK, histogram_counts, mask_codes, nm_keep, select_walk

__all__ = ["plan_layers", "plan_global", "plan_nm", "check_finite", "pack_bits", "unpack_bits"]

#: Global scope keeps every tensor's codes between its passes while they take at most this.
KEEP_CODES_BYTES = 1 << 28


def _flat(w):
    return w.detach().reshape(-1)


def _chunks(n, size=CHUNK):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def check_finite(name, w):
    """hwprune's error for a weight with NaN or Inf, read in chunks (no copy of the tensor):
    one min/max pass (both propagate NaN); the bad values are counted only when there are some."""
    flat = _flat(w)
    for a, b in _chunks(flat.numel()):
        lo, hi = torch.aminmax(flat[a:b])
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            bad = sum(int(torch.count_nonzero(~torch.isfinite(flat[c:d])))
                      for c, d in _chunks(flat.numel()))
            raise ValueError(f"layer {name!r} has {bad} NaN or Inf weight(s); "
                             f"nothing was pruned")


# --- quantization (bit-identical to hwprune.quant.quantize on float32) ---------------------------

def _amax(w):
    flat, amax = _flat(w), 0.0
    for a, b in _chunks(flat.numel()):
        if b > a:
            lo, hi = torch.aminmax(flat[a:b])
            amax = max(amax, -float(lo), float(hi))
    return amax


def _scale_for(amax, width):
    """The scale :func:`hwprune.quant.quantize` derives from a largest magnitude (float64)."""
    return amax / (2 ** (width - 1) - 1) if amax > 0 else 1.0


def _quantize(chunk, scale, width, device):
    """Codes of a chunk of weights: ``clip(rint(w / scale), -qmax, qmax)`` in float32, int16."""
    qmax = 2 ** (width - 1) - 1
    x = chunk.to(device=device, dtype=torch.float32, non_blocking=True)
    s = (scale.to(device=device, dtype=torch.float32) if torch.is_tensor(scale)
         else torch.tensor(scale, dtype=torch.float32, device=device))
    x = x / s if x.data_ptr() == chunk.data_ptr() else x.div_(s)   # never in the weight itself
    return x.round_().clamp_(-qmax, qmax).to(torch.int16)


def quantize_tensor(w, width, granularity, device):
    """``(codes, scale)`` of a whole tensor (codes on ``device``, the tensor's shape)."""
    if granularity == "channel" and w.dim() >= 2:
        rows = w.detach().reshape(w.shape[0], -1).to(device, torch.float32)
        amax = rows.abs().amax(dim=1).double()
        qmax = 2 ** (width - 1) - 1
        scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
        codes = _quantize(rows, scale[:, None], width, device).reshape(w.shape)
        return codes, scale.cpu().numpy().reshape((-1,) + (1,) * (w.dim() - 1))
    scale = _scale_for(_amax(w), width)
    return _codes_of(w, scale, width, device), np.asarray(scale)


def _split(codes):
    """Codes already made, chunk by chunk (flat, in stream order)."""
    flat = codes.reshape(-1)
    for a, b in _chunks(flat.numel()):
        yield flat[a:b]


def _codes_chunks(w, scale, width, device, codes=None):
    """The codes of ``w`` chunk by chunk (flat, in stream order), from ``codes`` if given."""
    if codes is not None:
        yield from _split(codes)
        return
    flat = _flat(w)
    for a, b in _chunks(flat.numel()):
        yield _quantize(flat[a:b], scale, width, device)


# --- the threshold search and the masking pass ---------------------------------------------------

def _beats(numel, lanes):
    return -(-numel // lanes)


def _find_threshold(chunks_of, width, keep, numel, beats):
    """Threshold, tie budget and histogram cycles for ``keep`` of the codes ``chunks_of()``
    yields (a fresh stream of chunks per pass; their histograms are summed). The passes are the
    contract's (:func:`~hwprune.contract.select_threshold_passes`: one at width 4 and 8, two
    radix passes at 16), each counted here and walked with the golden model's select walk."""
    def run_pass(job):
        counts = None
        for part in chunks_of():
            c = histogram_counts(part, width, job.shift,
                                 job.match_value if job.match_en else None, symmetric=True)
            counts = c if counts is None else counts + c
        found, above, ties = select_walk(counts, job.keep)
        return HistogramResult(found_bin=found, above=above, ties=ties,
                               counted=int(counts.sum()),
                               cycles=_hist.stall_free_cycles(beats, width))
    threshold, ties, passes = select_threshold_passes(run_pass, None, None, width, keep)
    if passes[0].counted != numel:
        raise RuntimeError(f"histogram counted {passes[0].counted} weights, expected {numel}; "
                           f"nothing was pruned")
    return threshold, ties, sum(p.cycles for p in passes)


def _mask_cycles(beats):
    return beats + _te.PIPELINE_LATENCY if beats else 0


def _mask_stream(chunks, numel, threshold, budget, device):
    """Keep mask of a stream of code chunks with the tie budget carried across them; returns
    ``(mask, budget_left)`` (mask flat, bool, on ``device``)."""
    mask = torch.empty(numel, dtype=torch.bool, device=device)
    at = 0
    for codes in chunks:
        keep, ties = mask_codes(codes, threshold, budget, symmetric=True)
        mask[at:at + codes.numel()] = keep
        at += codes.numel()
        budget -= min(ties, budget)
    return mask, budget


def plan_layers(items, engine, amount_keep, granularity, bar):
    """Layer scope: one threshold per tensor. ``items``: ``(name, w)``; yields
    ``(mask, values, scale, LayerReport)`` per tensor."""
    width, lanes, device = engine.width, engine.lanes, engine.device
    for name, w in bar(items):
        codes, scale = quantize_tensor(w, width, granularity, device)
        numel = codes.numel()
        keep = amount_keep(numel)

        beats = _beats(numel, lanes)
        threshold, ties, search_cycles = _find_threshold(
            lambda codes=codes: _split(codes), width, keep, numel, beats)
        mask, _ = _mask_stream(_split(codes), numel, threshold, ties, device)
        kept = int(torch.count_nonzero(mask))
        if kept != keep:
            raise RuntimeError(f"engine kept {kept} weights of {name!r}, expected {keep}; "
                               f"nothing was pruned")
        mask = mask.reshape(codes.shape)
        yield mask, (codes, mask), scale, LayerReport(
            name=name, shape=tuple(codes.shape), numel=numel, kept=kept, threshold=threshold,
            tie_budget=ties, scale=float(np.max(scale)), beats=beats,
            cycles=_mask_cycles(beats) + search_cycles)


def plan_global(items, engine, keep_of_total, bar, report, keep_values, pack=False):
    """Global scope: one common scale, one histogram summed over every tensor, one select, then
    every tensor masked with the tie budget carried in model order. ``items``: ``(name, w)``;
    ``pack``: hand back each mask as packed bits (:func:`pack_bits`) as soon as it is made."""
    width, lanes, device = engine.width, engine.lanes, engine.device
    scale = _scale_for(max((_amax(w) for _, w in items), default=0.0), width)
    total = sum(w.numel() for _, w in items)
    keep = keep_of_total(total)
    kept_codes = {}
    if 2 * total <= KEEP_CODES_BYTES:
        for name, w in items:
            kept_codes[name] = _codes_of(w, scale, width, device)

    threshold, ties, report.search_cycles = _find_threshold(
        lambda: (part for name, w in items
                 for part in _codes_chunks(w, scale, width, device, kept_codes.get(name))),
        width, keep, total, sum(_beats(w.numel(), lanes) for _, w in items))
    budget, kept_all, plans = ties, 0, []
    for name, w in bar(items):
        codes = kept_codes.get(name)
        if codes is None and keep_values:
            codes = _codes_of(w, scale, width, device)
        mask, budget = _mask_stream(_codes_chunks(w, scale, width, device, codes), w.numel(),
                                    threshold, budget, device)
        kept = int(torch.count_nonzero(mask))
        kept_all += kept
        beats = _beats(w.numel(), lanes)
        mask = pack_bits(mask) if pack else mask.reshape(w.shape)
        plans.append((mask, (codes, mask) if keep_values else None, np.asarray(scale),
                      LayerReport(name=name, shape=tuple(w.shape), numel=w.numel(), kept=kept,
                                  threshold=threshold, tie_budget=ties, scale=float(scale),
                                  beats=beats, cycles=_mask_cycles(beats))))
    if kept_all != keep:
        raise RuntimeError(f"engine kept {kept_all} weights over all tensors, expected {keep}; "
                           f"nothing was pruned")
    return plans


def _codes_of(w, scale, width, device):
    """The codes of ``w`` at ``scale`` (the tensor's shape, on ``device``), chunk by chunk."""
    flat = _flat(w)
    codes = torch.empty(flat.numel(), dtype=torch.int16, device=device)
    for a, b in _chunks(flat.numel()):
        codes[a:b] = _quantize(flat[a:b], scale, width, device)
    return codes.reshape(w.shape)


def _nm_rows(codes, m):
    """Rows along the input dimension (as :func:`hwprune.patterns.nm_rows`), padded to ``m``."""
    if codes.dim() == 1:
        rows = codes.reshape(1, -1)
    elif codes.dim() == 2:
        rows = codes
    else:
        rows = codes.permute(0, *range(2, codes.dim()), 1).reshape(-1, codes.shape[1])
    cols = rows.shape[1]
    padded = -(-cols // m) * m
    if padded == cols:
        return rows, None, cols
    out = torch.zeros((rows.shape[0], padded), dtype=rows.dtype, device=rows.device)
    out[:, :cols] = rows
    valid = torch.zeros(out.shape, dtype=torch.bool, device=rows.device)
    valid[:, :cols] = True
    return out, valid, cols


def _nm_unrows(rows, cols, shape):
    rows = rows[:, :cols]
    if len(shape) <= 2:
        return rows.reshape(shape)
    permuted = rows.reshape(shape[0], *shape[2:], shape[1])
    return permuted.permute(0, len(shape) - 1, *range(1, len(shape) - 1))


def plan_nm(items, engine, shape, granularity, bar):
    """N:M: the ``n`` largest of every group of ``m`` input weights, per tensor."""
    width, lanes, device = engine.width, engine.lanes, engine.device
    m, n = shape.m, shape.n
    for name, w in bar(items):
        codes, scale = quantize_tensor(w, width, granularity, device)
        rows, valid, cols = _nm_rows(codes, m)
        groups = rows.reshape(rows.shape[0], -1, m)
        keep = nm_keep(groups, n, None if valid is None else valid.reshape(groups.shape))
        mask = _nm_unrows(keep.reshape(rows.shape), cols, tuple(codes.shape)).contiguous()
        kept = int(torch.count_nonzero(keep))
        full, part = divmod(cols, m)
        expect = rows.shape[0] * (full * n + min(part, n))
        if kept != expect:
            raise RuntimeError(f"engine kept {kept} weights of {name!r}, expected {expect}; "
                               f"nothing was pruned")
        beats = _beats(rows.numel(), lanes)
        yield mask, (codes, mask), scale, LayerReport(
            name=name, shape=tuple(codes.shape), numel=codes.numel(), kept=kept, threshold=0,
            tie_budget=0, scale=float(np.max(scale)), beats=beats,
            cycles=beats + _nm.PIPELINE_LATENCY if beats else 0)


# --- packed masks (write_back="inplace" keeps every tensor's mask as bits until it writes) -------

def _bit_weights(device):
    return (1 << torch.arange(8, dtype=torch.int32, device=device)).to(torch.uint8)


def pack_bits(mask):
    """A flat bool mask as ``ceil(n / 8)`` bytes (bit i of byte j: element 8 j + i)."""
    flat = mask.reshape(-1)
    n = flat.numel()
    out = torch.empty(math.ceil(n / 8), dtype=torch.uint8, device=flat.device)
    weights = _bit_weights(flat.device)
    for a, b in _chunks(n, CHUNK - CHUNK % 8):
        part = flat[a:b]
        if part.numel() % 8:
            part = torch.cat([part, part.new_zeros(8 - part.numel() % 8)])
        out[a // 8:a // 8 + part.numel() // 8] = \
            (part.reshape(-1, 8).to(torch.uint8) * weights).sum(1, dtype=torch.uint8)
    return out, n


def unpack_bits(packed, n, start, stop):
    """Elements ``start:stop`` (``start`` a multiple of 8) of a mask packed by :func:`pack_bits`."""
    weights = _bit_weights(packed.device)
    bytes_ = packed[start // 8:-(-stop // 8)]
    bits = (bytes_[:, None] & weights) != 0
    return bits.reshape(-1)[:stop - start]
