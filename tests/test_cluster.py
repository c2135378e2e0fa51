"""hwprune on a Ray cluster: a real local 2-worker cluster, in a network namespace of its own."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import hwprune
from hwprune.cluster import shards

HERE = Path(__file__).parent


def test_shards_balance_sizes_and_keep_model_order():
    groups = shards([5, 100, 7, 60, 40, 1], 2)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert all(g == sorted(g) for g in groups)
    loads = sorted(sum([5, 100, 7, 60, 40, 1][i] for i in g) for g in groups)
    assert loads == [106, 107]
    assert shards([3], 4) == [[0]]


def test_cluster_arguments_are_checked_before_anything_starts():
    model = nn.Linear(8, 4)
    before = model.weight.clone()
    with pytest.raises(ValueError, match="^cluster must be None or 'ray', not 'dask'"):
        hwprune.prune(model, cluster="dask", backend="golden")
    with pytest.raises(ValueError, match="^address is the Ray cluster to join: it needs"):
        hwprune.prune(model, address="127.0.0.1:6379", backend="golden")
    with pytest.raises(ValueError, match="^cluster='ray' runs unstructured and N:M patterns"):
        hwprune.prune(model, pattern="channel", example_inputs=torch.randn(1, 8), cluster="ray")
    assert torch.equal(model.weight, before)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare for a network namespace (CI runs as root)")
def test_ray_cluster_is_exact_survives_a_killed_worker_and_stays_on_loopback():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(HERE)
    cmd = f"ip link set lo up && exec {sys.executable} {HERE / 'ray_check.py'}"
    out = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True,
                         timeout=600, env=env, cwd=HERE.parent)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result.pop("off_loopback") == []
    assert result.pop("worker_killed_marker_used"), "the worker was never killed"
    assert all(result.values()), result
    assert len(result) == 9
