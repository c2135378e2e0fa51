"""The golden N:M selector against references written from the patterns' definitions."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hwprune.contract import MODELS, NMJob, nm_mask

nm_select = MODELS["nm_selector"]


def asp_m4n2_1d(weights):
    """NVIDIA ASP's ``m4n2_1d`` mask from its definition: along each row, in every group of 4
    consecutive weights keep the 2 of largest magnitude; between equal magnitudes the lower index
    wins."""
    mask = np.zeros(weights.shape, dtype=bool)
    for r, row in enumerate(weights.tolist()):
        for start in range(0, len(row), 4):
            group = range(start, start + 4)
            for i in sorted(group, key=lambda i: (-abs(row[i]), i))[:2]:
                mask[r, i] = True
    return mask


def reference(weights, valid, m, n):
    """Keep lane i when it is valid and fewer than n valid lanes of its group beat it."""
    mask = np.zeros(weights.shape, dtype=bool)
    for r in range(weights.shape[0]):
        for i in range(weights.shape[1]):
            if not valid[r, i]:
                continue
            g = range(i - i % m, i - i % m + m)
            rank = sum(1 for k in g if valid[r, k] and k != i and
                       (abs(int(weights[r, k])) > abs(int(weights[r, i])) or
                        (abs(int(weights[r, k])) == abs(int(weights[r, i])) and k < i)))
            mask[r, i] = rank < n
    return mask


# Small value ranges make ties common; -2**(w-1) is in every range.
weights_8 = st.integers(1, 24).flatmap(lambda beats: arrays(
    np.int16, (beats, 16), elements=st.one_of(st.integers(-3, 3), st.integers(-128, 127))))


@settings(max_examples=200, deadline=None)
@given(weights_8)
def test_two_four_mask_equals_asp_m4n2_1d(weights):
    valid = np.ones_like(weights, dtype=bool)
    np.testing.assert_array_equal(nm_mask(weights, valid, 4, 2), asp_m4n2_1d(weights))
    result = nm_select(NMJob(weights, valid, 4, 2))
    np.testing.assert_array_equal(result.mask, asp_m4n2_1d(weights))
    assert result.kept == weights.size // 2


@settings(max_examples=150, deadline=None)
@given(weights_8, st.sampled_from([4, 8]), st.integers(0, 8), st.integers(0, 2**32 - 1))
def test_any_pattern_with_padding_matches_reference(weights, m, n, seed):
    n = min(n, m)
    valid = np.random.default_rng(seed).random(weights.shape) < 0.8
    result = nm_select(NMJob(weights, valid, m, n))
    want = reference(weights, valid, m, n)
    np.testing.assert_array_equal(result.mask, want)
    np.testing.assert_array_equal(result.data, np.where(want, weights, 0))
    # The compacted form lists each group's kept weights in lane order, then zeros.
    for r in range(weights.shape[0]):
        for g in range(0, weights.shape[1], m):
            kept = np.flatnonzero(want[r, g:g + m])
            k = len(kept)
            np.testing.assert_array_equal(result.values[r, g:g + k], weights[r, g + kept])
            np.testing.assert_array_equal(result.index[r, g:g + k], kept)
            assert not result.values[r, g + k:g + m].any()
            assert not result.index[r, g + k:g + m].any()


def test_most_negative_value_has_the_largest_magnitude():
    weights = np.array([[127, -128, 127, 127, -1, 1, -1, 1]], dtype=np.int16)
    valid = np.ones_like(weights, dtype=bool)
    result = nm_select(NMJob(weights, valid, 4, 1))
    np.testing.assert_array_equal(result.mask[0], [0, 1, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(result.values[0], [-128, 0, 0, 0, -1, 0, 0, 0])
    np.testing.assert_array_equal(result.index[0], [1, 0, 0, 0, 0, 0, 0, 0])
