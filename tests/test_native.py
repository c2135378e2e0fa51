"""The C++ compile kernels (hwprune.native) against their Python definitions: quantize's
float32 path and compress_unstructured, bit for bit, on random matrices with corner values."""

import numpy as np
import pytest

from hwprune.accelerate import _is_nm_sparse
from hwprune.compress import MAX_SKIP, compress_unstructured
from hwprune.native import quantize_compress
from hwprune.quant import quantize


def _matrix(rng, rows, k, density):
    w = rng.standard_normal((rows, k)).astype(np.float32)
    w[rng.random((rows, k)) >= density] = 0
    w[0] = 0                                              # an empty row
    if rows > 2:
        w[1, :] = 0
        w[1, -1] = 1.0                                    # a skip far past MAX_SKIP
        w[2, ::MAX_SKIP + 1] = -3.0                       # skips of exactly MAX_SKIP
    scale = np.abs(w).max() / 127
    if rows > 3:
        w[3, :4] = np.array([0.5, 1.5, -0.5, -2.5], dtype=np.float32) * scale   # ties
    return w


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_the_native_kernels_equal_quantize_and_compress(seed, granularity):
    rng = np.random.default_rng(seed)
    rows, k = int(rng.integers(1, 40)), int(rng.integers(1, 300))
    width, lanes = [4, 8, 16][seed % 3], [4, 8, 16][(seed // 3) % 3]
    w = _matrix(rng, rows, k, density=[0.02, 0.3, 0.9][seed % 3])
    q, cw, nm_ok = quantize_compress(w, width, lanes, granularity=granularity)
    ref = quantize(w, width, granularity)
    np.testing.assert_array_equal(q.codes, ref.codes, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(q.scale, ref.scale)
    want = compress_unstructured(ref.codes, lanes)
    for f in ("value", "index", "count", "end", "row_nnz"):
        np.testing.assert_array_equal(getattr(cw, f), getattr(want, f), err_msg=f"{f} seed {seed}")
    assert cw.shape == want.shape and cw.lanes == lanes
    assert nm_ok == _is_nm_sparse(ref.codes, 2, 4)


def test_the_2_4_check_sees_a_crowded_group():
    w = np.zeros((3, 10), dtype=np.float32)
    w[:, [0, 1, 4, 5, 8]] = 1.0
    assert quantize_compress(w, 8, 4)[2]
    w[2, 9] = 1.0                          # the padded last group: 8, 9 and two zeros: still 2
    assert quantize_compress(w, 8, 4)[2]
    w[1, 6] = 1.0                          # 4, 5, 6: three in one group
    assert not quantize_compress(w, 8, 4)[2]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_weights_are_refused(bad):
    w = np.ones((4, 8), dtype=np.float32)
    w[2, 3] = bad
    for granularity in ("tensor", "channel"):
        with pytest.raises(ValueError, match="NaN or Inf"):
            quantize_compress(w, 8, 4, granularity=granularity)


def test_a_source_that_does_not_compile_is_a_clear_build_error(tmp_path, monkeypatch):
    from hwprune.sim.build import BuildError, native_library
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "broken.cpp"
    bad.write_text("int f( {\n")
    with pytest.raises(BuildError, match=r"(?s)C\+\+ build of broken.cpp failed \(exit \d+\):.*"
                                         r"broken.cpp"):
        native_library(bad)
    assert not list((tmp_path / "cache" / "lib").glob("broken-*/BUILD_OK"))
