"""hwprune.calibrate: input-feature L2 norms measured by the channel-norm unit, against torch
references written from the definition; every backend bit-identical; bad input changes nothing."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hwprune


def mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 5))


def batches(n=3, rows=7, features=12):
    g = torch.Generator().manual_seed(8)
    xs = [torch.randn(rows, features, generator=g) for _ in range(n)]
    xs[0][:, 3] *= 40            # one loud feature, one silent one
    xs[1][:, 5] = 0
    return xs


def reference_linear(model, xs):
    """sqrt(sum over every token of x_j**2), for each Linear's input (Wanda's ||X_j||_2)."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: seen.setdefault(n, []).append(
        a[0].reshape(-1, a[0].shape[-1]))) for n, m in model.named_modules()
        if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for x in xs:
            model(x)
    for h in hooks:
        h.remove()
    return {f"{n}.weight": torch.cat(v).double().pow(2).sum(0).sqrt().numpy()
            for n, v in seen.items()}


def assert_close_to_reference(calib, want, rel=2e-3):
    assert set(calib.norms) == set(want)
    for name, ref in want.items():
        got = calib[name]
        # 16-bit codes per batch: within a few quantization steps of the batch's largest value
        np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * ref.max())


def test_linear_norms_match_the_definition():
    model, xs = mlp(), batches()
    calib = hwprune.calibrate(model, xs, backend="verilator", lanes=8)
    assert_close_to_reference(calib, reference_linear(model, xs))
    assert calib.positions["0.weight"] == 21 and calib.batches == 3
    assert calib.cycles["0.weight"] > 0
    assert calib["0.weight"][3] > 10 * np.median(calib["0.weight"])


def test_every_backend_bit_identical():
    model, xs = mlp(), batches()
    results = {b: hwprune.calibrate(model, xs, backend=b, lanes=8)
               for b in ("golden", "verilator", "torch", "cocotb")}
    for b in ("verilator", "torch", "cocotb"):
        for name in results["golden"].norms:
            assert np.array_equal(results[b][name], results["golden"][name]), (b, name)
            assert results[b].cycles[name] == results["golden"].cycles[name], (b, name)


def test_every_input_form_gives_the_same_statistics():
    model, xs = mlp(), batches()
    want = hwprune.calibrate(model, xs, backend="golden", lanes=8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.cat(xs)),
                                         batch_size=7)
    from_loader = hwprune.calibrate(model, loader, backend="golden", lanes=8)
    from_fn = hwprune.calibrate(model, lambda m: [m(x) for x in xs], backend="golden", lanes=8)
    for other in (from_loader, from_fn):
        for name in want.norms:
            assert np.array_equal(other[name], want[name])
    one = hwprune.calibrate(model, xs[0], backend="golden", lanes=8)
    assert one.batches == 1 and one.positions["0.weight"] == 7


def test_convolution_uses_its_unfolded_columns():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(2, 3, 8, 8)
    calib = hwprune.calibrate(model, x, backend="golden", lanes=8)
    cols = F.unfold(x, 3, padding=1, stride=2)                      # (N, 27, L)
    ref = cols.transpose(1, 2).reshape(-1, 27).double().pow(2).sum(0).sqrt().numpy()
    np.testing.assert_allclose(calib["0.weight"], ref, rtol=2e-3, atol=2e-3 * ref.max())
    assert calib.positions["0.weight"] == 2 * 16


def test_gru_input_and_hidden_states():
    torch.manual_seed(2)
    gru = nn.GRU(6, 4, batch_first=True)
    x = torch.randn(3, 5, 6)
    calib = hwprune.calibrate(gru, x, backend="golden", lanes=8)
    with torch.no_grad():
        out, _ = gru(x)
    h_in = torch.cat([torch.zeros(3, 1, 4), out[:, :-1]], dim=1).reshape(-1, 4)
    ref_ih = x.reshape(-1, 6).double().pow(2).sum(0).sqrt().numpy()
    ref_hh = h_in.double().pow(2).sum(0).sqrt().numpy()
    np.testing.assert_allclose(calib["weight_ih_l0"], ref_ih, rtol=2e-3, atol=2e-3 * ref_ih.max())
    np.testing.assert_allclose(calib["weight_hh_l0"], ref_hh, rtol=2e-3, atol=2e-3 * ref_hh.max())


def state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            [len(m._forward_hooks) for m in model.modules()])


def same_state(model, before):
    after = state(model)
    return (after[1:] == before[1:] and after[0].keys() == before[0].keys()
            and all(torch.equal(after[0][k], before[0][k]) for k in before[0]))


@pytest.mark.parametrize("inputs,message", [
    ([], r"^the calibration inputs hold no batch"),
    ([torch.full((2, 12), float("nan"))], r"^layer '0.weight' received NaN or Inf activations"),
    (42, r"^calibration inputs must be a tensor, a list of tensors, a DataLoader or a callable"),
])
def test_bad_input_is_named_and_changes_nothing(inputs, message):
    model = mlp()
    model.train()
    before = state(model)
    with pytest.raises((ValueError, TypeError), match=message):
        hwprune.calibrate(model, inputs, backend="golden", lanes=8)
    assert same_state(model, before)


def test_a_layer_never_reached_is_named():
    model = nn.ModuleDict({"used": nn.Linear(4, 4), "spare": nn.Linear(4, 4)})
    before = state(model)
    with pytest.raises(ValueError, match=r"^layer 'spare.weight' was never reached"):
        hwprune.calibrate(model, lambda m: m["used"](torch.randn(2, 4)), backend="golden",
                          lanes=8)
    assert same_state(model, before)


def test_wrong_shape_gets_the_models_own_error_and_leaves_no_hook():
    model = mlp()
    before = state(model)
    with pytest.raises(ValueError, match="could not run on the calibration inputs.*shapes cannot be multiplied"):
        hwprune.calibrate(model, torch.randn(2, 13), backend="golden", lanes=8)
    assert same_state(model, before)


def test_layers_picks_weights_and_names_unknown_ones():
    model, xs = mlp(), batches()
    calib = hwprune.calibrate(model, xs, backend="golden", lanes=8, layers=["2.weight"])
    assert list(calib.norms) == ["2.weight"] and calib["2.weight"].shape == (20,)
    with pytest.raises(ValueError, match=r"^no prunable weight named '1.weight'; prunable"):
        hwprune.calibrate(model, xs, backend="golden", lanes=8, layers="1.weight")
