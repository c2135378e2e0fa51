"""Exact sparsity found by the hardware, and parity with the pruning tools users know."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import hwprune
from hwprune.models import ReferenceCNN
from hwprune.quant import quantize


class SmallNet(nn.Module):
    """Differently scaled layers, a 3-channel first convolution, and a classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.fc1 = nn.Linear(24 * 4 * 4, 40)
        self.fc2 = nn.Linear(40, 10)
        with torch.no_grad():
            self.fc1.weight.mul_(5.0)          # a differently scaled tensor for global scope

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(3)
    return SmallNet()


def weights_of(model):
    return {name: m.weight.detach().clone() for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def assert_within_one_step(w, ours, theirs, threshold_real, step):
    """Masks agree except for weights within one quantization step of the threshold."""
    differ = ours != theirs
    assert torch.all((w[differ].abs() - threshold_real).abs() <= step + 1e-9)


@pytest.mark.parametrize("amount", [0.0, 0.37, 0.5, 0.9, 1.0])
def test_layerwise_parity_with_l1_unstructured(net, amount):
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    w = weights_of(net)
    report = hwprune.prune(ours, amount, backend="verilator", width=16)
    for name, module in theirs.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            torch_prune.l1_unstructured(module, "weight", amount=amount)
    for name, module in ours.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        mine = module.weight_mask.bool()
        ref = getattr(theirs, name).weight_mask.bool()
        assert int(mine.sum()) == int(ref.sum())            # exactly torch's kept count
        layer = report[name + ".weight"]
        assert_within_one_step(w[name], mine, ref, layer.threshold * layer.scale, layer.scale)


@pytest.mark.parametrize("amount", [0.2, 0.9])
def test_global_parity_with_global_unstructured(net, amount):
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    w = weights_of(net)
    report = hwprune.prune(ours, amount, scope="global", backend="verilator", width=16)
    params = [(m, "weight") for m in theirs.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                    amount=amount)
    total = sum(v.numel() for v in w.values())
    assert report.kept == total - round(amount * total)
    kept_ours = kept_theirs = 0
    for name, module in ours.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        mine, ref = module.weight_mask.bool(), getattr(theirs, name).weight_mask.bool()
        kept_ours, kept_theirs = kept_ours + int(mine.sum()), kept_theirs + int(ref.sum())
        layer = report[name + ".weight"]
        assert_within_one_step(w[name], mine, ref, layer.threshold * layer.scale, layer.scale)
    assert kept_ours == kept_theirs
    # One common scale: the 5x larger fc1 keeps a larger share than the layers around it.
    assert report["fc1.weight"].sparsity < report["conv2.weight"].sparsity


@pytest.mark.parametrize("width", [4, 8, 16])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_exact_kept_count_at_every_width(net, width, scope):
    for amount in (0.0, 0.25, 0.61, 1.0):
        model = copy.deepcopy(net)
        report = hwprune.prune(model, amount, scope=scope, backend="golden", width=width,
                               lanes=8)
        masks = [m.weight_mask for m in model.modules() if hasattr(m, "weight_mask")]
        if scope == "layer":
            for mask in masks:   # counted in the installed masks, not read from the report
                assert int(mask.sum()) == mask.numel() - round(amount * mask.numel())
        else:
            total = sum(mask.numel() for mask in masks)
            assert sum(int(mask.sum()) for mask in masks) == total - round(amount * total)
        assert report.kept == sum(int(mask.sum()) for mask in masks)


def test_keep_none_and_keep_all_are_defined(net):
    model = copy.deepcopy(net)
    hwprune.prune(model, 1.0, backend="verilator")
    assert all(int(m.weight_mask.sum()) == 0 for m in model.modules() if hasattr(m, "weight_mask"))
    assert torch.isfinite(model(torch.randn(1, 3, 8, 8))).all()
    model = copy.deepcopy(net)
    hwprune.prune(model, 0.0, backend="verilator")
    assert all(bool(m.weight_mask.all()) for m in model.modules() if hasattr(m, "weight_mask"))


def asp_m4n2_1d(weight):
    """NVIDIA ASP's m4n2_1d mask from its definition: in every group of 4 consecutive input
    weights (convolutions permuted to (out, kh, kw, in)), keep the 2 of largest magnitude; equal
    magnitudes go to the lower index."""
    w = weight.abs()
    if w.dim() == 4:
        w = w.permute(0, 2, 3, 1)
    rows = w.reshape(-1, w.shape[-1])
    assert rows.shape[1] % 4 == 0
    groups = rows.reshape(-1, 4)
    # Rank by (magnitude descending, index ascending): a stable sort on -magnitude.
    order = torch.sort(-groups, dim=1, stable=True).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, order[:, :2], True)
    mask = mask.reshape(w.shape)
    return mask.permute(0, 3, 1, 2) if weight.dim() == 4 else mask


@pytest.mark.parametrize("width", [8, 16])
def test_2_to_4_equals_asp_m4n2_1d(net, width):
    model = copy.deepcopy(net)
    w = weights_of(net)
    report = hwprune.prune(model, pattern="2:4", backend="verilator", width=width)
    for name in ("conv2", "fc1", "fc2"):
        q = torch.as_tensor(quantize(w[name].numpy(), width).codes.astype(np.float32))
        ref = asp_m4n2_1d(q)
        mine = getattr(model, name).weight_mask.bool()
        assert torch.equal(mine, ref), name
        assert report[name + ".weight"].kept == w[name].numel() // 2


def test_nm_padding_rule_for_three_input_channels(net):
    # conv1 has 3 input channels: one group of 3 real weights per kernel position keeps 2.
    model = copy.deepcopy(net)
    report = hwprune.prune(model, pattern="2:4", backend="golden")
    mask = model.conv1.weight_mask.permute(0, 2, 3, 1)           # (out, kh, kw, in=3)
    assert torch.all(mask.sum(dim=-1) == 2)
    assert report["conv1.weight"].kept == 16 * 3 * 3 * 2
    model = copy.deepcopy(net)
    hwprune.prune(model, pattern="1:8", backend="golden", layers=["fc1.weight"])
    assert torch.all(model.fc1.weight_mask.reshape(-1, 8).sum(dim=1) == 1)


def test_channel_ranking_equals_torch_pruning_magnitude_l1(net):
    import torch_pruning as tp
    from hwprune.channel import engine_channel_norms

    model = copy.deepcopy(net)
    width = 8
    quantized = {}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                q = quantize(m.weight.numpy().astype(np.float64), width)
                m.weight.copy_(torch.as_tensor(q.codes * q.scale, dtype=torch.float32))
                quantized[m] = m.weight.detach().numpy().astype(np.float64)
    engine = hwprune.get_backend("verilator", lanes=16, width=width)
    norms, _ = engine_channel_norms(engine, quantized, width)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 8, 8))
    importance = tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None)
    for layer in (model.conv1, model.conv2, model.fc1):
        fn = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else \
            tp.prune_linear_out_channels
        group = graph.get_pruning_group(layer, fn, idxs=list(range(layer.out_channels
                                                                   if hasattr(layer, "out_channels")
                                                                   else layer.out_features)))
        theirs = importance(group).numpy()
        np.testing.assert_allclose(norms[layer], theirs, rtol=1e-5)
        assert np.array_equal(np.argsort(norms[layer], kind="stable"),
                              np.argsort(theirs, kind="stable"))


def test_channel_pruning_shrinks_the_model_and_it_still_runs():
    torch.manual_seed(0)
    model = ReferenceCNN()
    x = torch.randn(2, 3, 32, 32)
    report = hwprune.prune(model, 0.5, pattern="channel", backend="verilator", example_inputs=x)
    assert model.features[0].out_channels == 16 and model.features[3].out_channels == 32
    assert model.classifier[1].out_features == 128
    assert model.classifier[3].out_features == 10                 # the output layer is kept
    assert model(x).shape == (2, 10)
    t = report.totals
    assert t["params_after"] == sum(p.numel() for p in model.parameters())
    assert t["params_after"] < t["params_before"] and t["macs_after"] < t["macs_before"]
    assert report["features.0.weight"].shape_after == (16, 3, 3, 3)


def test_channel_pruning_removes_the_weakest_channels():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        scale = torch.tensor([5.0, 0.1, 4.0, 0.2, 3.0, 0.3, 2.0, 0.4])[:, None]
        model[0].weight.mul_(scale / model[0].weight.abs().sum(dim=1, keepdim=True))
        strong = model[0].weight[[0, 2, 4, 6]].clone()
    hwprune.prune(model, 0.5, pattern="channel", backend="golden", example_inputs=torch.randn(1, 6))
    assert torch.equal(model[0].weight, strong)


def test_all_backends_agree_on_every_pattern():
    # A small model: the cocotb backend starts a simulator for every pass.
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    masks = {}
    for backend in ("golden", "verilator", "torch", "cocotb"):
        for kw in (dict(amount=0.6, scope="global"), dict(pattern="2:4"), dict(amount=0.3)):
            model = copy.deepcopy(net)
            report = hwprune.prune(model, backend=backend, lanes=8, width=8, **kw)
            key = str(sorted(kw.items()))
            got = ([m.weight_mask.clone() for m in model.modules() if hasattr(m, "weight_mask")],
                   [(layer.kept, layer.cycles) for layer in report.layers])
            masks.setdefault(key, {})[backend] = got
    for key, per_backend in masks.items():
        ref_masks, ref_layers = per_backend["golden"]
        for backend in ("verilator", "torch", "cocotb"):
            got_masks, got_layers = per_backend[backend]
            assert got_layers == ref_layers, (key, backend)
            assert all(torch.equal(a, b) for a, b in zip(ref_masks, got_masks)), (key, backend)


# --- bad input ---

@pytest.mark.parametrize("pattern", ["2:3", "4:4", "0:4", "2:16", "3:4:5", "nm", "", 24, None])
def test_malformed_pattern_lists_the_valid_forms(net, pattern):
    with pytest.raises(ValueError, match=r'^pattern must be "unstructured", "N:M" with M in '
                                         r'\{4, 8\} and 0 < N < M .* or "channel"; not '):
        hwprune.prune(copy.deepcopy(net), pattern=pattern, backend="golden")


def test_pattern_argument_errors(net):
    with pytest.raises(ValueError, match="^pattern '2:8' needs lanes to be a multiple of 8"):
        hwprune.prune(copy.deepcopy(net), pattern="2:8", lanes=12, backend="golden")
    with pytest.raises(ValueError, match="^pattern 'channel' needs example_inputs"):
        hwprune.prune(copy.deepcopy(net), pattern="channel", backend="golden")
    with pytest.raises(ValueError, match="^scope='global' ranks all tensors on one common scale"):
        hwprune.prune(copy.deepcopy(net), scope="global", granularity="channel",
                      backend="golden")
    with pytest.raises(ValueError, match=r"^scope must be one of \('layer', 'global'\)"):
        hwprune.prune(copy.deepcopy(net), scope="model", backend="golden")


@pytest.mark.parametrize("kw", [dict(scope="global"), dict(pattern="2:4"),
                                dict(pattern="channel", example_inputs=torch.randn(1, 3, 8, 8))])
def test_nan_keeps_its_behaviour_on_every_path(net, kw):
    model = copy.deepcopy(net)
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^layer 'conv2.weight' has 1 NaN or Inf"):
        hwprune.prune(model, 0.5, backend="golden", **kw)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, equal_nan=True)
