"""Host faults survived: a damaged build cache is rebuilt, two processes building the same
library at once both work, an interrupted prune leaves the model exactly as it was, and tensors
or keywords hwprune cannot take get its own clear error."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import hwprune
from hwprune.backends import GoldenBackend
from hwprune.models import ReferenceCNN

# One small build, run in fresh processes (each loads the cache from disk, as a new user's
# session does): its result is checked against the golden model inside the script.
RUN_ONE = textwrap.dedent("""
    import numpy as np
    from hwprune.contract import ThresholdJob, threshold_mask
    from hwprune.sim.stimulus import random_tiles
    from hwprune.sim.verilator_lib import library

    tiles, valid = random_tiles(np.random.default_rng(5), 300, 4, 4)
    got = library("threshold_engine", lanes=4, width=4).run_job(ThresholdJob(tiles, valid, 3, 11))
    want = threshold_mask(tiles, valid, 3, 11)
    assert (got.mask == want.mask).all() and got.kept == want.kept
    print("OK", got.kept)
""")


def _start(cache):
    return subprocess.Popen([sys.executable, "-c", RUN_ONE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HWPRUNE_CACHE_DIR": str(cache),
                                 "PYTHONWARNINGS": "default"})


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and out.startswith("OK"), err[-3000:]
    return out, err


def test_build_cache_survives_concurrent_builds_and_damage(tmp_path):
    cache = tmp_path / "cache"
    # Two processes build the same library at once: both work, one build is kept.
    first, second = _start(cache), _start(cache)
    (out1, _), (out2, _) = _finish(first), _finish(second)
    assert out1 == out2
    builds = sorted(p for p in (cache / "lib").iterdir() if p.is_dir())
    assert [p.name.split("-")[0] for p in builds] == ["threshold_engine"], builds
    lib = builds[0] / "libthreshold_engine.so"

    # A library cut short (a build killed in the link, a full disk): rebuilt, with a warning.
    size = lib.stat().st_size
    with open(lib, "r+b") as f:
        f.truncate(size // 2)
    _, err = _finish(_start(cache))
    assert "is damaged (checksum mismatch); rebuilding" in err
    assert lib.stat().st_size == size

    # A library whose checksum matches but that does not load: rebuilt, with a warning.
    lib.write_bytes(b"\x7fELF not really a shared library")
    from hwprune.sim.build import _file_digest
    (builds[0] / "BUILD_OK").write_text(_file_digest(lib))
    _, err = _finish(_start(cache))
    assert "failed to load" in err and "rebuilding" in err
    assert lib.stat().st_size == size

    # Generated Verilog cut short: regenerated, with a warning (and the same library serves).
    verilog, = (cache / "verilog").glob("threshold_engine-*.v")
    text = verilog.read_text()
    verilog.write_text(text[:len(text) // 3])
    _, err = _finish(_start(cache))
    assert "cached Verilog" in err and "regenerating" in err
    assert verilog.read_text() == text


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, before, hooks):
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)
    assert [len(m._forward_pre_hooks) for m in model.modules()] == hooks


def _hooks(model):
    return [len(m._forward_pre_hooks) for m in model.modules()]


class _FailingBackend(GoldenBackend):
    """The golden backend, raising ``exc`` in the threshold pass of the third tensor."""

    name = "failing"

    def __init__(self, exc, **kwargs):
        super().__init__(**kwargs)
        self.exc, self.passes = exc, 0

    def run(self, block, jobs):
        if block == "threshold_engine":
            self.passes += 1
            if self.passes == 3:
                raise self.exc
        return super().run(block, jobs)


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return ReferenceCNN()


@pytest.mark.parametrize("exc", [RuntimeError("device lost"), KeyboardInterrupt()])
@pytest.mark.parametrize("pruned_before", [False, True])
def test_a_backend_failing_in_its_third_tensor_changes_nothing(cnn, exc, pruned_before):
    if pruned_before:
        hwprune.prune(cnn, 0.3, backend="golden", lanes=4, width=8)
    before, hooks = _state(cnn), _hooks(cnn)
    backend = _FailingBackend(exc, lanes=4, width=8)
    with pytest.raises(type(exc)):
        hwprune.prune(cnn, 0.6, backend=backend, lanes=4, width=8)
    assert backend.passes == 3
    _assert_untouched(cnn, before, hooks)


@pytest.mark.parametrize("write_back", ["mask", "quantized"])
@pytest.mark.parametrize("pruned_before", [False, True])
def test_interrupt_while_masks_are_written_puts_every_tensor_back(cnn, monkeypatch, write_back,
                                                                  pruned_before):
    if pruned_before:
        hwprune.prune(cnn, 0.3, backend="golden", lanes=4, width=8)
    before, hooks = _state(cnn), _hooks(cnn)
    x = torch.randn(2, 3, 32, 32)
    out_before = cnn(x)
    import hwprune.pruning as pruning
    real, calls = pruning._install, []

    def interrupted(*args):
        calls.append(args[1])
        if len(calls) == 3:   # two tensors fully written, the third half-way
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(pruning, "_install", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hwprune.prune(cnn, 0.6, backend="golden", lanes=4, width=8, write_back=write_back)
    assert len(calls) == 3
    _assert_untouched(cnn, before, hooks)
    assert torch_prune.is_pruned(cnn) == pruned_before
    torch.testing.assert_close(cnn(x), out_before, rtol=0, atol=0)
    # And the model still prunes normally afterwards.
    monkeypatch.setattr(pruning, "_install", real)
    report = hwprune.prune(cnn, 0.6, backend="golden", lanes=4, width=8, write_back=write_back)
    for layer in report.layers:
        module = cnn.get_submodule(layer.name.rsplit(".", 1)[0])
        assert int(module.weight_mask.sum()) == layer.numel - round(0.6 * layer.numel)


def test_meta_device_model_gets_hwprune_error():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"^layer '0.weight' is on the meta device .*"
                                         r"model.to_empty\(device='cpu'\).*nothing was pruned$"):
        hwprune.prune(model, 0.5, backend="golden")
    assert not torch_prune.is_pruned(model)


@pytest.mark.parametrize("weight,message", [
    (lambda: torch.zeros(4, 8, dtype=torch.int8), r"has dtype torch.int8; hwprune prunes "
                                                   r"floating-point weights only"),
    (lambda: torch.eye(4, 8).to_sparse(), r"is a sparse_coo tensor; hwprune prunes dense"),
])
def test_unsupported_tensors_get_hwprune_error(weight, message):
    model = nn.Sequential(nn.Linear(8, 4))
    model[0].weight = nn.Parameter(weight(), requires_grad=False)
    def dense(t):
        return t.detach().to_dense() if t.is_sparse else t.detach()

    before = dense(model[0].weight).clone()
    with pytest.raises(ValueError, match=rf"^layer '0.weight' {message}"):
        hwprune.prune(model, 0.5, backend="golden")
    assert not torch_prune.is_pruned(model)
    assert torch.equal(dense(model[0].weight), before)


def test_unknown_keyword_names_the_valid_options():
    model = nn.Linear(8, 4)
    with pytest.raises(TypeError, match=r"^prune\(\) got an unknown keyword 'lane'; prune's "
                                        r"keywords are \[.*'lanes'.*\], and backend 'verilator' "
                                        r"takes \['in_stall', 'out_stall', 'stall_seed', 'workers'\]$"):
        hwprune.prune(model, 0.5, backend="verilator", lane=4)
    with pytest.raises(TypeError, match=r"backend 'golden' takes \[\]$"):
        hwprune.prune(model, 0.5, backend="golden", in_stall=0.5)
    with pytest.raises(TypeError, match=r"^backend 'uart-sim' got an unknown option 'baud'; its "
                                        r"options are \[.*'clocks_per_bit'.*'retries'.*\]$"):
        hwprune.get_backend("uart-sim", lanes=16, width=8, baud=9600)
    assert not torch_prune.is_pruned(model)
    # The options a backend does take still pass through.
    report = hwprune.prune(model, 0.5, backend="golden", lanes=4, width=8)
    assert np.isclose(report.sparsity, 0.5)
