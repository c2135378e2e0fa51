import numpy as np
import pytest

from hwprune.quant import dequantize, quantize, tile, untile


@pytest.mark.parametrize("width", [4, 8, 16])
def test_symmetric_codes_and_error_bound(rng, width):
    w = rng.normal(size=(12, 7)) * 0.3
    q = quantize(w, width)
    qmax = 2 ** (width - 1) - 1
    assert q.codes.dtype == np.int16
    assert q.codes.max() == qmax or q.codes.min() == -qmax   # the largest weight hits the top
    assert np.abs(q.codes).max() <= qmax                      # -2**(w-1) is never produced
    assert np.abs(dequantize(q.codes, q.scale) - w).max() <= q.scale / 2 + 1e-7


def test_per_channel_scales(rng):
    w = rng.normal(size=(5, 3, 3)) * np.array([1, 10, 0.1, 3, 0.5])[:, None, None]
    q = quantize(w, 8, "channel")
    assert q.scale.shape == (5, 1, 1)
    np.testing.assert_array_equal(np.abs(q.codes).reshape(5, -1).max(axis=1), 127)


def test_zero_tensor_quantizes_to_zero():
    q = quantize(np.zeros((3, 3)), 8)
    assert not q.codes.any()


def test_bad_granularity():
    with pytest.raises(ValueError, match=r"^granularity must be one of \('tensor', 'channel'\)"):
        quantize(np.ones(3), 8, "row")


@pytest.mark.parametrize("numel,lanes", [(1, 4), (16, 16), (17, 16), (1000, 7)])
def test_tile_pads_the_ragged_tail_and_untiles(rng, numel, lanes):
    codes = rng.integers(-100, 100, size=numel).astype(np.int16).reshape(-1, 1)
    t = tile(codes, lanes)
    assert t.beats == -(-numel // lanes)
    assert t.lane_valid.sum() == numel
    assert not t.data[~t.lane_valid].any()
    np.testing.assert_array_equal(untile(t.data, codes.shape), codes)
