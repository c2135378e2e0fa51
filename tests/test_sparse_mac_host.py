"""Host side of the sparse MAC unit: formats, backends bit for bit, whole models, report, CLI."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import hwprune
from hwprune.accelerate import reference, synthesis_clock, DEFAULT_CLOCK_MHZ
from hwprune.backends import get_backend
from hwprune.compress import (compress, compress_nm, nm_mask, parse_format, reduction_matrix,
                              reduction_vectors)
from hwprune.contract.sparse_mac import make_job, stall_free_cycles
from hwprune.models import build_model

LANES, WIDTH = 16, 8


def asp_m4n2_1d(w):
    """2:4 mask written from its definition (NVIDIA ASP m4n2_1d): in each group of 4 consecutive
    weights along the input dimension (convolutions: input channels at one kernel position, as
    ASP's permute(2, 3, 0, 1)) keep the 2 largest |w|, the lower index winning ties."""
    w = np.abs(np.asarray(w, dtype=np.float64))
    rows = w if w.ndim == 2 else np.transpose(w, (2, 3, 0, 1)).reshape(-1, w.shape[1])
    mask = np.zeros(rows.shape, dtype=bool)
    for r in range(rows.shape[0]):
        for g in range(0, rows.shape[1], 4):
            group = list(rows[r, g:g + 4])
            for i in sorted(range(len(group)), key=lambda i: (-group[i], i))[:2]:
                mask[r, g + i] = True
    if w.ndim == 2:
        return mask
    return mask.reshape(w.shape[2], w.shape[3], w.shape[0], w.shape[1]).transpose(2, 3, 0, 1)


def random_codes(rng, rows, k, density, width=WIDTH):
    hi = 2 ** (width - 1)
    w = rng.integers(-hi + 1, hi, size=(rows, k))
    w[rng.random((rows, k)) >= density] = 0
    return w


# --- formats -------------------------------------------------------------------------------

@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 1.0])
@pytest.mark.parametrize("lanes", [4, 16])
def test_unstructured_round_trip_and_beats(density, lanes):
    rng = np.random.default_rng(int(density * 100) + lanes)
    w = random_codes(rng, 9, 1000, density)
    cw = compress(w, lanes)
    np.testing.assert_array_equal(cw.decode(), w)
    assert cw.nnz == np.count_nonzero(w)
    # Slots >= non-zeros (padding slots bridge long zero runs and stand for empty rows); rows
    # share beats, every beat full but the last.
    slots = int(cw.count.sum())
    assert slots >= max(cw.nnz, 9)
    assert cw.beats == -(-slots // lanes) and (cw.count[:-1] == lanes).all()
    live = np.arange(lanes) < cw.count[:, None]
    assert cw.end[live].sum() == 9 and cw.end[live][-1] and not cw.end[~live].any()
    if density == 0.0:
        assert slots == 9 and not cw.value.any()


def test_nm_mask_matches_asp_definition():
    rng = np.random.default_rng(4)
    w = rng.integers(-3, 4, size=(7, 64)).astype(np.float64)   # many ties
    np.testing.assert_array_equal(nm_mask(w, 2, 4), asp_m4n2_1d(w))
    conv = rng.integers(-2, 3, size=(5, 8, 3, 3)).astype(np.float64)
    np.testing.assert_array_equal(nm_mask(conv, 2, 4), asp_m4n2_1d(conv))
    # 3 input channels: one padded group per kernel position keeps 2 of its 3 real weights.
    rgb = nm_mask(rng.standard_normal((4, 3, 3, 3)), 2, 4)
    assert (rgb.sum(axis=1) == 2).all()


def test_conv_reduction_order_matches_unfold_after_reordering():
    rng = np.random.default_rng(9)
    w = rng.integers(-5, 6, size=(4, 3, 2, 2))
    x = torch.as_tensor(rng.integers(-5, 6, size=(1, 3, 4, 4)), dtype=torch.float64)
    cols = torch.nn.functional.unfold(x, 2).transpose(1, 2).reshape(-1, 12).numpy()
    for m in (0, 4):
        got = reduction_vectors(cols, 3, m) @ reduction_matrix(w, m).T
        want = torch.nn.functional.conv2d(x, torch.as_tensor(w, dtype=torch.float64))
        np.testing.assert_array_equal(got.T.reshape(1, 4, 3, 3), want.numpy())


def test_nm_format_round_trip_and_rejects_dense():
    rng = np.random.default_rng(5)
    w = random_codes(rng, 6, 27, 1.0)                 # 27: a padded last group
    sparse = w * nm_mask(w, 2, 4)
    cw = compress(sparse, LANES, "2:4")
    np.testing.assert_array_equal(cw.decode()[:, :27], sparse)
    assert cw.beats == -(-6 * 7 // 8) and cw.padded_k == 28   # 42 groups, 8 per 16-lane beat
    assert set(np.unique(cw.index[:, :14])) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match=r"^weights are not 2:4 sparse: row 0, inputs 0\.\.3"):
        compress_nm(np.ones((2, 8), dtype=np.int64), 2, 4, LANES)


@pytest.mark.parametrize("fmt", ["2:3", "4:4", "0:4", "2-4", "dense", None])
def test_bad_format_strings(fmt):
    with pytest.raises(ValueError, match=r"^format must be 'unstructured' or 'N:M' with M in "
                                         r"\(4, 8\) and 1 <= N < M \(e\.g\. '2:4'\), not "):
        parse_format(fmt)


# --- backends, bit for bit -----------------------------------------------------------------

def _jobs(rng):
    jobs = []
    for fmt, density, rows, k in [("unstructured", 0.1, 40, 700), ("unstructured", 1.0, 5, 33),
                                  ("unstructured", 0.5, 17, 100), ("2:4", 1.0, 12, 90),
                                  ("1:8", 1.0, 3, 64)]:
        w = random_codes(rng, rows, k, density)
        w[0] = 0                                   # a row without any non-zero
        if fmt != "unstructured":
            n, m = map(int, fmt.split(":"))
            w = w * nm_mask(w, n, m)
        x = rng.integers(-128, 128, size=(3, k))
        jobs.append((w, x, make_job(compress(w, LANES, fmt), x)))
    return jobs


def test_golden_and_verilator_bit_identical_with_and_without_stalls():
    rng = np.random.default_rng(6)
    jobs = _jobs(rng)
    golden = get_backend("golden", lanes=LANES, width=WIDTH).run("sparse_mac", [j for *_, j in jobs])
    plain = get_backend("verilator", lanes=LANES, width=WIDTH).run(
        "sparse_mac", [j for *_, j in jobs])
    stalled = get_backend("verilator", lanes=LANES, width=WIDTH, in_stall=0.3, out_stall=0.3,
                          stall_seed=9).run("sparse_mac", [j for *_, j in jobs])
    tensor = get_backend("torch", lanes=LANES, width=WIDTH).run("sparse_mac", [j for *_, j in jobs])
    for (w, x, job), g, p, s, t in zip(jobs, golden, plain, stalled, tensor):
        np.testing.assert_array_equal(g.out, x @ w.T)     # the layer's integer product
        np.testing.assert_array_equal(p.out, g.out)
        np.testing.assert_array_equal(s.out, g.out)
        assert p.cycles == g.cycles                        # the golden timing model is exact
        assert s.cycles > p.cycles
        np.testing.assert_array_equal(t.out, p.out)       # the torch backend as well
        assert t.cycles == p.cycles


def test_cocotb_backend_whole_model_bit_identical():
    """A small model on the cocotb backend (one simulator run per layer), both formats."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3)).eval()
    hwprune.prune(model, amount=0.6, backend="golden", layers=["0.weight"])
    linear = model[3]
    torch.nn.utils.prune.custom_from_mask(
        linear, "weight", torch.as_tensor(nm_mask(linear.weight.detach().numpy(), 2, 4)))
    x = _input((1, 2, 4, 4), seed=6)
    # 8 lanes: the cocotb test's build (a 16-lane unit takes ~220 s to compile)
    report = hwprune.run(model, x, backend="cocotb", lanes=8)
    assert torch.equal(report.output, reference(model, x))
    assert [layer.fmt for layer in report.layers] == ["unstructured", "2:4"]
    golden = hwprune.run(model, x, backend="golden", lanes=8)
    assert [layer.cycles for layer in report.layers] == [layer.cycles for layer in golden.layers]


def test_dense_cycle_model_matches_the_rtl():
    """The report's dense figure: the same unit streaming a matrix with no zero at all."""
    rng = np.random.default_rng(8)
    w = random_codes(rng, 10, 100, 1.0)
    w[w == 0] = 1
    cw = compress(w, LANES)
    assert cw.beats == cw.dense_beats
    got = get_backend("verilator", lanes=LANES, width=WIDTH).run(
        "sparse_mac", [make_job(cw, rng.integers(-128, 128, size=(4, 100)))])[0]
    assert got.cycles == stall_free_cycles(cw.dense_beats, cw.act_beats, 4)


# --- whole models --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pruned_cnn():
    model = build_model("cnn", seed=1).eval()
    hwprune.prune(model, amount=0.75, backend="golden")
    return model


def _input(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_run_cnn_on_verilator_equals_fake_quantized_model(pruned_cnn):
    x = _input((2, 3, 32, 32))
    report = hwprune.run(pruned_cnn, x, backend="verilator", clock_mhz=50.0)
    assert torch.equal(report.output, reference(pruned_cnn, x))
    # And close to the plain float model (quantization error only).
    with torch.no_grad():
        plain = pruned_cnn(x)
    assert report.output.argmax(1).tolist() == plain.argmax(1).tolist() or \
        torch.allclose(report.output, plain, atol=0.05 * plain.abs().max().item())
    assert [layer.name for layer in report.layers] == ["features.0", "features.3",
                                                       "classifier.1", "classifier.3"]
    for layer in report.layers:
        assert layer.on_unit and layer.fmt == "unstructured"
        assert layer.vectors * layer.nnz / LANES <= layer.cycles < layer.dense_cycles
        assert 0 < layer.utilisation <= 1
        assert abs(layer.density - 0.25) < 0.02
    assert report.to_dict()["layers"][0]["latency_us"] == report.layers[0].cycles / 50.0
    assert "features.3" in report.table()


def test_run_matches_golden_backend_and_float_fake_quant(pruned_cnn):
    x = _input((1, 3, 32, 32), seed=3)
    golden = hwprune.run(pruned_cnn, x, backend="golden")
    verilator = hwprune.run(pruned_cnn, x, backend="verilator")
    assert torch.equal(golden.output, verilator.output)
    assert [g.cycles for g in golden.layers] == [v.cycles for v in verilator.layers]
    # The fake-quantized float model: the same codes, rescaled before the sums instead of after.
    torch.testing.assert_close(golden.output, _float_fake_quant(pruned_cnn, x), rtol=1e-5,
                               atol=1e-5)


def _float_fake_quant(model, x, width=WIDTH):
    qmax = 2 ** (width - 1) - 1

    def fq(t):
        s = t.abs().max() / qmax
        return torch.clamp(torch.round(t / s), -qmax, qmax) * s

    feats, cls = model.features, model.classifier
    h = x.double()
    for mod in feats:
        if isinstance(mod, nn.Conv2d):
            h = nn.functional.conv2d(fq(h), fq(mod.weight.double()), mod.bias.double(),
                                     padding=mod.padding)
        else:
            h = mod(h)
    for mod in cls:
        h = nn.functional.linear(fq(h), fq(mod.weight.double()), mod.bias.double()) \
            if isinstance(mod, nn.Linear) else mod(h)
    return h.float()


def test_run_2_4_pruned_model_uses_the_nm_format():
    model = build_model("cnn", seed=2).eval()
    hwprune.prune(model, pattern="2:4", backend="golden")     # the N:M selector's masks
    groups = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = mod.weight.detach().numpy()
            assert ((w != 0) <= nm_mask(w, 2, 4)).all()       # the same grouping as the format
            groups[name] = -(-w.shape[1] // 4) * int(np.prod(w.shape[2:]))
    x = _input((1, 3, 32, 32), seed=4)
    report = hwprune.run(model, x, backend="verilator", fmt="2:4")
    assert torch.equal(report.output, reference(model, x))
    # "auto" packs unstructured rows into fewer beats than N:M's whole groups per row takes.
    auto = hwprune.run(model, x, backend="golden")
    assert torch.equal(auto.output, report.output)
    assert all(a.beats <= r.beats for a, r in zip(auto.layers, report.layers))
    for layer in report.layers:
        assert layer.fmt == "2:4"
        # N/M of the work: LANES // 2 groups of 4 inputs per beat, padded groups included.
        assert layer.beats == -(-layer.rows * groups[layer.name] // (LANES // 2))
        assert layer.cycles < layer.dense_cycles


class _Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.conv1d = nn.Conv1d(8, 4, 1)
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x):
        h = torch.relu(self.grouped(torch.relu(self.conv(x))))
        h = self.conv1d(h.flatten(2))
        return self.fc(h.flatten(1))


def test_unsupported_layers_run_in_torch_and_are_reported():
    torch.manual_seed(0)
    model = _Mixed().eval()
    x = _input((2, 3, 8, 8), seed=5)
    report = hwprune.run(model, x, backend="golden")
    assert torch.equal(report.output, reference(model, x))
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["conv"].on_unit and by_name["fc"].on_unit
    assert not by_name["grouped"].on_unit and "grouped convolution" in by_name["grouped"].reason
    assert not by_name["conv1d"].on_unit and "Conv1d" in by_name["conv1d"].reason
    assert "torch: grouped convolution (groups=2)" in report.table()


def test_formats_and_granularity_options():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4, 3)).eval()
    hwprune.prune(model, amount=0.5, backend="golden")
    x = _input((2, 4, 4, 4), seed=8)
    for kwargs in ({"granularity": "channel"}, {"fmt": "unstructured"}):
        report = hwprune.run(model, x, backend="golden", **kwargs)
        assert torch.equal(report.output, reference(model, x, **kwargs))
        assert {layer.fmt for layer in report.layers} == {"unstructured"}
    with pytest.raises(ValueError, match=r"^layer '0' \(Conv2d\): weights are not 2:4 sparse: "):
        hwprune.run(model, x, backend="golden", fmt="2:4")
    with pytest.raises(ValueError, match=r"^fmt must be 'auto', 'unstructured' or 'N:M' "
                                         r"\(e\.g\. '2:4'\), not '2:5'$"):
        hwprune.run(model, x, backend="golden", fmt="2:5")


def test_bad_activations_name_the_layer():
    model = build_model("cnn").eval()
    with pytest.raises(ValueError, match=r"^layer 'features\.0' \(Conv2d\) expects activations of "
                                         r"shape \(N, 3, H, W\), not \(2, 4, 32, 32\)$"):
        hwprune.run(model, torch.zeros(2, 4, 32, 32), backend="golden")
    with pytest.raises(TypeError, match=r"^layer 'features\.0' \(Conv2d\) needs floating-point "
                                        r"activations, not torch\.int64$"):
        hwprune.run(model, torch.zeros(1, 3, 32, 32, dtype=torch.int64), backend="golden")
    linear = nn.Sequential(nn.Linear(10, 3))
    with pytest.raises(ValueError, match=r"^layer '0' \(Linear\) expects activations of shape "
                                         r"\(\.\.\., 10\), not \(4, 9\)$"):
        hwprune.run(linear, torch.zeros(4, 9), backend="golden")
    with pytest.raises(ValueError, match=r"^layer '0' \(Linear\) got NaN or Inf activations$"):
        hwprune.run(linear, torch.full((1, 10), float("nan")), backend="golden")
    # NaN / Inf weights: a Linear (compiled in C++) and a Conv2d (numpy), the model untouched
    conv = nn.Sequential(nn.Conv2d(2, 3, 3))
    for bad, x in ((linear, torch.zeros(1, 10)), (conv, torch.zeros(1, 2, 5, 5))):
        with torch.no_grad():
            bad[0].weight[1, 0] = float("inf") if bad is linear else float("nan")
        before = bad[0].weight.clone()
        with pytest.raises(ValueError, match=r"^layer '0' has NaN or Inf weights$"):
            hwprune.run(bad, x, backend="golden")
        assert torch.equal(bad[0].weight.isnan(), before.isnan())
        assert torch.equal(bad[0].weight.nan_to_num(), before.nan_to_num())


def test_clock_from_the_synthesis_report_of_a_design_with_the_mac(tmp_path):
    none = (DEFAULT_CLOCK_MHZ, "default clock: no synthesis report of a design containing the "
                               f"sparse MAC under {tmp_path}/")
    assert synthesis_clock(tmp_path) == none
    # A newer report of a design without the MAC (a board top today) is not the MAC's clock.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(
        {"blocks": ["sparse_mac", "threshold_engine"], "fmax_mhz": {"sync": 87.5}}))
    (tmp_path / "b" / "report.json").write_text(json.dumps(
        {"blocks": ["threshold_engine"], "fmax_mhz": {"sync": 40.0}}))
    (tmp_path / "b" / "top_report.json").write_text(
        json.dumps({"fmax": {"clk": {"achieved": 33.0, "constraint": 12.0}}}))
    mhz, source = synthesis_clock(tmp_path)
    assert mhz == 87.5 and str(tmp_path / "a" / "report.json") in source
    model = nn.Sequential(nn.Linear(8, 2))
    report = hwprune.run(model, torch.ones(1, 8), backend="golden", build_dir=tmp_path)
    assert report.clock_mhz == 87.5
    with pytest.raises(ValueError, match=r"^clock_mhz must be a positive number, not 0$"):
        hwprune.run(model, torch.ones(1, 8), backend="golden", clock_mhz=0)


def test_cli_mac_writes_table_and_chart(tmp_path, capsys):
    from hwprune.cli import main
    png = tmp_path / "cycles.png"
    assert main(["mac", "--backend", "golden", "--amount", "0.9", "--chart", str(png),
                 "--json", str(tmp_path / "mac.json")]) == 0
    out = capsys.readouterr().out
    assert "features.3" in out and "speedup" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "mac.json").read_text())
    assert len(data["layers"]) == 4
    assert all(layer["cycles"] < layer["dense_cycles"] for layer in data["layers"])


@pytest.mark.parametrize("shape,n,m", [((6, 3, 3, 3), 2, 4), ((5, 40), 2, 4), ((4, 16, 1, 1), 3, 8)])
def test_nm_selector_output_is_the_mac_nm_format(shape, n, m):
    """The N:M selector's kept values and indices (issue 3) are the unit's N:M stream, slot for
    slot, in the same reduction order; and its mask is :func:`nm_mask`'s."""
    from hwprune.contract.nm_selector import nm_select
    rng = np.random.default_rng(len(shape) * 10 + n)
    w = rng.integers(1, 128, size=shape) * rng.choice([-1, 1], size=shape)   # no zeros
    mat = reduction_matrix(w, m)
    valid = reduction_matrix(np.ones(shape, dtype=bool), m)
    rows, k = mat.shape
    kp = -(-k // m) * m
    tiles = np.zeros((rows, kp), dtype=np.int16)
    tiles[:, :k] = mat
    lane_valid = np.zeros((rows, kp), dtype=bool)
    lane_valid[:, :k] = valid
    sel = nm_select(tiles.reshape(-1, m), lane_valid.reshape(-1, m), m, n)
    kept = sel.data.reshape(rows, kp)[:, :k]
    np.testing.assert_array_equal(kept != 0, reduction_matrix(nm_mask(w, n, m), m))
    cw = compress_nm(kept, n, m, LANES)
    groups = kp // m
    live = np.arange(LANES) < cw.count[:, None]
    slots = lambda a: a[live].reshape(rows, groups, n)   # noqa: E731  (live slots, in order)
    np.testing.assert_array_equal(slots(cw.value), sel.values.reshape(rows, groups, m)[..., :n])
    np.testing.assert_array_equal(slots(cw.index), sel.index.reshape(rows, groups, m)[..., :n])
