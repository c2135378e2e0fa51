"""Fixed-point quantization and tiling: how float tensors become the engine's beats and back.

Quantization is symmetric: ``q = clip(round(w / scale), -(2**(width-1) - 1), 2**(width-1) - 1)``
with ``scale = max|w| / (2**(width-1) - 1)``, per tensor or per output channel (axis 0). The most
negative code ``-2**(width-1)`` is never produced, so the codes are symmetric around zero.

Tiling flattens a tensor in C order and cuts it into beats of ``lanes`` weights; the ragged tail is
padded with zeros whose ``lane_valid`` bit is clear, so padding is never kept or counted.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["GRANULARITIES", "Quantized", "Tiles", "quantize", "dequantize", "tile", "untile"]

GRANULARITIES = ("tensor", "channel")


@dataclass
class Quantized:
    """A tensor in ``width``-bit symmetric fixed point: ``real ~= codes * scale``."""

    codes: np.ndarray      # int16, the tensor's shape
    scale: np.ndarray      # float64, broadcastable to the tensor's shape
    width: int
    granularity: str

    @property
    def qmax(self):
        return 2 ** (self.width - 1) - 1


def quantize(weights, width, granularity="tensor", *, scale=None):
    """Quantize a float array to ``width``-bit symmetric codes.

    Parameters
    ----------
    weights : array_like of float
    width : int
        Bits per code (4, 8 or 16).
    granularity : {"tensor", "channel"}
        One scale for the tensor, or one per output channel (axis 0).
    scale : float, optional
        Use this scale instead of deriving one (e.g. one common scale for several tensors).
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    # float32 in, float32 arithmetic (24-bit mantissas are exact enough for 16-bit codes);
    # anything else is computed in float64.
    w = np.asarray(weights)
    if w.dtype != np.float32:
        w = w.astype(np.float64)
    qmax = 2 ** (width - 1) - 1
    if scale is not None:
        scale = np.asarray(scale, dtype=np.float64)
    elif granularity == "tensor" or w.ndim < 2:
        amax = np.abs(w).max(initial=0.0)
        scale = np.asarray(float(amax) / qmax if amax > 0 else 1.0, dtype=np.float64)
    else:
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scale = np.where(amax > 0, amax.astype(np.float64) / qmax, 1.0).reshape((-1,) + (1,) * (w.ndim - 1))
    codes = _codes(w, scale.astype(w.dtype), qmax)
    return Quantized(codes=codes, scale=scale, width=width, granularity=granularity)


def _codes(w, scale, qmax):
    """``clip(rint(w / scale), -qmax, qmax)`` as int16: the same IEEE operations as numpy's
    (division, round half to even), computed by torch in place and on every core: for a
    16 M-weight tensor this is 10x faster than numpy's temporaries."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(w)).clone()
    t.div_(torch.from_numpy(np.ascontiguousarray(scale)))
    return t.round_().clamp_(-qmax, qmax).to(torch.int16).numpy()


def dequantize(codes, scale):
    """Real values of fixed-point codes (float32)."""
    return (np.asarray(codes, dtype=np.float64) * scale).astype(np.float32)


@dataclass
class Tiles:
    """A flattened tensor cut into beats."""

    data: np.ndarray        # int16, (beats, lanes)
    lane_valid: np.ndarray  # bool, (beats, lanes); False on the padding of the ragged tail
    shape: tuple            # the tensor's shape

    @property
    def numel(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def beats(self):
        return self.data.shape[0]


def tile(codes, lanes):
    """Cut ``codes`` (any shape, C order) into beats of ``lanes``, padding the ragged tail."""
    codes = np.asarray(codes)
    flat = codes.reshape(-1).astype(np.int16)
    beats = -(-flat.size // lanes)
    data = np.zeros(beats * lanes, dtype=np.int16)
    data[:flat.size] = flat
    valid = np.zeros(beats * lanes, dtype=bool)
    valid[:flat.size] = True
    return Tiles(data=data.reshape(beats, lanes), lane_valid=valid.reshape(beats, lanes),
                 shape=tuple(codes.shape))


def untile(beats, shape):
    """Inverse of :func:`tile` for an engine output (values or mask) of the same tensor."""
    n = int(np.prod(shape, dtype=np.int64))
    return np.asarray(beats).reshape(-1)[:n].reshape(shape)
