"""Fast at every scale (issue 13), in one run: the torch backend against what a user would write in
five lines of torch, both cores for the RTL, a Ray cluster, and a GPT-2-XL-sized model in bounded
memory.

1. ResNet-18-shaped weights (11.7 M), global 90 %: ``hwprune.prune(backend="torch")`` (every
   pass: common-scale quantization, additive histogram and select walk, tie-budgeted masks,
   masks installed) against a vectorised torch baseline (one ``kthvalue`` over all magnitudes,
   masks installed with ``torch.nn.utils.prune.custom_from_mask``); then 2:4 against a torch
   top-k per group of 4 with the masks installed the same way. Median of ``--repeats`` runs each.
2. The verilator backend, layer scope 50 %, with 1 and 2 workers (verilated instances in
   parallel threads), median of ``--repeats`` runs each.
3. Ray: the same global prune with ``cluster="ray"`` (an embedded local cluster, 2 workers),
   compared bit for bit with one machine.
4. A GPT-2-XL-shaped model (about 1.56 G bfloat16 weights, shapes written by hand) pruned to a
   global 50 % in place through the torch backend, in a child process whose peak RSS is read
   from the kernel (``ru_maxrss``) and divided by the model's own bytes.
5. CUDA: where torch sees a GPU, items 1 run there too, beside an H100 reference (2:4 over
   ResNet-18 at about 1.9 G weights/s and global magnitude pruning at 0.34 G weights/s, plain
   torch); without one the figures are null.

The last line is JSON.
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import hwprune

sys.path.insert(0, os.path.dirname(__file__))
from resnet18_shapes import RESNET18_WEIGHT_SHAPES  # noqa: E402

#: GPT-2 XL: 48 blocks of width 1600 (c_attn 1600 -> 4800, attention projection, MLP 1600 ->
#: 6400 -> 1600) and the language-model head 1600 -> 50257.
GPT2_XL = dict(layers=48, width=1600, vocab=50257)
H100_REFERENCE = {"nm24_weights_per_s": 1.9e9, "global_weights_per_s": 0.34e9}


def resnet18_weights_model(device="cpu"):
    torch.manual_seed(0)
    layers = []
    for shape in RESNET18_WEIGHT_SHAPES:
        if len(shape) == 4:
            layers.append(nn.Conv2d(shape[1], shape[0], shape[2], bias=False))
        else:
            layers.append(nn.Linear(shape[1], shape[0], bias=False))
    return nn.Sequential(*layers).to(device)


def torch_fast_global(model, amount):
    """The five-line vectorised torch: one kthvalue over every magnitude, masks installed."""
    mags = torch.cat([m.weight.detach().abs().flatten() for m in model])
    drop = round(amount * mags.numel())
    t = mags.kthvalue(drop).values if drop else mags.new_tensor(-1.0)
    for m in model:
        torch_prune.custom_from_mask(m, "weight", m.weight.detach().abs() > t)


def torch_fast_nm24(model):
    """2:4 by torch: top-2 magnitudes per group of 4 input weights (ASP's layout, hwprune's
    padding rule), masks installed with custom_from_mask."""
    for m in model:
        w = m.weight.detach()
        rows = (w.permute(0, 2, 3, 1) if w.dim() == 4 else w).abs()
        rows = rows.reshape(-1, rows.shape[-1])
        cols, pad = rows.shape[1], -rows.shape[1] % 4
        if pad:
            rows = torch.nn.functional.pad(rows, (0, pad), value=-1.0)
        groups = rows.reshape(-1, 4)
        mask = torch.zeros_like(groups, dtype=torch.bool)
        mask.scatter_(1, groups.topk(2, dim=1).indices, True)
        mask = mask.reshape(rows.shape)[:, :cols]
        if w.dim() == 4:
            mask = mask.reshape(w.shape[0], w.shape[2], w.shape[3], w.shape[1]).permute(0, 3, 1, 2)
        torch_prune.custom_from_mask(m, "weight", mask.reshape(w.shape))


def timed(fn, model, repeats, device="cpu"):
    """Median seconds of ``fn(copy of model)`` over ``repeats`` runs, and the last copy."""
    times = []
    for _ in range(repeats):
        m = copy.deepcopy(model)
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(m)
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), m


def masks(model):
    return [m.weight_mask for m in model]


def tensor_figures(model, repeats, amount, device):
    ours_s, ours = timed(lambda m: hwprune.prune(m, amount, scope="global", backend="torch",
                                                 device=device), model, repeats, device)
    fast_s, fast = timed(lambda m: torch_fast_global(m, amount), model, repeats, device)
    nm_s, nm = timed(lambda m: hwprune.prune(m, pattern="2:4", backend="torch", device=device),
                     model, repeats, device)
    nm_fast_s, nm_fast = timed(torch_fast_nm24, model, repeats, device)
    total = sum(m.weight.numel() for m in model)
    kept = sum(int(x.sum()) for x in masks(ours))
    # hwprune keeps exactly numel - round(amount * numel); the five-line torch keeps what lies
    # strictly above its kth value, fewer where float magnitudes tie there.
    exact = kept == total - round(amount * total)
    fast_kept = sum(int(x.sum()) for x in masks(fast))
    # hwprune ranks 8-bit codes (ties broken in stream order), torch the floats: the masks
    # agree except at the threshold; the 2:4 masks agree except where codes tie.
    agree = sum(int((a == b).sum()) for a, b in zip(masks(nm), masks(nm_fast))) / total
    return dict(ours_s=ours_s, fast_s=fast_s, nm_s=nm_s, nm_fast_s=nm_fast_s, exact=exact,
                fast_kept=fast_kept, kept=kept, nm_agree=agree)


def verilator_workers(model, lanes, width, repeats):
    """Median seconds of a layer-scope 50 % prune on the verilator backend with 1 and 2
    workers, and whether the two give identical masks and cycle counts."""
    warm = nn.Sequential(nn.Linear(64, 64))
    hwprune.prune(warm, 0.5, backend="verilator", lanes=lanes, width=width, workers=2)
    out = {}
    for workers in (1, 2):
        reports = []
        seconds, m = timed(lambda m: reports.append(hwprune.prune(
            m, 0.5, backend="verilator", lanes=lanes, width=width, workers=workers)),
            model, repeats)
        out[workers] = (seconds, masks(m), reports[-1].cycles)
    same = out[1][2] == out[2][2] and all(torch.equal(a, b) for a, b in zip(out[1][1], out[2][1]))
    return out[1][0], out[2][0], same


def ray_identical(model):
    import importlib.util
    if importlib.util.find_spec("ray") is None:
        print("ray is not installed (pip install hwprune[ray]): ray_identical is null")
        return None, None
    local = copy.deepcopy(model)
    hwprune.prune(local, 0.9, scope="global", backend="verilator")
    remote = copy.deepcopy(model)
    t0 = time.perf_counter()
    hwprune.prune(remote, 0.9, scope="global", backend="verilator", cluster="ray")
    seconds = time.perf_counter() - t0
    return all(torch.equal(a, b) for a, b in zip(masks(local), masks(remote))), seconds


# --- the big model, in a child process (its peak RSS is the figure) ------------------------------

def gpt2_xl_bf16():
    """GPT-2 XL's prunable weights as bfloat16 Linear layers (no embeddings: they are not
    pruned), materialised in place with no float32 copy."""
    d, layers, vocab = GPT2_XL["width"], GPT2_XL["layers"], GPT2_XL["vocab"]
    kw = dict(device="meta", dtype=torch.bfloat16)
    blocks = [nn.ModuleDict({"c_attn": nn.Linear(d, 3 * d, **kw),
                             "attn_proj": nn.Linear(d, d, **kw),
                             "c_fc": nn.Linear(d, 4 * d, **kw), "mlp_proj": nn.Linear(4 * d, d, **kw)})
              for _ in range(layers)]
    model = nn.ModuleDict({"h": nn.ModuleList(blocks),
                           "lm_head": nn.Linear(d, vocab, bias=False, **kw)})
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=g)
    return model


def big_child():
    import resource
    model = gpt2_xl_bf16()
    params = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    own = sum(p.numel() * p.element_size() for p in model.parameters())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    report = hwprune.prune(model, 0.5, scope="global", backend="torch", device="cpu",
                           write_back="inplace", progress=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if n.endswith("weight"))
    print(json.dumps({"params": params, "model_bytes": own, "peak_rss": peak,
                      "peak_rss_before_prune": before, "s": seconds,
                      "kept": report.kept, "zeros": zeros}))


def big_model():
    out = subprocess.run([sys.executable, __file__, "--big-child"], capture_output=False,
                         stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-big", action="store_true", help="leave out the GPT-2-XL model")
    ap.add_argument("--big-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.big_child:
        return big_child()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    model = resnet18_weights_model()
    weights = sum(m.weight.numel() for m in model)
    print(f"{len(model)} tensors, {weights:,} weights")
    hwprune.prune(nn.Sequential(nn.Linear(8, 8)), backend="torch")      # imports, warm-up

    cpu = tensor_figures(model, args.repeats, 0.9, "cpu")
    print(f"global 90 %: torch backend {cpu['ours_s']:.3f} s vs five-line torch "
          f"{cpu['fast_s']:.3f} s -> ratio {cpu['ours_s'] / cpu['fast_s']:.2f} (target <= 0.7); "
          f"hwprune kept exactly {cpu['kept']:,}: {cpu['exact']} (five-line torch kept "
          f"{cpu['fast_kept']:,})")
    print(f"2:4       : torch backend {cpu['nm_s']:.3f} s vs torch top-k per group "
          f"{cpu['nm_fast_s']:.3f} s -> ratio {cpu['nm_s'] / cpu['nm_fast_s']:.2f} "
          f"(target <= 1.0); masks agree on {cpu['nm_agree']:.4%} of weights")

    one, two, same = verilator_workers(model, args.lanes, args.width, args.repeats)
    print(f"verilator, layer 50 %: 1 worker {one:.3f} s, 2 workers {two:.3f} s -> speedup "
          f"{one / two:.2f} (target >= 1.8); identical results: {same}")

    identical, ray_s = ray_identical(model)
    if identical is not None:
        print(f"ray (embedded local cluster), global 90 % on verilator: {ray_s:.2f} s, "
              f"bit-identical to one machine: {identical}")

    cuda = None
    if torch.cuda.is_available():
        gpu = tensor_figures(model.to("cuda"), args.repeats, 0.9, "cuda")
        cuda = {"device": torch.cuda.get_device_name(), "torch_backend_s": round(gpu["ours_s"], 4),
                "torch_fast_s": round(gpu["fast_s"], 4),
                "global_weights_per_s": round(weights / gpu["ours_s"]),
                "nm24_weights_per_s": round(weights / gpu["nm_s"]),
                "h100_reference": H100_REFERENCE}
        print(f"CUDA ({cuda['device']}): global {cuda['global_weights_per_s'] / 1e9:.2f} G "
              f"weights/s, 2:4 {cuda['nm24_weights_per_s'] / 1e9:.2f} G weights/s; H100 "
              f"reference with plain torch: 0.34 and 1.9 G weights/s")
    else:
        print("no CUDA device here: the CUDA figures are null")

    big = None
    if not args.skip_big:
        big = big_model()
        ratio = big["peak_rss"] / big["model_bytes"]
        print(f"GPT-2-XL shape, {big['params']:,} bfloat16 weights ({big['model_bytes'] / 2**30:.2f}"
              f" GiB), global 50 % in place: {big['s']:.1f} s, peak RSS {big['peak_rss'] / 2**30:.2f}"
              f" GiB -> ratio {ratio:.3f} (target <= 1.3); kept {big['kept']:,}")

    print(json.dumps({
        "weights": weights, "torch_backend_s": round(cpu["ours_s"], 4),
        "torch_fast_s": round(cpu["fast_s"], 4),
        "fast_ratio": round(cpu["ours_s"] / cpu["fast_s"], 3),
        "nm24_torch_backend_s": round(cpu["nm_s"], 4), "nm24_torch_fast_s": round(cpu["nm_fast_s"], 4),
        "nm24_ratio": round(cpu["nm_s"] / cpu["nm_fast_s"], 3),
        "verilator_1w_s": round(one, 3), "verilator_2w_s": round(two, 3),
        "parallel_speedup": round(one / two, 3), "ray_identical": identical,
        "big_params": big and big["params"],
        "big_peak_rss_ratio": big and round(big["peak_rss"] / big["model_bytes"], 3),
        "big_s": big and round(big["s"], 1), "cuda": cuda}))


if __name__ == "__main__":
    main()
