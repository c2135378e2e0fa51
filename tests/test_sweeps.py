"""The sweeps' one pool (hwprune.sweeps): placement seeds, precision trials, experiment seeds."""

import json
from pathlib import Path

import pytest
import torch

from hwprune import sweeps
from hwprune.data import load_digits_splits
from hwprune.models import build_model
from hwprune.precision import sensitivity_sweep
from hwprune.pruning import prunable_parameters


def _square(x):
    return x * x


@pytest.mark.parametrize("cluster", [None, "threads"])
def test_parallel_map_keeps_order(cluster):
    assert sweeps.parallel_map(_square, range(7), cluster=cluster) == [i * i for i in range(7)]


def test_parallel_map_checks_its_arguments():
    with pytest.raises(ValueError, match=r"^cluster must be one of \(None, 'threads', 'ray'\)"):
        sweeps.parallel_map(_square, [1], cluster="dask")
    with pytest.raises(ValueError, match="^address is the Ray cluster to join"):
        sweeps.parallel_map(_square, [1], cluster="threads", address="127.0.0.1:6379")


def test_synth_seeds_keeps_the_best_fmax_and_its_bitstream(tmp_path, monkeypatch):
    """The orchestration of `hwprune synth --seeds` (the real synthesis is the smoke test's)."""
    fmax = {1: 30.5, 2: 41.0, 3: 38.2}
    seen = []

    def fake_synth(board, *, lanes, width, seed, build_dir, top):
        seen.append((seed, build_dir))
        out = Path(build_dir) / f"{board}_l{lanes}_w{width}"
        out.mkdir(parents=True)
        (out / "top.bin").write_bytes(bytes([seed]) * 10)
        return {"board": board, "core_fmax_mhz": fmax[seed], "bitstream": str(out / "top.bin"),
                "meets_timing": fmax[seed] > 36}
    import hwprune.hw.boards as boards
    monkeypatch.setattr(boards, "synth", fake_synth)
    report = sweeps.synth_seeds("icebreaker", seeds=3, lanes=8, width=8, top="board",
                                build_dir=tmp_path, cluster="threads")
    assert sorted(s for s, _ in seen) == [1, 2, 3]
    assert len({d for _, d in seen}) == 3                  # a build folder per seed
    assert report["seed"] == 2 and report["core_fmax_mhz"] == 41.0
    assert report["seeds"] == fmax
    best = tmp_path / "icebreaker_l8_w8_best"
    assert Path(report["bitstream"]).read_bytes() == bytes([2]) * 10
    assert Path(report["bitstream"]).parent == best
    assert json.loads((best / "report.json").read_text())["seed"] == 2
    with pytest.raises(ValueError, match="^seeds must be a positive integer"):
        sweeps.synth_seeds("icebreaker", seeds=0, lanes=8, width=8, build_dir=tmp_path)


def test_sensitivity_sweep_is_the_same_wherever_its_trials_run():
    splits = load_digits_splits(0)
    model = build_model("mlp-digits", seed=0)
    kw = dict(widths=(4, 8), backend="golden", lanes=8, tolerance=0.01)
    here = sensitivity_sweep(model, splits.val, **kw)
    spread = sensitivity_sweep(model, splits.val, cluster="threads", **kw)
    assert here.sweep == spread.sweep and here.widths == spread.widths
    names = {name for name, _, _ in prunable_parameters(model)}
    assert set(here.sweep) == names and all(set(v) == {4, 8} for v in here.sweep.values())
