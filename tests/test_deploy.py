"""hwprune.deploy: a pruned PyTorch model compiled for the network engine and run there, bit for
bit the integer reference, on every test image; what does not fit or cannot be deployed is
refused before anything runs, and the model is never changed."""

import numpy as np
import pytest
import torch
from torch import nn

import hwprune
from hwprune.contract import net_engine as ne
from hwprune.deploy import BOARD_ENGINES, deploy, quantize_model


@pytest.fixture(scope="module")
def digits_mlp():
    """The digits MLP (64-300-100-10), trained briefly, pruned to 90 % per layer and
    fine-tuned with its masks."""
    from hwprune.data import load_digits_splits
    from hwprune.experiments import one_shot, train_dense
    splits = load_digits_splits(0)
    dense = train_dense("mlp-digits", splits, seed=0, epochs=15)
    model, _ = one_shot(dense, splits, 0.9, finetune_epochs=8, backend="torch", width=8)
    return model.eval(), splits


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_deployed_mlp_is_the_integer_reference_on_every_test_image(digits_mlp):
    model, splits = digits_mlp
    before = _state(model)
    x, y = splits.test.tensors
    ref = deploy(model, splits.train.tensors[0], backend="golden", board="icebreaker").run(x)
    dep = deploy(model, splits.train.tensors[0], backend="verilator", board="icebreaker")
    got = dep.run(x)
    assert len(got.out) == 450
    np.testing.assert_array_equal(got.out, ref.out)
    np.testing.assert_array_equal(got.predictions, ref.predictions)
    assert (got.beats, got.columns) == (ref.beats, ref.columns)
    # 8-bit integers keep the float model's accuracy (to a point and a half).
    with torch.no_grad():
        float_acc = (model(x).argmax(1) == y).float().mean().item()
    acc = (got.predictions == y.numpy()).mean()
    assert acc > 0.85 and abs(acc - float_acc) < 0.015
    # The logits are the float model's, up to the quantization steps.
    with torch.no_grad():
        assert torch.allclose(dep(x[:20]), model(x[:20]), atol=0.35 * model(x[:20]).abs().max())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_torch_backend_and_other_lane_counts_agree(digits_mlp):
    model, splits = digits_mlp
    x = splits.test.tensors[0][:64]
    want = deploy(model, splits.train.tensors[0], backend="golden", lanes=8).run(x).out
    for backend, lanes in (("torch", 8), ("verilator", 4), ("golden", 16)):
        got = deploy(model, splits.train.tensors[0], backend=backend, lanes=lanes).run(x).out
        np.testing.assert_array_equal(got, want)   # the lanes change the schedule only


def test_profile_measures_dense_sparse_and_dual_on_the_rtl(digits_mlp):
    model, splits = digits_mlp
    x = splits.test.tensors[0][:30]
    dep = deploy(model, splits.train.tensors[0], backend="verilator", board="icebreaker")
    figures, totals, runs = dep.profile(x)
    assert [f.name for f in figures] == ["classifier.1", "classifier.3", "classifier.5"]
    assert [f.shape for f in figures] == [(300, 64), (100, 300), (10, 100)]
    # Skipping zero weights, then zero activations, can only take fewer cycles; all three give
    # the same results.
    for f in figures:
        assert f.dense_cycles > f.sparse_cycles >= f.dual_cycles > 0
    assert totals["dense"] > 5 * totals["sparse"] and totals["sparse"] > totals["dual"]
    np.testing.assert_array_equal(runs["dense"].out, runs["dual"].out)
    np.testing.assert_array_equal(runs["sparse"].out, runs["dual"].out)
    # The dense run streams every weight: at least one beat per lanes weights and input.
    assert runs["dense"].beats >= 30 * (300 * 64 + 100 * 300 + 10 * 100) / 4
    # The layers' memory adds up to the program's (each figure rounded up to whole bytes).
    mem = dep.memory()
    assert 0 <= sum(f.memory_bytes for f in figures) - mem["total"] <= 5 * len(figures)
    assert mem["weights"] == -(-len(dep.program.value) * 4 * (8 + 7) // 8)    # whole bytes
    table = dep.table(figures, totals)
    assert "classifier.3" in table and "us per input" in table
    golden = deploy(model, splits.train.tensors[0], backend="golden").profile(x)[1]
    assert golden["dual"] is None     # the golden model does not time the engine


def test_memory_follows_the_kept_weights(digits_mlp):
    model, splits = digits_mlp
    import copy
    dense = copy.deepcopy(model)
    for m in dense.modules():
        if isinstance(m, nn.Linear) and hasattr(m, "weight_mask"):
            nn.utils.prune.remove(m, "weight")
    less = copy.deepcopy(dense)
    hwprune.prune(less, 0.97, backend="torch", width=8)
    sizes = [deploy(m, splits.train.tensors[0], backend="golden", lanes=8).memory()["weights"]
             for m in (dense, less)]
    assert sizes[1] < 0.5 * sizes[0]


def test_a_model_that_does_not_fit_is_named_before_anything_runs():
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(64, 600))
    over_bytes = -(-22 * ne.geometry(**BOARD_ENGINES["icebreaker"]).entry_bits()["bias"] // 8)
    with pytest.raises(ValueError, match=r"^the program needs 150 bias entries, the engine's "
                                         rf"bias memory holds 128 \(22 over; {over_bytes} bytes\)"):
        deploy(big, torch.randn(8, 64), backend="verilator", board="icebreaker")
    dense = nn.Sequential(nn.Linear(256, 512))
    with pytest.raises(ValueError, match=r"^the program needs [\d,]+ weights entries, the "
                                         r"engine's weights memory holds 16,384 \([\d,]+ over"):
        deploy(dense, torch.randn(8, 256), backend="golden", board="icebreaker")
    wide = nn.Sequential(nn.Linear(500, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(ValueError, match=r"^the program needs 516 cols entries, the engine's "
                                         r"cols memory holds 512 \(4 over"):
        deploy(wide, torch.randn(8, 500), backend="golden", board="icebreaker")


@pytest.mark.parametrize("model,message", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10)),
     "Conv2d '0' has padding \\(0, 0\\) \\(the engine pads 'same' with zeros\\)"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, stride=2), nn.Flatten(), nn.Linear(64, 10)),
     "Conv2d '0' has a stride, dilation or groups other than 1"),
    (nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.Flatten(), nn.Linear(256, 10)),
     "Conv2d '0' has a 5x5 kernel"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2), nn.Flatten(),
                   nn.Linear(64, 10)), "'1' is a AvgPool2d; the network engine runs Linear and "
                                       "Conv2d layers"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(3), nn.Flatten(),
                   nn.Linear(16, 10)), "MaxPool2d '1' must be a 2x2 pooling of stride 2"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Linear(8, 10)),
     "Linear '1' after a convolution needs a Flatten"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Unflatten(1, (1, 8, 8)),
                   nn.Conv2d(1, 4, 3, padding=1)), "'2' is a Unflatten"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
     "the model has no Linear layer"),
    (nn.Sequential(nn.Linear(64, 10), nn.ReLU()), "it cannot end in ReLU"),
    (nn.Sequential(nn.ReLU(), nn.Linear(64, 10)), "ReLU '0' must follow a Linear or Conv2d"),
    (nn.Sequential(nn.Flatten()), "the model has no Linear layer"),
])
def test_models_the_engine_cannot_run_get_a_clear_error(model, message):
    with pytest.raises(ValueError, match=message):
        deploy(model, torch.randn(4, 1, 8, 8), backend="golden")


def test_bad_arguments_and_inputs(digits_mlp):
    model, splits = digits_mlp
    x = splits.train.tensors[0]
    with pytest.raises(ValueError, match=r"backend must be one of \('golden', 'torch', "
                                         r"'verilator', 'cocotb', 'uart-sim', 'serial'\), not "
                                         r"'fpga'"):
        deploy(model, x, backend="fpga")
    with pytest.raises(ValueError, match=r"board must be one of \['icebreaker', 'ulx3s'\]"):
        deploy(model, x, board="arty")
    with pytest.raises(ValueError, match="the icebreaker engine has 4 lanes, not 8"):
        deploy(model, x, board="icebreaker", lanes=8)
    with pytest.raises(ValueError, match="example inputs hold NaN or Inf"):
        deploy(model, torch.full((2, 1, 8, 8), float("nan")), backend="golden")
    dep = deploy(model, x, backend="golden")
    with pytest.raises(ValueError, match="inputs have 63 features, the model 64"):
        dep.run(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="inputs hold NaN or Inf"):
        dep.run(torch.full((2, 64), float("inf")))


def test_quantization_keeps_the_zeros_and_fits_the_bounds(digits_mlp):
    model, splits = digits_mlp
    q = quantize_model(model, splits.train.tensors[0], width=8)
    for (name, lin), layer in zip([(n, m) for n, m in model.named_modules()
                                   if isinstance(m, nn.Linear)], q.layers):
        w = lin.weight.detach().numpy()
        # pruned weights stay zero (a kept weight below half a step may round to zero too)
        assert not ((w == 0) & (layer.weight != 0)).any(), name
        assert (layer.weight != 0).sum() >= 0.95 * (w != 0).sum(), name
        assert np.abs(layer.weight).max() == 127
    assert [layer.relu for layer in q.layers] == [True, True, False]
    assert all(0 < layer.scale < 2 ** 16 for layer in q.layers[:-1])
    assert q.kept_weights == sum(int(np.count_nonzero(layer.weight)) for layer in q.layers)


@pytest.fixture(scope="module")
def digits_cnn():
    """The reference CNN adapted to the digits (conv 1->32, conv 32->64, each with ReLU and 2x2
    max pooling; 256-256-10), trained briefly, pruned to 90 % per layer and fine-tuned."""
    from hwprune.data import load_digits_splits
    from hwprune.experiments import one_shot, train_dense
    splits = load_digits_splits(0)
    dense = train_dense("cnn-digits", splits, seed=0, epochs=12)
    model, _ = one_shot(dense, splits, 0.9, finetune_epochs=6, backend="torch", width=8)
    return model.eval(), splits


def test_deployed_cnn_runs_on_the_ulx3s_engine_image_for_image(digits_cnn):
    """The CNN on the ULX3S's engine (16 lanes, convolutions on chip): the verilated engine on
    all 450 test images and the deploy bitstream behind its UART (uart-sim) on some, against
    the integer reference; the accuracy of the float model kept; the model unchanged."""
    model, splits = digits_cnn
    before = _state(model)
    x, y = splits.test.tensors
    calib = splits.train.tensors[0]
    golden = deploy(model, calib, backend="golden", board="ulx3s")
    assert [d.conv for d in golden.program.layers] == [True, True, False, False]
    ref = golden.run(x)
    dep = deploy(model, calib, backend="verilator", board="ulx3s")
    figures, totals, runs = dep.profile(x)
    for run in runs.values():
        np.testing.assert_array_equal(run.out, ref.out)
    assert (runs["dual"].beats, runs["dual"].columns) == (ref.beats, ref.columns)
    # skipping zero weights, then zero activations, saves cycles in every convolution
    for f in figures[:2]:
        assert f.dense_cycles > f.sparse_cycles > f.dual_cycles
    with torch.no_grad():
        float_acc = (model(x).argmax(1) == y).float().mean().item()
    acc = (ref.predictions == y.numpy()).mean()
    assert acc > 0.8 and abs(acc - float_acc) < 0.03
    np.testing.assert_array_equal(
        deploy(model, calib, backend="torch", board="ulx3s").run(x[:64]).out, ref.out[:64])
    uart = deploy(model, calib, backend="uart-sim", board="ulx3s").run(x[:12])
    np.testing.assert_array_equal(uart.out, ref.out[:12])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_cnn_needs_an_engine_with_convolutions(digits_cnn):
    model, splits = digits_cnn
    with pytest.raises(ValueError, match=r"layer 0 is a convolution; the engine is built "
                                         r"without them"):
        deploy(model, splits.train.tensors[0], backend="golden", board="icebreaker")
    # without a board: a conv build with accumulators for the widest convolution (8x8x32)
    dep = deploy(model, splits.train.tensors[0], backend="golden", lanes=8)
    assert dep.engine["conv"] == 1 and dep.engine["max_rows"] == 2048
