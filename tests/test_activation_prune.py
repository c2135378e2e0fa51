"""Activation-aware (Wanda) and per-row pruning through the engines: hwprune's masks against the
plain-torch reference of Wanda's definition (tests/wanda_reference.py), exact kept counts in
every group, every backend bit-identical, calibration reused, bad input changes nothing."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import hwprune
from wanda_reference import input_norms, wanda_masks

WIDTH = 16


def model_and_inputs():
    """Two Linears whose inputs have very different feature scales (as a transformer's do),
    so that activation-aware and magnitude masks differ."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 10))
    g = torch.Generator().manual_seed(12)
    spread = torch.logspace(-1, 1, 40)[torch.randperm(40, generator=g)]
    xs = [torch.randn(30, 40, generator=g) * spread for _ in range(3)]
    return model, xs


def linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def masks(model):
    return {f"{n}.weight": m.weight_mask.bool().clone() for n, m in linears(model).items()}


def run_all(xs):
    def run(model):
        for x in xs:
            model(x)
    return run


def check_wanda_parity(model, pruned_masks, norms, amount):
    """Exactly the reference's kept count per row; every mask bit that differs belongs to a
    weight whose score is within one quantization step of its row's threshold."""
    differ = total = 0
    for name, module in linears(model).items():
        w = module.weight.detach().double()
        s = norms[name].double()
        want = wanda_masks(w, s, amount)
        got = pruned_masks[f"{name}.weight"]
        assert torch.equal(got.sum(1), want.sum(1)), name
        score = w.abs() * s[None, :]
        boundary = torch.where(want, score, torch.inf).amin(1, keepdim=True)
        # One step of the engine's score, in real units: a weight code step of the row times
        # the largest norm (the scale codes' top), plus the codes' roundings (two steps in all).
        step = 2 * w.abs().amax(1, keepdim=True) / (2 ** (WIDTH - 1) - 1) * s.max()
        off = got != want
        assert bool(((score - boundary).abs() <= step)[off].all()), name
        differ += int(off.sum())
        total += off.numel()
    return differ / total


@pytest.mark.parametrize("backend", ["golden", "verilator", "torch"])
def test_row_groups_match_wanda(backend):
    model, xs = model_and_inputs()
    reference = copy.deepcopy(model)
    cal = hwprune.calibrate(model, xs, backend=backend, lanes=8, width=WIDTH)
    report = hwprune.prune(model, 0.5, criterion="activation", calibration=cal, group="row",
                           backend=backend, lanes=8, width=WIDTH)
    got = masks(model)
    for name, mask in got.items():
        cols = mask.shape[1]
        assert (mask.sum(1) == cols - round(0.5 * cols)).all()
    norms = input_norms(reference, linears(reference), run_all(xs))
    diff = check_wanda_parity(reference, got, norms, 0.5)
    assert diff <= 0.01
    assert report.scope == "row" and report.sparsity == pytest.approx(0.5, abs=0.01)
    assert all(layer.cycles > 0 for layer in report.layers)


def test_activation_differs_from_magnitude_where_features_differ():
    model, xs = model_and_inputs()
    cal = hwprune.calibrate(model, xs, backend="golden", lanes=8, width=WIDTH)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    hwprune.prune(a, 0.5, criterion="activation", calibration=cal, group="row",
                  backend="golden", lanes=8, width=WIDTH)
    hwprune.prune(b, 0.5, group="row", backend="golden", lanes=8, width=WIDTH)
    differ = (a[0].weight_mask != b[0].weight_mask).float().mean()
    assert differ > 0.1
    # The activation-aware masks keep the features that carry the signal: the first layer's
    # output error on the calibration inputs is smaller.
    x = torch.cat(xs)
    dense = model[0](x).detach()
    err = lambda m: float((m[0](x).detach() - dense).pow(2).mean())  # noqa: E731
    assert err(a) < err(b)


@pytest.mark.parametrize("group", ["row", "layer", "global"])
def test_every_backend_bit_identical(group):
    model, xs = model_and_inputs()
    cal = hwprune.calibrate(model, xs, backend="golden", lanes=8, width=8)
    results = {}
    for backend in ("golden", "verilator", "torch"):
        m = copy.deepcopy(model)
        report = hwprune.prune(m, 0.6, criterion="activation", calibration=cal, group=group,
                               backend=backend, lanes=8, width=8, write_back="quantized")
        results[backend] = (masks(m), {n: p.detach().clone() for n, p in m.named_parameters()},
                            [(layer.kept, layer.threshold, layer.cycles) for layer in report.layers])
    want = results["golden"]
    for backend, got in results.items():
        for name in want[0]:
            assert torch.equal(want[0][name], got[0][name]), (backend, name)
        for name in want[1]:
            assert torch.equal(want[1][name], got[1][name]), (backend, name)
        assert [k for k, _, _ in want[2]] == [k for k, _, _ in got[2]], backend
    total = sum(m.numel() for m in want[0].values())
    kept = sum(int(m.sum()) for m in want[0].values())
    if group == "global":
        assert kept == total - round(0.6 * total)
    else:
        for name, m in want[0].items():
            cols = m.shape[1]
            n = m.numel() if group == "layer" else cols
            assert (m.sum() if group == "layer" else m.sum(1)).eq(n - round(0.6 * n)).all()


def test_cocotb_agrees_on_a_row_prune():
    torch.manual_seed(5)
    model = nn.Linear(20, 6)
    xs = [torch.randn(9, 20)]
    cal = hwprune.calibrate(model, xs, backend="golden", lanes=4, width=8)
    out = {}
    for backend in ("golden", "cocotb"):
        m = copy.deepcopy(model)
        hwprune.prune(m, 0.5, criterion="activation", calibration=cal, group="row",
                      backend=backend, lanes=4, width=8)
        out[backend] = m.weight_mask.clone()
    assert torch.equal(out["golden"], out["cocotb"])


def test_nm_on_scores_keeps_n_per_group_as_wanda():
    model, xs = model_and_inputs()
    reference = copy.deepcopy(model)
    cal = hwprune.calibrate(model, xs, backend="verilator", lanes=8, width=WIDTH)
    hwprune.prune(model, pattern="2:4", criterion="activation", calibration=cal,
                  backend="verilator", lanes=8, width=WIDTH)
    norms = input_norms(reference, linears(reference), run_all(xs))
    for name, module in linears(reference).items():
        got = linears(model)[name].weight_mask.bool()
        assert (got.reshape(got.shape[0], -1, 4).sum(-1) == 2).all()
        want = wanda_masks(module.weight, norms[name], nm=(2, 4))
        assert (got != want).float().mean() <= 0.02, name


def test_calibration_inputs_can_be_given_to_prune():
    model, xs = model_and_inputs()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    cal = hwprune.calibrate(a, xs, backend="golden", lanes=8, width=8)
    hwprune.prune(a, 0.5, criterion="activation", calibration=cal, backend="golden", lanes=8,
                  width=8, group="row")
    hwprune.prune(b, 0.5, criterion="activation", calibration=xs, backend="golden", lanes=8,
                  width=8, group="row")
    assert torch.equal(a[0].weight_mask, b[0].weight_mask)
    assert torch.equal(a[2].weight_mask, b[2].weight_mask)


def test_magnitude_rows_keep_each_rows_largest():
    torch.manual_seed(2)
    model = nn.Linear(33, 7)          # 33 columns: a row's last beat is padded
    hwprune.prune(model, 0.7, group="row", backend="verilator", lanes=8, width=16)
    w = model.weight_orig.detach().abs()
    mask = model.weight_mask.bool()
    assert (mask.sum(1) == 33 - round(0.7 * 33)).all()
    for row in range(7):
        assert w[row][mask[row]].min() >= w[row][~mask[row]].max()


@pytest.mark.parametrize("kwargs,message", [
    (dict(criterion="wanda"), "criterion must be one of"),
    (dict(criterion="activation"), "needs calibration="),
    (dict(group="column"), "group must be one of"),
    (dict(scope="global", group="row"), "disagree"),
    (dict(group="row", pattern="channel"), "group='row' applies to unstructured"),
    (dict(calibration=[torch.randn(2, 40)]), "used by criterion='activation' only"),
    (dict(criterion="activation", calibration=[], cluster="ray"), "run on this machine"),
    (dict(group="row", pattern="2:4"), "does not apply"),
])
def test_bad_options_are_refused_before_anything_runs(kwargs, message):
    model, _ = model_and_inputs()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=message):
        hwprune.prune(model, 0.5, backend="golden", lanes=8, width=8, **kwargs)
    assert not hasattr(model[0], "weight_mask")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_calibration_changes_nothing():
    model, xs = model_and_inputs()
    cal = hwprune.calibrate(model, xs, backend="golden", lanes=8, width=8)
    before = copy.deepcopy(model.state_dict())
    wrong = copy.deepcopy(cal)
    wrong.norms["2.weight"] = wrong.norms["2.weight"][:-1]
    missing = copy.deepcopy(cal)
    del missing.norms["0.weight"]
    nan = copy.deepcopy(cal)
    nan.norms["0.weight"] = nan.norms["0.weight"].copy()
    nan.norms["0.weight"][0] = np.nan
    for bad, message in ((wrong, "has 23 input features, its weight has 24 columns"),
                         (missing, "no statistics for layer '0.weight'"),
                         (nan, "NaN, Inf or negative"),
                         ([torch.randn(4, 39)], "could not run on the calibration inputs")):
        with pytest.raises(ValueError, match=message):
            hwprune.prune(model, 0.5, criterion="activation", calibration=bad, backend="golden",
                          lanes=8, width=8, group="row")
        assert not hasattr(model[0], "weight_mask")
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_shared_inputs_are_measured_once_and_counted_for_each():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            return self.q(x) + self.k(x) * self.v(x)
    torch.manual_seed(4)
    model = Attention()
    xs = [torch.randn(5, 16) * torch.linspace(0.1, 4, 16) for _ in range(2)]
    cal = hwprune.calibrate(model, xs, backend="verilator", lanes=8, width=16)
    for name in ("k.weight", "v.weight"):
        np.testing.assert_array_equal(cal[name], cal["q.weight"])
        assert cal.positions[name] == 10 and cal.cycles[name] == cal.cycles["q.weight"] > 0
    ref = torch.cat(xs).double().pow(2).sum(0).sqrt().numpy()
    np.testing.assert_allclose(cal["q.weight"], ref, rtol=1e-3)


@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_channel_importance_can_be_activation_aware(backend):
    """pattern='channel' with criterion='activation': the engine scores every weight and sums
    each output channel's scores; the channels removed are those of least sum_j |W_ij| s_j."""
    model, xs = model_and_inputs()
    reference = copy.deepcopy(model)
    cal = hwprune.calibrate(model, xs, backend=backend, lanes=8, width=16)
    report = hwprune.prune(model, 0.25, pattern="channel", criterion="activation",
                           calibration=cal, example_inputs=xs[0], backend=backend, lanes=8,
                           width=16)
    norms = input_norms(reference, linears(reference), run_all(xs))
    importance = (reference[0].weight.detach().double().abs() * norms["0"].double()).sum(1)
    keep = torch.sort(torch.argsort(importance, descending=True)[:18]).values
    assert model[0].weight.shape == (18, 40) and report["0.weight"].shape_after == (18, 40)
    torch.testing.assert_close(model[0].weight.detach(), reference[0].weight.detach()[keep])
    magnitude = copy.deepcopy(reference)
    hwprune.prune(magnitude, 0.25, pattern="channel", example_inputs=xs[0], backend=backend,
                  lanes=8, width=16)
    assert not torch.equal(magnitude[0].weight, model[0].weight)   # the criterion mattered
