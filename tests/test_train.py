"""Training workflows on the digits set: fine-tuning keeps masks, NaN losses stop safely, L1,
gradual pruning reaches the exact sparsity, mixed precision and its storage accounting."""

import copy
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import hwprune
from hwprune.cli import main
from hwprune.data import load_digits_splits
from hwprune.experiments import gradual, one_shot, train_dense
from hwprune.models import build_model
from hwprune.precision import (WIDTHS, apply_widths, layer_amounts, sensitivity_sweep,
                               storage_bits)
from hwprune.train import TrainingDiverged, evaluate, l1_penalty, train


@pytest.fixture(scope="module")
def splits():
    return load_digits_splits(0)


@pytest.fixture(scope="module")
def dense_mlp(splits):
    torch.set_num_threads(1)
    return train_dense("mlp-digits", splits, seed=0, epochs=8)


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_splits_are_fixed_disjoint_and_complete(splits):
    again = load_digits_splits(0)
    assert torch.equal(splits.test.tensors[0], again.test.tensors[0])
    assert sum(splits.sizes().values()) == 1797
    rows = {tuple(x.flatten().tolist()) + (int(y),) for part in (splits.train, splits.val)
            for x, y in zip(*part.tensors)}
    overlap = sum(tuple(x.flatten().tolist()) + (int(y),) in rows
                  for x, y in zip(*splits.test.tensors))
    # The digits set has a handful of duplicate images; a split by rows shares only those.
    assert overlap <= 5
    x = splits.train.tensors[0]
    assert x.shape[1:] == (1, 8, 8) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("name", ["mlp-digits", "cnn-digits"])
def test_digits_models_run_on_digits(name, splits):
    model = build_model(name, seed=0)
    assert model(splits.test.tensors[0][:3]).shape == (3, 10)


def test_dense_training_learns(dense_mlp, splits):
    assert evaluate(dense_mlp, splits.test) > 0.8     # chance is 0.1


def test_fine_tuning_keeps_masked_weights_zero(dense_mlp, splits):
    model, result = one_shot(dense_mlp, splits, 0.8, finetune_epochs=2, backend="golden")
    for name, module, pname in hwprune.prunable_parameters(model):
        mask = getattr(module, pname + "_mask")
        weight = getattr(module, pname)
        assert torch.all(weight[mask == 0] == 0)
        assert int(mask.sum()) == mask.numel() - round(0.8 * mask.numel())
        # Fine-tuning did move the kept weights.
        dense_w = dict(dense_mlp.named_parameters())[name]
        assert not torch.equal(weight[mask == 1], dense_w[mask == 1])
    assert result["report"]["total"]["kept"] == sum(
        int(getattr(m, p + "_mask").sum()) for _, m, p in hwprune.prunable_parameters(model))
    # The dense model itself was left alone.
    assert not any(hasattr(m, "weight_mask") for m in dense_mlp.modules())


def test_gradual_reaches_exact_sparsity_through_verilator(dense_mlp, splits):
    model, result = gradual(dense_mlp, splits, 0.9, epochs=3, backend="verilator")
    sparsities = [s for _, s in result["pruning_steps"]]
    assert sparsities[-1] == 0.9
    assert all(a <= b for a, b in zip(sparsities, sparsities[1:]))
    for layer in result["report"]["layers"]:
        assert layer["kept"] == layer["numel"] - round(0.9 * layer["numel"])
    for name, zeros in layer_amounts(model).items():
        numel = dict(model.named_buffers())[name.replace("weight", "weight_mask")].numel()
        assert round(zeros * numel) == round(0.9 * numel)


def test_nan_loss_stops_and_restores_last_good_checkpoint(splits, tmp_path):
    model = build_model("mlp-digits", seed=1)
    calls = {"n": 0}
    steps_per_epoch = -(-len(splits.train) // 32)

    def loss_fn(logits, labels):      # turns NaN in the second epoch
        calls["n"] += 1
        loss = nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if calls["n"] > steps_per_epoch + 3 else loss

    before = copy.deepcopy(model.state_dict())
    path = tmp_path / "good.pt"
    message = re.escape("training stopped: the loss is nan at epoch 2, step "
                        f"{steps_per_epoch + 3}; the model was restored to its last good "
                        f"checkpoint (end of epoch 1, saved at {path})")
    with pytest.raises(TrainingDiverged, match=f"^{message}$"):
        train(model, splits.train, epochs=3, loss_fn=loss_fn, checkpoint=path)
    saved = torch.load(path)
    assert _same_state(model.state_dict(), saved)
    assert not _same_state(model.state_dict(), before)       # epoch 1 did train
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_nan_input_at_first_step_restores_initial_weights(splits):
    model = build_model("mlp-digits", seed=2)
    before = copy.deepcopy(model.state_dict())
    x, y = splits.train.tensors
    x = x.clone()
    x[:] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"\(before training\)$"):
        train(model, torch.utils.data.TensorDataset(x, y), epochs=1)
    assert _same_state(model.state_dict(), before)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive integer, not 0"),
    ({"epochs": 1, "lr": -1.0}, "lr must be a positive number, not -1.0"),
    ({"epochs": 1, "l1": float("nan")}, "l1 must be a non-negative number, not nan"),
    ({"epochs": 1, "batch_size": 2.0}, "batch_size must be a positive integer, not 2.0"),
    ({"epochs": 1, "act_l1": -1}, "act_l1 must be a non-negative number, not -1"),
])
def test_bad_training_parameters(kwargs, message, splits):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        train(build_model("mlp-digits"), splits.train, **kwargs)


def test_l1_regularisation_shrinks_weights(splits):
    plain = train_dense("mlp-digits", splits, seed=3, epochs=3)
    sparse = train_dense("mlp-digits", splits, seed=3, epochs=3, l1=1e-4)
    with torch.no_grad():
        assert float(l1_penalty(sparse)) < 0.8 * float(l1_penalty(plain))


def test_activation_penalty_makes_more_activations_zero(splits):
    """act_l1 (what deploy's fine-tuning uses): more hidden ReLU outputs exactly zero, which
    the network engine skips; the hooks it installs are gone afterwards."""
    def zeros(model):
        seen = []
        hooks = [m.register_forward_hook(lambda mod, a, out: seen.append(out))
                 for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        with torch.no_grad():
            model(splits.test.tensors[0])
        for h in hooks:
            h.remove()
        return float(torch.cat([s.flatten() for s in seen]).eq(0).float().mean())
    plain = train_dense("mlp-digits", splits, seed=3, epochs=3)
    sparse = build_model("mlp-digits", seed=3)
    train(sparse, splits.train, epochs=3, act_l1=1e-2, batch_size=32, seed=3)
    assert zeros(sparse) > zeros(plain) + 0.1
    assert all(not m._forward_hooks for m in sparse.modules())


def test_storage_accounting_by_definition():
    layer = nn.Linear(16, 4)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight.view(-1)[[0, 20]] = torch.tensor([0.5, -0.25])
    model = nn.Sequential(layer)
    report = storage_bits(model, 4)
    (entry,) = report.layers
    # Gaps before the values: 0 and 19. Relative indices of b bits need 19 // 2**b fillers, each
    # a b-bit gap plus a 4-bit zero value; b = 5 fits 19 with none: 2 * 5 bits beats b = 4
    # (3 entries of 4 bits + one 4-bit filler value) and the 64-bit bitmap.
    assert (entry.nonzeros, entry.value_bits, entry.scale_bits) == (2, 8, 32)
    assert (entry.index_format, entry.index_bits) == ("relative5", 10)
    assert report.other_bits == 32 * 4
    assert report.dense_fp32_bits == 32 * (64 + 4)
    assert report.bits == 8 + 10 + 32 + 32 * 4
    assert report.ratio == pytest.approx(32 * 68 / report.bits)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    dense_entry = storage_bits(model, {"0.weight": 8}).layers[0]
    assert (dense_entry.index_format, dense_entry.index_bits) == ("bitmap", 64)
    assert dense_entry.value_bits == 64 * 8


def test_storage_counts_pruned_model_parameters_once(dense_mlp, splits):
    model, _ = one_shot(dense_mlp, splits, 0.9, finetune_epochs=1, backend="golden")
    report = storage_bits(model, 8)
    params = sum(p.numel() for p in dense_mlp.parameters())
    assert report.dense_fp32_bits == 32 * params
    assert sum(layer.nonzeros for layer in report.layers) == \
        sum(int(torch.count_nonzero(getattr(m, p))) for _, m, p in
            hwprune.prunable_parameters(model))


def test_mixed_precision_keeps_sparsity_and_quantizes(dense_mlp, splits):
    pruned, _ = one_shot(dense_mlp, splits, 0.9, finetune_epochs=1, backend="golden")
    nonzeros = {n: int(torch.count_nonzero(getattr(m, p)))
                for n, m, p in hwprune.prunable_parameters(pruned)}
    choice = sensitivity_sweep(pruned, splits.val, backend="golden", tolerance=0.02)
    assert set(choice.widths.values()) <= set(WIDTHS)
    assert choice.val_accuracy >= choice.base_val_accuracy - 0.02 or \
        all(w == 16 for w in choice.widths.values())
    # The sweep left the model alone.
    assert all(int(torch.count_nonzero(getattr(m, p))) == nonzeros[n]
               for n, m, p in hwprune.prunable_parameters(pruned))
    apply_widths(pruned, {n: 4 for n in nonzeros}, backend="golden")
    for name, module, pname in hwprune.prunable_parameters(pruned):
        w = getattr(module, pname).detach()
        assert int(torch.count_nonzero(w)) <= nonzeros[name]
        assert len(np.unique(w[w != 0].numpy())) <= 14      # int4 codes: ±1 .. ±7
    with pytest.raises(ValueError, match=r"^width of 'classifier.1.weight' must be one of "
                                         r"\(4, 8, 16\), not 5$"):
        apply_widths(pruned, {"classifier.1.weight": 5}, backend="golden")


def test_experiment_cli_quick(tmp_path, capsys):
    assert main(["experiment", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dense accuracy" in out and "classifier.1.weight" in out
    result = json.loads((tmp_path / "demo_mlp-digits.json").read_text())
    assert result["report"]["backend"] == "verilator"
    assert result["report"]["total"]["sparsity"] == pytest.approx(0.92, abs=1e-3)
    assert (tmp_path / "demo_mlp-digits_layers.png").stat().st_size > 0


def test_schedule_errors_reach_the_cli(capsys):
    assert main(["experiment", "--quick", "--no-progress", "--sparsity", "1.5"]) == 2
    assert "final_sparsity must be a sparsity from 0 (inclusive) to 1 (exclusive), not 1.5" in \
        capsys.readouterr().err


def test_nm24_structure_survives_fine_tuning(dense_mlp, splits):
    model, result = one_shot(dense_mlp, splits, 0.5, finetune_epochs=1, backend="golden",
                             pattern="2:4")
    assert result["pattern"] == "2:4"
    for name, module, pname in hwprune.prunable_parameters(model):
        w = getattr(module, pname).detach()
        groups = w.reshape(w.shape[0], -1, 4)
        assert int((groups != 0).sum(dim=2).max()) <= 2, name


def test_channel_one_shot_removes_channels_and_fine_tunes(splits):
    cnn = train_dense("cnn-digits", splits, seed=0, epochs=1)
    model, result = one_shot(cnn, splits, 0.5, finetune_epochs=1, backend="golden",
                             pattern="channel")
    assert result["channels"]["features.0.weight"] == [32, 16]
    assert result["channels"]["features.3.weight"] == [64, 32]
    assert result["parameters"][1] < result["parameters"][0] / 2
    assert model(splits.test.tensors[0][:4]).shape == (4, 10)
    assert model.features[0].out_channels == 16


def test_train_cli_saves_a_loadable_state_dict(tmp_path, capsys):
    path = tmp_path / "dense.pt"
    assert main(["train", "--epochs", "1", "--l1", "1e-5", "--no-progress",
                 "--out", str(path)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    model = build_model("mlp-digits")
    model.load_state_dict(torch.load(path))


def test_progress_bars_are_quiet_off_a_terminal(tmp_path, capsys):
    """Without --no-progress the bars still stay out of logs and pipes (stderr here is
    pytest's capture, not a terminal)."""
    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "dense.pt")]) == 0
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out
    assert "epoch" not in captured.err
