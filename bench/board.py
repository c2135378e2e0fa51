"""The whole accelerator on the board (issue 10), in one run: each board's default bitstream
synthesized (its blocks, resources, Fmax against its PLL clock) and driven through ``uart-sim``
(its UART core verilated, the host's serial line played bit by bit):

- ``host_jobs``: a layer-scope and a global-scope 90 % prune of the reference CNN (1.07 M
  weights, 8 bits) with the ULX3S's default bitstream (every block); the same with the UP5K's
  (histogram, threshold engine and weight store at 4 lanes) as ``host_jobs_up5k``, and its
  global prune's line bytes a weight as ``line_bytes_per_weight_global_up5k``;
- ``line_bytes_per_weight``: bytes on the line (both ways, whole frames) per weight of an 8-bit
  layer-scope 90 % prune of the digits MLP (64-300-100-10: its tensors fit the store), against
  the same prune with the store switched off (tiles both ways), in the same run;
  ``line_bytes_per_weight_global``: the same for the global 90 % prune of the reference CNN
  (larger than the store: it goes in slices);
- ``full_frames_ok``: full MAX_PAYLOAD frames at 4, 8 and 16 lanes with the host's clock 2 %
  fast and 2 % slow, bit-exact, no byte lost;
- ``ber1e4_wrong`` / ``ber1e4_retries``: the digits MLP pruned through a line that flips one
  bit in 10,000 and drops one byte in 10,000: tensors whose mask differs from golden's, and the
  retries it took;
- ``uart_prune_weights_per_s``: weights per second of the digits MLP prune at 3 Mbit/s, the
  line time simulated at the ULX3S top's clock and divisor (the device's own clock count);
- ``mac_run_exact`` / ``mac_cycles_device``: ``hwprune.run`` of the globally pruned reference CNN
  (one image) on the ULX3S bitstream's sparse MAC: bit-exact with the reference, the device's
  cycle count beside the verilated unit's (``mac_cycles_verilator``).

Usage: ``python bench/board.py [--no-synth]`` (``--no-synth`` reads the reports of an earlier
run under ``build/bench-board``). The last line is JSON.
"""

import argparse
import copy
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

import hwprune
from hwprune.contract import ThresholdJob, threshold_mask
from hwprune.contract.protocol import MAX_PAYLOAD, beat_bytes
from hwprune.hw.boards import BOARDS, DEFAULT_BLOCKS, DEFAULT_LANES, synth
from hwprune.models import build_model
from hwprune.sim.stimulus import random_tiles
from hwprune.uart import UartSimBackend

BUILD = Path("build/bench-board")
CHIP = {"ulx3s": "ecp5", "icebreaker": "up5k"}


def _synth(board):
    try:
        return synth(board, build_dir=BUILD)
    except Exception as exc:                          # reported, not hidden
        return {"board": board, "error": str(exc).strip()[-300:]}


def _report(board):
    path = BUILD / f"{board}_l{DEFAULT_LANES[board]}_w8" / "report.json"
    return json.loads(path.read_text()) if path.exists() else {"error": f"no {path}"}


def masks(model):
    return [m.weight_mask.clone() for m in model.modules() if hasattr(m, "weight_mask")]


def weights_of(model):
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))


def prune_through(model, backend, **kw):
    """Prune ``model`` through ``backend``; return (masks, line bytes, device clocks)."""
    link = backend.link
    sent, received, clocks = link.line_sent, link.line_received, backend.lib.cycles
    hwprune.prune(model, backend=backend, lanes=backend.lanes, width=8, **kw)
    return (masks(model), link.line_sent - sent + link.line_received - received,
            backend.lib.cycles - clocks)


def mac_on_board(model, backend):
    """``hwprune.run`` of the pruned CNN on the bitstream's sparse MAC (one image): bit-exact
    with the reference, and the device's cycles beside the verilated default unit's (the same
    lanes and width, rows up to 4,096 inputs in one pass, fed without a line)."""
    from hwprune.accelerate import reference, run
    from hwprune.contract.sparse_mac import bridge_mac
    params, _ = bridge_mac(backend.lanes, 8)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    report = run(model, x, backend=backend, lanes=backend.lanes, width=8,
                 clock_mhz=BOARDS["ulx3s"][2])
    seconds = time.perf_counter() - t0
    exact = torch.equal(report.output, reference(model, x, lanes=backend.lanes, width=8))
    verilator = hwprune.get_backend("verilator", lanes=backend.lanes, width=8)
    sim = run(model, x, backend=verilator, lanes=backend.lanes, width=8, clock_mhz=1)
    on = [layer.name for layer in report.layers if layer.on_unit]
    print(f"hwprune.run of the pruned CNN on the ULX3S's sparse MAC: "
          f"{'bit-exact' if exact else 'DIFFERS'} against the reference; layers on the chip "
          f"{on} of {len(report.layers)} (rows longer than the bridge unit's max_k = "
          f"{params['max_k']} in column slices); {report.cycles:,} device cycles against "
          f"{sim.cycles:,} on the verilated default unit, {report.dense_cycles:,} dense; "
          f"{seconds:.0f} s simulated")
    return {"mac_run_exact": exact, "mac_layers_on_chip": len(on),
            "mac_cycles_device": report.cycles, "mac_cycles_verilator": sim.cycles}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-synth", action="store_true",
                   help="read the synthesis reports of an earlier run")
    args = p.parse_args(argv)
    out = {}
    pool = None
    if not args.no_synth:
        # The ULX3S top takes minutes in yosys: it runs beside the simulations.
        pool = ProcessPoolExecutor(max_workers=1)
        futures = {b: pool.submit(_synth, b) for b in ("ulx3s", "icebreaker")}

    # --- full frames, the host's clock 2 % off ------------------------------------------------
    rng = np.random.default_rng(10)
    ok = True
    for lanes in (4, 8, 16):
        for skew in (0.02, -0.02):
            for store in (False, True):
                backend = UartSimBackend(lanes=lanes, width=8, board="icebreaker",
                                         blocks=["threshold_engine", "weight_store"],
                                         use_store=store)
                backend.lib.set_skew(skew)
                beats = 2 * (MAX_PAYLOAD // beat_bytes(lanes, 8)) + 7
                tiles, valid = random_tiles(rng, beats, lanes, 8)
                got, = backend.run("threshold_engine", [ThresholdJob(tiles, valid, 3, 5)])
                want = threshold_mask(tiles, valid, 3, 5)
                st = backend.link.status()
                ok &= bool(np.array_equal(got.mask, want.mask) and st["overflows"] == 0
                           and backend.stats["retries"] == 0)
    out["full_frames_ok"] = ok
    print(f"full frames at 4/8/16 lanes, host clock +-2 %, store on and off: "
          f"{'exact' if ok else 'FAILED'}")

    # --- the digits MLP: line bytes per weight, weights per second ---------------------------
    mlp = build_model("mlp-digits", seed=0)
    ref = copy.deepcopy(mlp)
    hwprune.prune(ref, 0.9, backend="golden", lanes=16, width=8)
    want = masks(ref)
    weights = weights_of(mlp)
    figures = {}
    for store in (True, False):
        backend = UartSimBackend(lanes=16, width=8, board="ulx3s", use_store=store)
        model = copy.deepcopy(mlp)
        got, line, clocks = prune_through(model, backend, amount=0.9)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), "MLP masks differ"
        clock = BOARDS["ulx3s"][2] * 1e6
        figures[store] = (line / weights, weights / (clocks / clock), backend.stats["host_jobs"])
        print(f"digits MLP 90 % layer, store {'on ' if store else 'off'}: "
              f"{line / weights:.3f} line bytes/weight, {weights / (clocks / clock):,.0f} "
              f"weights/s at 3 Mbit/s ({clocks:,} clocks at {clock / 1e6:g} MHz)")
    out["line_bytes_per_weight"] = round(figures[True][0], 4)
    out["line_bytes_per_weight_no_store"] = round(figures[False][0], 4)
    out["uart_prune_weights_per_s"] = round(figures[True][1])
    out["uart_prune_weights_per_s_no_store"] = round(figures[False][1])
    print(f"store vs no store: {figures[False][0] / figures[True][0]:.2f}x fewer line bytes, "
          f"{figures[True][1] / figures[False][1]:.2f}x the weights/s")

    # --- faults: BER 1e-4 and lost bytes -----------------------------------------------------
    backend = UartSimBackend(lanes=16, width=8, clocks_per_bit=8)
    backend.lib.set_faults(ber=1e-4, drop=1e-4, seed=5)
    model = copy.deepcopy(mlp)
    got, _, _ = prune_through(model, backend, amount=0.9)
    out["ber1e4_wrong"] = sum(not torch.equal(a, b) for a, b in zip(got, want))
    out["ber1e4_retries"] = backend.stats["retries"]
    print(f"BER 1e-4 + drops 1e-4: {out['ber1e4_wrong']} wrong tensors, "
          f"{out['ber1e4_retries']} retries, faults injected {backend.lib.faults}")

    # --- the reference CNN through each board's default bitstream ---------------------------
    cnn = build_model("cnn", seed=0)
    cnn_weights = weights_of(cnn)
    jobs = {}
    for board in ("ulx3s", "icebreaker"):
        # (no host fallback: a pass for a block the bitstream lacks would be an error)
        backend = UartSimBackend(lanes=DEFAULT_LANES[board], width=8, board=board,
                                 clocks_per_bit=4)
        for scope in ("layer", "global"):
            model = copy.deepcopy(cnn)
            golden = copy.deepcopy(cnn)
            hwprune.prune(golden, 0.9, scope=scope, backend="golden",
                          lanes=DEFAULT_LANES[board], width=8)
            t0 = time.perf_counter()
            got, line, _ = prune_through(model, backend, amount=0.9, scope=scope)
            assert all(torch.equal(a, b) for a, b in zip(got, masks(golden))), (board, scope)
            print(f"reference CNN {scope} 90 % on {board}'s default bitstream: "
                  f"{line / cnn_weights:.3f} line bytes/weight, "
                  f"{time.perf_counter() - t0:.0f} s simulated")
            if board == "ulx3s" and scope == "global":
                out["line_bytes_per_weight_global"] = round(line / cnn_weights, 4)
                out.update(mac_on_board(model, backend))
            if board == "icebreaker" and scope == "global":
                out["line_bytes_per_weight_global_up5k"] = round(line / cnn_weights, 4)
        jobs[board] = backend.stats["host_jobs"]
    out["host_jobs"] = jobs["ulx3s"]
    out["host_jobs_up5k"] = jobs["icebreaker"]

    # --- synthesis ----------------------------------------------------------------------------
    reports = ({b: f.result() for b, f in futures.items()} if pool
               else {b: _report(b) for b in ("ulx3s", "icebreaker")})
    if pool:
        pool.shutdown()
    meets = True
    for board, r in reports.items():
        chip = CHIP[board]
        if "error" in r:
            print(f"{board}: synthesis failed: {r['error']}")
            out[f"{chip}_blocks"], out[f"{chip}_soc_fmax_mhz"] = [], None
            meets = False
            continue
        res = r["resources"]
        print(f"{board} default top: {', '.join(r['blocks'][2:])} at {r['lanes']} lanes; "
              f"{res['cells']['used']}/{res['cells']['available']} cells, "
              f"{res['bram']['used']} BRAM, {res['dsp']['used']} DSP; "
              f"Fmax {r['core_fmax_mhz']} MHz against its {r['clock_mhz']} MHz clock")
        for part, counts in (r.get("part_resources") or {}).items():
            print(f"    {part:<20} " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        out[f"{chip}_blocks"] = r["blocks"][2:]
        out[f"{chip}_soc_fmax_mhz"] = r["core_fmax_mhz"]
        out[f"{chip}_clock_mhz"] = r["clock_mhz"]
        meets &= bool(r["meets_timing"])
    out["meets_timing"] = meets
    keys = ["ecp5_blocks", "up5k_blocks", "host_jobs", "line_bytes_per_weight",
            "line_bytes_per_weight_global", "full_frames_ok", "ber1e4_wrong", "ber1e4_retries",
            "ecp5_soc_fmax_mhz", "up5k_soc_fmax_mhz", "meets_timing",
            "uart_prune_weights_per_s"]
    line = {k: out[k] for k in keys}
    line.update({k: v for k, v in out.items() if k not in line})
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
