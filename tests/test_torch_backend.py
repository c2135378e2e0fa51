"""The torch backend: bit-identical to golden (and, through the shared parity tests, to the RTL)
on every block and every path of hwprune.prune; bounded-memory chunking; write_back="inplace"."""

import copy
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

import hwprune
from hwprune import get_backend
from hwprune import tensor_prune, torch_backend
from hwprune.contract import ChannelJob, HistogramJob, NMJob, ThresholdJob
from hwprune.sim.stimulus import random_tiles

PATHS = [dict(amount=0.6, scope="global"), dict(pattern="2:4"), dict(pattern="1:8"),
         dict(amount=0.3), dict(amount=0.3, granularity="channel"),
         dict(pattern="3:8", granularity="channel"), dict(amount=0.7, write_back="quantized"),
         dict(amount=0.7, scope="global", write_back="quantized"), dict(amount=0.0),
         dict(amount=1.0), dict(amount=0.5, scope="global", write_back="inplace"),
         dict(pattern="2:4", write_back="inplace")]


def net():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.Flatten(),
                          nn.Linear(6 * 6 * 6, 10), nn.GRU(10, 5))
    with torch.no_grad():   # ties: a block of equal magnitudes and exact zeros
        model[4].weight[:3, :40] = 0.05 * torch.sign(model[4].weight[:3, :40])
        model[2].weight[0] = 0
    return model


def outcome(model, report):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layers = [(l.name, l.kept, l.cycles, l.threshold, l.tie_budget, l.beats, l.scale)
              for l in report.layers]
    return state, layers, report.search_cycles


@pytest.mark.parametrize("width", [4, 8, 16])
@pytest.mark.parametrize("kw", PATHS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_prune_bit_identical_to_golden(width, kw):
    got = {}
    for backend in ("golden", "torch"):
        model = net()
        got[backend] = outcome(model, hwprune.prune(model, backend=backend, lanes=8,
                                                    width=width, **kw))
    (want_state, want_layers, want_search), (state, layers, search) = got["golden"], got["torch"]
    assert layers == want_layers and search == want_search
    assert state.keys() == want_state.keys()
    for k in state:
        assert torch.equal(state[k], want_state[k]), k


def test_chunks_carry_the_tie_budget_in_stream_order(monkeypatch):
    """A tensor cut into many chunks gives the result of one pass: the budget runs out inside a
    chunk, and ties cross chunk borders."""
    model = net()
    reference = copy.deepcopy(model)
    want = outcome(reference, hwprune.prune(reference, 0.55, scope="global", backend="golden",
                                            lanes=8, width=4))
    monkeypatch.setattr(tensor_prune, "CHUNK", 24)
    monkeypatch.setattr(tensor_prune, "KEEP_CODES_BYTES", 0)     # quantize again in every pass
    got = outcome(model, hwprune.prune(model, 0.55, scope="global", backend="torch", lanes=8,
                                       width=4))
    assert got[1] == want[1]
    assert all(torch.equal(got[0][k], want[0][k]) for k in want[0])
    assert 0 < want[1][0][4] < 1000   # the tie budget is partial: the carry was exercised


def _jobs(rng, lanes, width):
    tiles, valid = random_tiles(rng, 97, lanes, width)
    hi = 2 ** (width - 1)
    return {
        "threshold_engine": [ThresholdJob(tiles, valid, t, b) for t, b in
                             [(0, 3), (1, 40), (hi // 2, 2**32 - 1), (hi, 0), (2, 0)]],
        "magnitude_histogram": [HistogramJob(tiles, valid, width, 8 if width == 16 else 0,
                                             0, 0, k) for k in (0, 1, 500, 10**6)]
        + ([HistogramJob(tiles, valid, width, 0, 1, 0, 7)] if width == 16 else []),
        "nm_selector": [NMJob(tiles, valid, m, n) for m, n in [(4, 2), (8, 3), (4, 0), (8, 8)]],
        "channel_norms": [ChannelJob(tiles, valid, (np.arange(97) % 5 == 4) | (np.arange(97) == 96))],
    }


@pytest.mark.parametrize("width", [4, 8, 16])
def test_every_block_bit_identical_to_golden(width):
    rng = np.random.default_rng(width)
    for block, jobs in _jobs(rng, 8, width).items():
        want = get_backend("golden", lanes=8, width=width).run(block, jobs)
        got = get_backend("torch", lanes=8, width=width).run(block, jobs)
        for w, g in zip(want, got):
            for field in vars(w):
                a, b = getattr(w, field), getattr(g, field)
                if isinstance(a, np.ndarray):
                    assert a.dtype == b.dtype and np.array_equal(a, b), (block, field)
                else:
                    assert a == b, (block, field)


def test_bad_jobs_get_the_golden_models_errors():
    rng = np.random.default_rng(1)
    tiles, valid = random_tiles(rng, 4, 8, 8)
    engine = get_backend("torch", lanes=8, width=8)
    with pytest.raises(ValueError, match="^m must be one of"):
        engine.run("nm_selector", [NMJob(tiles, valid, 5, 2)])
    with pytest.raises(ValueError, match="^the final beat must have last set"):
        engine.run("channel_norms", [ChannelJob(tiles, valid, np.zeros(4, dtype=bool))])
    with pytest.raises(ValueError, match="^tiles and lane_valid must both have shape"):
        engine.run("threshold_engine", [ThresholdJob(tiles, valid[:2], 1)])


def test_device_option():
    assert get_backend("torch", lanes=8, width=8, device="cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="^device must be 'cpu' or 'cuda'"):
        get_backend("torch", lanes=8, width=8, device="meta")
    with pytest.raises(TypeError, match="backend 'torch' takes \\['device'\\]"):
        hwprune.prune(net(), backend="torch", workers=2)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device here"):
            hwprune.prune(net(), backend="torch", device="cuda")


def test_packed_masks_round_trip():
    g = torch.Generator().manual_seed(3)
    for n in (1, 7, 8, 9, 1000, 4099):
        mask = torch.rand(n, generator=g) < 0.3
        packed, count = tensor_prune.pack_bits(mask)
        assert count == n and packed.numel() == -(-n // 8)
        assert torch.equal(tensor_prune.unpack_bits(packed, n, 0, n), mask)
        assert torch.equal(tensor_prune.unpack_bits(packed, n, 8, n), mask[8:])


@pytest.mark.parametrize("backend", ["golden", "torch"])
def test_inplace_zeroes_what_the_mask_would_and_adds_nothing(backend):
    masked, inplace = net(), net()
    hwprune.prune(masked, 0.6, backend=backend, lanes=8)
    hwprune.prune(inplace, 0.6, backend=backend, lanes=8, write_back="inplace")
    assert not any(n.endswith(("_orig", "_mask")) for n in dict(inplace.named_parameters()))
    assert not list(inplace.buffers()) and not any(m._forward_pre_hooks for m in inplace.modules())
    hwprune.remove(masked)
    want, got = masked.state_dict(), inplace.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_inplace_on_an_already_masked_model_keeps_its_mask_consistent():
    model = net()
    hwprune.prune(model, 0.3, backend="torch", lanes=8)
    hwprune.prune(model, 0.6, backend="torch", lanes=8, write_back="inplace")
    conv = model[0]
    assert torch.equal(conv.weight_orig * conv.weight_mask, conv.weight_orig)
    assert torch.equal(conv.weight, conv.weight_orig)


def test_interrupt_while_planning_leaves_the_model_untouched(monkeypatch):
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    real = tensor_prune.mask_codes

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(tensor_prune, "mask_codes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hwprune.prune(model, 0.5, backend="torch", lanes=8, write_back="inplace")
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_ctrl_c_while_writing_in_place_is_held_until_every_weight_is_written(monkeypatch):
    model, reference = net(), net()
    hwprune.prune(reference, 0.5, backend="torch", lanes=8, write_back="inplace")
    from hwprune import pruning
    real = pruning._zero_where_pruned
    sent = []

    def signal_midway(t, mask):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C after the first tensor starts
        real(t, mask)
    monkeypatch.setattr(pruning, "_zero_where_pruned", signal_midway)
    with pytest.raises(KeyboardInterrupt):
        hwprune.prune(model, 0.5, backend="torch", lanes=8, write_back="inplace")
    assert sent
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_torch_kernels_work_on_any_device_torch_has():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        model = net()
        want = outcome(model, hwprune.prune(model, 0.5, scope="global", backend="golden", lanes=8))
        model = net()
        got = outcome(model, hwprune.prune(model, 0.5, scope="global", backend="torch", lanes=8,
                                           device=device))
        assert got[1] == want[1]


def test_nan_gets_hwprunes_error_on_the_tensor_path():
    model = net()
    with torch.no_grad():
        model[2].weight[1, 1] = float("inf")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^layer '2.weight' has 1 NaN or Inf weight\(s\)"):
        hwprune.prune(model, 0.5, backend="torch", write_back="inplace")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_every_block_has_a_torch_kernel():
    from hwprune.contract.blocks import STREAM_BLOCKS
    for block in STREAM_BLOCKS:
        assert callable(getattr(torch_backend.TorchBackend, "_" + block.name, None)), block.name


def test_torch_backend_is_listed():
    assert "torch" in hwprune.BACKENDS
    assert torch_backend.TorchBackend.tensor_path
