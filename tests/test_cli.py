import json
import subprocess
import sys

import torch


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hwprune", *args], capture_output=True,
                          text=True, timeout=300)


def test_prune_default_model_prints_the_report(tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli("prune", "--backend", "verilator", "--amount", "0.7", "--json", str(out),
                   "--out", str(tmp_path / "model.pt"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for name in ("features.0.weight", "features.3.weight", "classifier.1.weight",
                 "classifier.3.weight", "total"):
        assert name in proc.stdout
    report = json.loads(out.read_text())
    assert report["backend"] == "verilator"
    assert report["total"]["numel"] == 864 + 18432 + 1048576 + 2560
    # Counted in the saved masks, not taken from the report: exactly 30 % of each tensor kept.
    state = torch.load(tmp_path / "model.pt")
    for layer in report["layers"]:
        mask = state[layer["name"] + "_mask"]
        assert mask.numel() == layer["numel"]
        assert int(mask.sum()) == layer["kept"] == layer["numel"] - round(0.7 * layer["numel"])


def test_prune_by_activation_per_row(tmp_path):
    """--criterion activation calibrates the digits MLP on its training images through the
    engine, then keeps exactly half of every row."""
    proc = run_cli("prune", "--model", "mlp-digits", "--criterion", "activation", "--group",
                   "row", "--width", "16", "--backend", "verilator", "--out",
                   str(tmp_path / "model.pt"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    state = torch.load(tmp_path / "model.pt")
    for name in ("classifier.1.weight", "classifier.3.weight", "classifier.5.weight"):
        mask = state[name + "_mask"]
        assert (mask.sum(1) == mask.shape[1] // 2).all(), name


def test_bad_amount_is_a_clear_error():
    proc = run_cli("prune", "--backend", "golden", "--amount", "2", "--no-progress")
    assert proc.returncode == 2
    assert "hwprune: error: amount must be a number from 0 to 1" in proc.stderr


def test_verilog_command_writes_the_module(tmp_path):
    proc = run_cli("verilog", "--lanes", "8", "--width", "4", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "threshold_engine_l8_w4.v").read_text()
    assert "module threshold_engine(" in text
    assert "i_stream__payload" in text and "o_stream__ready" in text
