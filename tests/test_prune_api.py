"""hwprune.prune / hwprune.remove on real PyTorch models."""

import copy
import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import hwprune
from hwprune.models import ReferenceCNN


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, equal_nan=True)
    assert not any(torch_prune.is_pruned(m) for m in [model])


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return ReferenceCNN()


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_exact_keep_count_and_torch_convention(cnn, amount):
    model = copy.deepcopy(cnn)
    report = hwprune.prune(model, amount, backend="verilator")
    assert [layer.name for layer in report.layers] == [
        "features.0.weight", "features.3.weight", "classifier.1.weight", "classifier.3.weight"]
    for name, module in [("features.0", model.features[0]), ("classifier.1", model.classifier[1])]:
        layer = report[name + ".weight"]
        keep = layer.numel - round(amount * layer.numel)
        assert layer.kept == keep
        assert int(module.weight_mask.sum()) == keep
        assert hasattr(module, "weight_orig") and torch_prune.is_pruned(model)
        # The forward pre-hook applies the mask.
        assert torch.equal(module.weight, module.weight_orig * module.weight_mask)
        assert layer.cycles >= layer.beats
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_mask_keeps_the_largest_magnitudes(cnn):
    model = copy.deepcopy(cnn)
    w = model.classifier[3].weight.detach().clone()
    hwprune.prune(model, 0.75, backend="golden")
    mask = model.classifier[3].weight_mask.bool()
    # Everything kept is at least as large as everything pruned, up to one quantization step.
    step = w.abs().max() / 127
    assert w[mask].abs().min() >= w[~mask].abs().max() - step


def test_remove_makes_it_permanent(cnn):
    model = copy.deepcopy(cnn)
    hwprune.prune(model, 0.5, backend="golden")
    kept = int(model.features[3].weight_mask.sum())
    assert hwprune.remove(model) == 4
    assert not torch_prune.is_pruned(model)
    assert isinstance(model.features[3].weight, nn.Parameter)
    assert int((model.features[3].weight != 0).sum()) == kept


def test_quantized_write_back(cnn):
    model = copy.deepcopy(cnn)
    w = model.classifier[3].weight.detach().clone()
    report = hwprune.prune(model, 0.5, backend="verilator", width=4, write_back="quantized")
    scale = report["classifier.3.weight"].scale
    orig = model.classifier[3].weight_orig.detach()
    codes = orig / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4)       # values on the fixed-point grid
    assert codes.abs().max() <= 7
    assert torch.all(orig[model.classifier[3].weight_mask == 0] == 0)
    kept = model.classifier[3].weight_mask.bool()
    assert torch.all((orig[kept] - w[kept]).abs() <= scale / 2 + 1e-6)


def test_repeated_pruning_updates_the_one_mask(cnn):
    model = copy.deepcopy(cnn)
    hwprune.prune(model, 0.5, backend="golden")
    report = hwprune.prune(model, 0.8, backend="golden")
    lin = model.classifier[1]
    assert int(lin.weight_mask.sum()) == lin.weight.numel() - round(0.8 * lin.weight.numel())
    assert report["classifier.1.weight"].kept == int(lin.weight_mask.sum())
    hooks = [h for h in lin._forward_pre_hooks.values()
             if isinstance(h, torch_prune.BasePruningMethod)]
    assert len(hooks) == 1


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_recurrent_layers(cls):
    torch.manual_seed(1)
    model = nn.Sequential()
    model.rnn = cls(12, 20, num_layers=2, batch_first=True)
    report = hwprune.prune(model, 0.6, backend="verilator", lanes=8)
    names = [layer.name for layer in report.layers]
    assert names == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"]
    for layer in report.layers:
        mask = getattr(model.rnn, layer.name.split(".", 1)[1] + "_mask")
        assert int(mask.sum()) == layer.kept == layer.numel - round(0.6 * layer.numel)
    out, _ = model.rnn(torch.randn(3, 5, 12))
    assert out.shape == (3, 5, 20) and torch.isfinite(out).all()
    # The forward pass really uses the masked weights.
    assert int((model.rnn.weight_hh_l0 == 0).sum()) >= round(0.6 * model.rnn.weight_hh_l0.numel())


def test_transformer_block():
    torch.manual_seed(2)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2,
                                  enable_nested_tensor=False)
    report = hwprune.prune(model, 0.5, backend="golden")
    names = {layer.name for layer in report.layers}
    assert {"layers.0.self_attn.in_proj_weight", "layers.0.self_attn.out_proj.weight",
            "layers.0.linear1.weight", "layers.1.linear2.weight"} <= names
    model.eval()
    out = model(torch.randn(2, 6, 32))
    assert out.shape == (2, 6, 32) and torch.isfinite(out).all()


def test_layers_argument_prunes_only_those(cnn):
    model = copy.deepcopy(cnn)
    report = hwprune.prune(model, 0.5, backend="golden", layers=["features.3.weight"])
    assert [layer.name for layer in report.layers] == ["features.3.weight"]
    assert not hasattr(model.features[0], "weight_mask")
    with pytest.raises(ValueError, match="^no prunable weight named 'nope'"):
        hwprune.prune(model, 0.5, backend="golden", layers=["nope"])


def test_report_table_and_json(cnn):
    model = copy.deepcopy(cnn)
    report = hwprune.prune(model, 0.5, backend="golden")
    text = report.table()
    assert "classifier.1.weight" in text and "total" in text
    data = json.loads(report.to_json())
    assert data["total"]["numel"] == sum(layer["numel"] for layer in data["layers"])
    assert data["total"]["kept"] == sum(layer["kept"] for layer in data["layers"])
    assert abs(data["layers"][2]["sparsity"] - 0.5) < 1e-9


# --- bad input: a clear error, and the model is left exactly as it was ---

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_names_the_layer_and_changes_nothing(cnn, bad):
    model = copy.deepcopy(cnn)
    with torch.no_grad():
        model.classifier[3].weight[3, 7] = bad
    before = state(model)
    with pytest.raises(ValueError, match=r"^layer 'classifier.3.weight' has 1 NaN or Inf"):
        hwprune.prune(model, 0.5, backend="golden")
    assert_unchanged(model, before)


@pytest.mark.parametrize("amount", [-0.1, 1.5, float("nan"), "half", True])
def test_amount_out_of_range(cnn, amount):
    model = copy.deepcopy(cnn)
    before = state(model)
    with pytest.raises(ValueError, match=r"^amount must be a number from 0 to 1"):
        hwprune.prune(model, amount, backend="golden")
    assert_unchanged(model, before)


def test_no_prunable_layer():
    with pytest.raises(ValueError, match=r"^model has no prunable layer \(Conv1d/Conv2d"):
        hwprune.prune(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.5, backend="golden")


@pytest.mark.parametrize("lanes,width,message", [
    (2, 8, "lanes must be an integer from 4 to 64 for threshold_engine, not 2$"),
    (16, 12, r"width must be one of \(4, 8, 16\) for threshold_engine, not 12$")])
def test_unsupported_engine_parameters(cnn, lanes, width, message):
    model = copy.deepcopy(cnn)
    before = state(model)
    with pytest.raises(ValueError, match="^" + message):
        hwprune.prune(model, 0.5, backend="golden", lanes=lanes, width=width)
    assert_unchanged(model, before)


def test_missing_compiler(cnn, tmp_path, monkeypatch):
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    model = copy.deepcopy(cnn)
    before = state(model)
    with pytest.raises(hwprune.BuildError, match="no C\\+\\+ compiler found: 'no-such-c\\+\\+"):
        hwprune.prune(model, 0.5, backend="verilator", lanes=4, width=4)
    assert_unchanged(model, before)


def test_failing_build_shows_the_compiler_message(cnn, tmp_path, monkeypatch):
    fake = tmp_path / "broken-cxx"
    fake.write_text("#!/bin/sh\necho 'broken-cxx: fatal error: out of cheese' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(fake))
    model = copy.deepcopy(cnn)
    before = state(model)
    with pytest.raises(hwprune.BuildError, match="(?s)Verilator build of threshold_engine.*"
                                                 "out of cheese"):
        hwprune.prune(model, 0.5, backend="verilator", lanes=4, width=4)
    assert_unchanged(model, before)
