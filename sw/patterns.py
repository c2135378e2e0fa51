"""Pruning patterns: parsing ``pattern=`` and laying weights out for the N:M selector.

Valid patterns: ``"unstructured"``; ``"N:M"`` with M in {4, 8} and 0 < N < M (``"2:4"`` is what
sparse tensor cores run); ``"channel"`` (whole output channels, removed physically).

N:M groups run along the *input* dimension, as NVIDIA ASP's ``m4n2_1d`` does: a Linear (or RNN,
or attention projection) weight ``(out, in)`` is cut into rows of ``in``; a convolution weight
``(out, in, *kernel)`` is permuted to ``(out, *kernel, in)`` first, so every group holds M input
channels at one kernel position. Padding rule: a row whose length is not a multiple of M is padded
with invalid lanes up to the next multiple; a padded group keeps ``min(N, real weights)`` of its
real weights and padding is never kept (the first convolution of an RGB network, 3 input
channels, is one group of 3 per kernel position).
"""

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Pattern", "parse_pattern", "NM_GROUP_SIZES", "nm_rows", "nm_unrows"]

NM_GROUP_SIZES = (4, 8)
_VALID_FORMS = ('"unstructured", "N:M" with M in {4, 8} and 0 < N < M (e.g. "2:4", "1:4", '
                '"4:8"), or "channel"')


@dataclass(frozen=True)
class Pattern:
    kind: str          # "unstructured", "nm" or "channel"
    n: int = 0
    m: int = 0

    def __str__(self):
        return f"{self.n}:{self.m}" if self.kind == "nm" else self.kind


def parse_pattern(pattern):
    """Parse a ``pattern=`` argument; raise ValueError listing the valid forms."""
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, str):
        text = pattern.strip().lower()
        if text in ("unstructured", "channel"):
            return Pattern(text)
        match = re.fullmatch(r"(\d+):(\d+)", text)
        if match:
            n, m = int(match[1]), int(match[2])
            if m in NM_GROUP_SIZES and 0 < n < m:
                return Pattern("nm", n, m)
    raise ValueError(f"pattern must be {_VALID_FORMS}; not {pattern!r}")


def nm_rows(codes, m):
    """Rows along the input dimension, padded to a multiple of ``m``.

    Returns ``(rows, valid)``, both ``(R, C')`` with ``C'`` the input size rounded up to ``m``.
    """
    codes = np.asarray(codes)
    if codes.ndim == 1:
        rows = codes.reshape(1, -1)
    elif codes.ndim == 2:
        rows = codes
    else:
        order = (0, *range(2, codes.ndim), 1)           # (out, *kernel, in)
        rows = codes.transpose(order).reshape(-1, codes.shape[1])
    cols = rows.shape[1]
    padded = -(-cols // m) * m
    out = np.zeros((rows.shape[0], padded), dtype=rows.dtype)
    out[:, :cols] = rows
    valid = np.zeros(out.shape, dtype=bool)
    valid[:, :cols] = True
    return out, valid


def nm_unrows(rows, shape):
    """Inverse of :func:`nm_rows`: drop the padding and restore the tensor's layout."""
    shape = tuple(shape)
    if len(shape) <= 2:
        cols = shape[-1]
        return np.asarray(rows)[:, :cols].reshape(shape)
    cols = shape[1]
    permuted = (shape[0], *shape[2:], shape[1])
    back = np.asarray(rows)[:, :cols].reshape(permuted)
    order = (0, len(shape) - 1, *range(1, len(shape) - 1))
    return back.transpose(order)
