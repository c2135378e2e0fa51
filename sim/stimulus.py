"""Random stimulus for the engines: random weights salted with corner values."""

import numpy as np

__all__ = ["corner_values", "random_tiles", "random_layer", "random_acts"]


def corner_values(width):
    """Values every test feeds: zero, +-1, the extremes and the most negative -2**(width-1)."""
    hi = 2 ** (width - 1)
    return np.array([0, 1, -1, hi - 1, -(hi - 1), -hi, hi // 2, -(hi // 2)], dtype=np.int16)


def random_tiles(rng, beats, lanes, width, *, corner_fraction=0.25, pad_fraction=0.1,
                 narrow_fraction=0.3):
    """Return ``(tiles, lane_valid)`` of shape (beats, lanes).

    A ``corner_fraction`` of the weights are corner values, a ``narrow_fraction`` come from a
    small range (many ties), and about ``pad_fraction`` of the beats have padding lanes.
    """
    hi = 2 ** (width - 1)
    tiles = rng.integers(-hi, hi, size=(beats, lanes), dtype=np.int32)
    narrow = rng.random((beats, lanes)) < narrow_fraction
    tiles[narrow] = rng.integers(-3, 4, size=int(narrow.sum()))
    corner = rng.random((beats, lanes)) < corner_fraction
    tiles[corner] = rng.choice(corner_values(width), size=int(corner.sum()))
    lane_valid = np.ones((beats, lanes), dtype=bool)
    padded = np.flatnonzero(rng.random(beats) < pad_fraction)
    for b in padded:
        lane_valid[b, rng.integers(0, lanes):] = False
    return tiles.astype(np.int16), lane_valid


def random_layer(rng, rows, k, width, density):
    """A layer's weight codes (rows x k) at ``density``, with an empty row, a fully dense row
    and (from three rows) a row holding only its two extreme end weights: a long zero run."""
    hi = 2 ** (width - 1)
    w = rng.integers(-hi, hi, size=(rows, k))
    w[rng.random((rows, k)) >= density] = 0
    w[0] = 0
    w[1] = rng.integers(1, hi, size=k) * rng.choice([-1, 1], size=k)
    if rows > 2:
        w[2] = 0
        w[2, [0, k - 1]] = [hi - 1, -hi]
    return w


def random_conv_network(rng, spec, width, *, density=0.4):
    """Integer layers of a small CNN: ``spec`` is ``(channels, height, width)`` of the input,
    then ``("conv", out_channels, kernel, pool)`` steps, then fully connected widths; salted
    with corner weights, an all-zero channel and biases at the bias memory's bounds."""
    from hwprune.contract.net_engine import SCALE_BITS, geometry
    from hwprune.deploy import ProgramLayer
    hi = 2 ** (width - 1)
    bound = 2 ** (geometry(lanes=4, width=width).bias_width - 1)
    (c, h, w_), *steps = spec
    layers = []
    for i, step in enumerate(steps):
        if isinstance(step, tuple):
            _, k_out, kernel, pool = step
            shape = (k_out, c, kernel, kernel)
            fan_in = c * kernel * kernel
        else:
            shape, fan_in = (step, c * h * w_), c * h * w_
        wt = rng.integers(-hi, hi, size=shape)
        wt[rng.random(shape) >= density] = 0
        corner = rng.random(shape) < 0.1
        wt[corner] = rng.choice(corner_values(width), size=int(corner.sum()))
        if shape[0] > 1:
            wt[rng.integers(shape[0])] = 0
        bias = rng.integers(-bound // 8, bound // 8, size=shape[0])
        bias[rng.integers(shape[0])], bias[rng.integers(shape[0])] = -bound, bound - 1
        scale = int(rng.integers(1, 2 ** SCALE_BITS))
        shift = max(0, int(np.log2(scale * hi * fan_in * density) + 1) - 2)
        if isinstance(step, tuple):
            layers.append(ProgramLayer(wt, bias, scale=scale, shift=shift, relu=i % 2 == 0,
                                       shape=(h, w_), pool=pool))
            c = k_out
            if pool:
                h, w_ = h // 2, w_ // 2
        else:
            layers.append(ProgramLayer(wt, bias, scale=scale, shift=shift, relu=True))
            c, h, w_ = step, 1, 1
    return layers


def random_acts(rng, vectors, k, act_width):
    """Random activation codes (vectors x k) of ``act_width`` bits."""
    hi = 2 ** (act_width - 1)
    return rng.integers(-hi, hi, size=(vectors, k))


def random_network(rng, sizes, width, *, density=0.3, relu=True):
    """Integer layers (:class:`hwprune.deploy.ProgramLayer`) of a network with ``sizes`` (inputs,
    hidden..., outputs), salted with corner values, an all-zero row, an all-zero column and
    biases at the bias memory's bounds; requantization scales that keep activations busy."""
    from hwprune.contract.net_engine import SCALE_BITS, geometry
    from hwprune.deploy import ProgramLayer
    hi = 2 ** (width - 1)
    layers = []
    for i, (k, rows) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.integers(-hi, hi, size=(rows, k))
        w[rng.random((rows, k)) >= density] = 0
        corner = rng.random((rows, k)) < 0.1
        w[corner] = rng.choice(corner_values(width), size=int(corner.sum()))
        if rows > 1:
            w[rng.integers(rows)] = 0
        if k > 1:
            w[:, rng.integers(k)] = 0
        bound = 2 ** (geometry(lanes=4, width=width).bias_width - 1)
        bias = rng.integers(-bound // 8, bound // 8, size=rows)
        bias[rng.integers(rows)], bias[rng.integers(rows)] = -bound, bound - 1
        scale = int(rng.integers(1, 2 ** SCALE_BITS))
        shift = int(np.log2(scale * hi * max(1, k) * density) + 1)
        layers.append(ProgramLayer(w, bias, scale=scale, shift=max(0, shift - 2),
                                   relu=relu and i % 2 == 0))
    return layers
