"""Zhu & Gupta's cubic schedule and the gradual pruner that recomputes masks through the engine."""

import re

import pytest
import torch
from torch import nn

from hwprune import prunable_parameters
from hwprune.schedules import CubicSchedule, GradualPruner


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 7))


@pytest.mark.parametrize("s_i, s_f, t0, n, dt", [(0.0, 0.9, 0, 10, 5), (0.3, 0.92, 7, 4, 3),
                                                 (0.5, 0.5, 2, 1, 1)])
def test_endpoints_and_monotone(s_i, s_f, t0, n, dt):
    schedule = CubicSchedule(initial_sparsity=s_i, final_sparsity=s_f, begin_step=t0,
                             num_steps=n, frequency=dt)
    assert schedule(0) == pytest.approx(s_i)
    assert schedule(t0) == pytest.approx(s_i)
    assert schedule(t0 + n * dt) == pytest.approx(s_f)
    assert schedule(t0 + n * dt + 1000) == pytest.approx(s_f)
    values = [schedule(t) for t in range(t0 + n * dt + 10)]
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))
    assert schedule.pruning_steps() == [t0 + k * dt for k in range(n + 1)]
    assert [t for t in range(t0 + n * dt + 10) if schedule.is_pruning_step(t)] == \
        schedule.pruning_steps()


def test_cubic_shape():
    schedule = CubicSchedule(initial_sparsity=0.2, final_sparsity=0.8, begin_step=10,
                             num_steps=4, frequency=5)
    for k, t in enumerate(schedule.pruning_steps()):
        assert schedule(t) == pytest.approx(0.8 + (0.2 - 0.8) * (1 - k / 4) ** 3)
        # Held between pruning steps.
        assert schedule(t + 4 if k < 4 else t + 40) == pytest.approx(schedule(t))
    # Concave: the increments shrink.
    values = [schedule(t) for t in schedule.pruning_steps()]
    increments = [b - a for a, b in zip(values, values[1:])]
    assert all(a > b for a, b in zip(increments, increments[1:]))


@pytest.mark.parametrize("kwargs, message", [
    ({"final_sparsity": 1.0}, "final_sparsity must be a sparsity from 0 (inclusive) to 1 "
                              "(exclusive), not 1.0"),
    ({"final_sparsity": -0.1}, "final_sparsity must be a sparsity from 0 (inclusive) to 1 "
                               "(exclusive), not -0.1"),
    ({"final_sparsity": float("nan")}, "final_sparsity must be a sparsity from 0 (inclusive) "
                                       "to 1 (exclusive), not nan"),
    ({"final_sparsity": 0.5, "initial_sparsity": 0.6},
     "initial_sparsity must not exceed final_sparsity, not 0.6 > 0.5"),
    ({"final_sparsity": 0.5, "num_steps": 0}, "num_steps must be an integer >= 1, not 0"),
    ({"final_sparsity": 0.5, "frequency": 2.5}, "frequency must be an integer >= 1, not 2.5"),
    ({"final_sparsity": 0.5, "begin_step": -1}, "begin_step must be an integer >= 0, not -1"),
    ({"final_sparsity": 0.5, "power": 0}, "power must be an integer >= 1, not 0"),
])
def test_out_of_range_parameters(kwargs, message):
    full = {"num_steps": 3, "frequency": 2, **kwargs}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CubicSchedule(**full)


def test_negative_step():
    schedule = CubicSchedule(final_sparsity=0.5, num_steps=2, frequency=1)
    with pytest.raises(ValueError, match=r"^step must be an integer >= 0, not -3$"):
        schedule(-3)


@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_gradual_pruner_masks_shrink_to_exact_count(backend):
    model = _mlp()
    schedule = CubicSchedule(initial_sparsity=0.1, final_sparsity=0.85, begin_step=1,
                             num_steps=5, frequency=2)
    pruner = GradualPruner(model, schedule, backend=backend, width=16)
    previous = None
    for t in range(schedule.end_step + 3):
        changed = pruner.step(t)
        assert changed == schedule.is_pruning_step(t)
        with torch.no_grad():   # the training loop would move the kept weights meanwhile
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        if changed:
            masks = {n: m.weight_mask.clone() for n, m in model.named_children()
                     if hasattr(m, "weight_mask")}
            if previous is not None:
                for name, mask in masks.items():
                    assert torch.all(mask <= previous[name])     # masks only shrink
            previous = masks
    assert len(pruner.history) == schedule.num_steps + 1
    for name, module, pname in prunable_parameters(model):
        numel = getattr(module, pname).numel()
        kept = int(getattr(module, pname + "_mask").sum())
        assert kept == numel - round(0.85 * numel)
        assert pruner.report[name].kept == kept


def test_gradual_pruner_rejects_other_schedules():
    with pytest.raises(TypeError, match="^schedule must be a CubicSchedule, not list$"):
        GradualPruner(_mlp(), [0.5], backend="golden")


@pytest.mark.parametrize("pattern", ["2:4", "channel"])
def test_gradual_pruner_rejects_fixed_patterns(pattern):
    with pytest.raises(ValueError, match=f"^GradualPruner schedules unstructured sparsity, not "
                                         f"pattern '{pattern}'; prune N:M or channels once and "
                                         f"fine-tune$"):
        GradualPruner(_mlp(), CubicSchedule(final_sparsity=0.5, num_steps=2, frequency=1),
                      backend="golden", pattern=pattern)
