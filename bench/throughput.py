"""Throughput of the verilator backend on ResNet-18-shaped weights (11.7 M), in one run.

Compares, over the same quantized tiles:
- the verilator backend (ctypes, a whole tensor per call) -> weights/s;
- a raw C++ loop over the same verilated model, inputs packed beforehand (the ceiling);
- cocotb driving the same RTL beat by beat, measured on a slice (the marginal rate between two
  slice sizes, so simulator start-up is not charged to it) and scaled;
- torch.nn.utils.prune.l1_unstructured over the same float tensors, for scale.
The last line is JSON.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.nn.utils import prune as torch_prune
from tqdm import tqdm

from hwprune import get_backend
from hwprune.contract import ThresholdJob, select_threshold_passes
from hwprune.contract.magnitude_histogram import run as golden_histogram
from hwprune.prune import _keep_count
from hwprune.quant import quantize, tile
from hwprune.sim.verilator_lib import library

from resnet18_shapes import RESNET18_WEIGHT_SHAPES


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--amount", type=float, default=0.5)
    ap.add_argument("--cocotb-beats", type=int, default=36000)
    args = ap.parse_args()
    lanes, width = args.lanes, args.width

    torch.manual_seed(0)
    tensors = [torch.randn(s) * (2.0 / np.prod(s[1:])) ** 0.5 for s in RESNET18_WEIGHT_SHAPES]
    weights = sum(t.numel() for t in tensors)
    jobs = []
    for t in tqdm(tensors, desc="quantize+tile", unit="tensor"):
        q = quantize(t.numpy(), width)
        tiles = tile(q.codes, lanes)
        # The threshold comes from the histogram unit's model: this bench times the mask pass.
        thr, budget, _ = select_threshold_passes(golden_histogram, tiles.data, tiles.lane_valid,
                                                 width, _keep_count(t.numel(), args.amount))
        jobs.append(ThresholdJob(tiles.data, tiles.lane_valid, thr, budget))
    print(f"{len(tensors)} tensors, {weights:,} weights, {lanes} lanes x {width} bits")

    backend = get_backend("verilator", lanes=lanes, width=width)
    backend.threshold_passes(jobs[:1])                      # load the library, warm caches
    t0 = time.perf_counter()
    results = [backend.threshold_passes([j])[0] for j in tqdm(jobs, desc="verilator", unit="tensor")]
    t_verilator = time.perf_counter() - t0
    golden = get_backend("golden", lanes=lanes, width=width).threshold_passes(jobs)
    exact = all(np.array_equal(a.mask, b.mask) and a.kept == b.kept for a, b in zip(golden, results))

    raw = library("threshold_engine", lanes=lanes, width=width)
    t_raw = 0.0
    for j in tqdm(jobs, desc="raw C++ loop", unit="tensor"):
        _, seconds = raw.raw_loop(j)
        t_raw += seconds

    cocotb = get_backend("cocotb", lanes=lanes, width=width)
    big = max(jobs, key=lambda j: j.data.shape[0])          # a slice of the largest tensor
    n_large = min(args.cocotb_beats, big.data.shape[0])
    n_small = n_large // 9

    def cocotb_time(n):
        # The best of two runs: simulator start-up time varies from run to run.
        job = ThresholdJob(big.data[:n], big.lane_valid[:n], big.threshold, big.tie_budget)
        times = []
        for _ in range(2):
            t = time.perf_counter()
            cocotb.threshold_passes([job])
            times.append(time.perf_counter() - t)
        return min(times)
    t_small, t_large = cocotb_time(n_small), cocotb_time(n_large)
    cocotb_beats_per_s = (n_large - n_small) / max(t_large - t_small, 1e-9)
    cocotb_weights_per_s = cocotb_beats_per_s * lanes

    modules = [torch.nn.Linear(1, 1) for _ in tensors]
    for m, t in zip(modules, tensors):
        m.weight = torch.nn.Parameter(t.clone())
    t0 = time.perf_counter()
    for m in modules:
        torch_prune.l1_unstructured(m, "weight", amount=args.amount)
    t_torch = time.perf_counter() - t0

    v_rate, raw_rate = weights / t_verilator, weights / t_raw
    print(f"verilator backend : {t_verilator:7.3f} s  {v_rate / 1e6:8.2f} M weights/s "
          f"(bit-exact vs golden: {exact})")
    print(f"raw C++ loop      : {t_raw:7.3f} s  {raw_rate / 1e6:8.2f} M weights/s "
          f"-> ratio {v_rate / raw_rate:.2f}")
    print(f"cocotb (marginal) : {cocotb_weights_per_s / 1e6:8.3f} M weights/s "
          f"({n_large - n_small} beats) -> verilator is {v_rate / cocotb_weights_per_s:.0f}x faster")
    print(f"torch l1_unstructured: {t_torch:7.3f} s  {weights / t_torch / 1e6:8.2f} M weights/s")
    print(json.dumps({"weights": weights, "verilator_weights_per_s": round(v_rate),
                      "ratio_to_raw_loop": round(v_rate / raw_rate, 3),
                      "speedup_over_cocotb": round(v_rate / cocotb_weights_per_s, 1),
                      "torch_l1_unstructured_s": round(t_torch, 3)}))


if __name__ == "__main__":
    main()
