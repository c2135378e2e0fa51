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


def test_deploy_trains_prunes_and_runs_the_digits_mlp_on_the_engine(tmp_path):
    """`hwprune deploy` (the end of `make run`): the program and the pruned model it writes load
    back, and the engine's results equal the integer reference on the saved program."""
    from hwprune.contract import net_engine as ne
    from hwprune.deploy import load_program
    proc = run_cli("deploy", "--backend", "uart-sim", "--amount", "0.9", "--program",
                   str(tmp_path / "p.npz"), "--out", str(tmp_path / "m.pt"), "--json",
                   str(tmp_path / "d.json"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "450 digits test images on the uart-sim engine: accuracy" in proc.stdout
    assert "us per image at 27 MHz (the engine's counter)" in proc.stdout
    figures = json.loads((tmp_path / "d.json").read_text())
    assert figures["accuracy"] > 0.9 and abs(figures["accuracy"] - figures["float_accuracy"]) < 0.02
    assert figures["cycles"]["dense"] > figures["cycles"]["sparse"] > figures["cycles"]["dual"]
    model = torch.load(tmp_path / "m.pt", weights_only=False)      # plain torch, no hwprune
    kept = sum(int((m.weight != 0).sum()) for m in model.modules()
               if isinstance(m, torch.nn.Linear))
    assert kept == 50200 - sum(round(0.9 * n) for n in (19200, 30000, 1000))
    program = load_program(tmp_path / "p.npz")
    x = torch.randint(0, 20, (5, 64)).numpy()
    assert ne.run(ne.NetJob(program, x)).out.shape == (5, 10)


def test_user_models_from_files_and_factories(tmp_path):
    from hwprune.models import build_model
    sd = tmp_path / "sd.pt"
    torch.save(build_model("mlp-digits", seed=3).state_dict(), sd)
    proc = run_cli("deploy", "--model", str(sd), "--no-progress", "--backend", "golden")
    assert proc.returncode == 2
    assert "holds a state dict: name the module it belongs to with --arch" in proc.stderr
    proc = run_cli("prune", "--model", str(sd), "--arch", "mlp-digits", "--backend", "torch",
                   "--amount", "0.6", "--out", str(tmp_path / "p.pt"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    # a state dict with torch.nn.utils.prune's masks loads back with them
    proc = run_cli("deploy", "--model", str(tmp_path / "p.pt"), "--arch",
                   "hwprune.models:LeNet300", "--backend", "golden", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    kept = sum(n - round(0.6 * n) for n in (64 * 300, 300 * 100, 100 * 10))
    assert f"{kept:,} of 50,200 weights kept" in proc.stdout
    (tmp_path / "bad.pt").write_text("not a torch file")
    proc = run_cli("mac", "--model", str(tmp_path / "bad.pt"), "--input-shape", "64")
    assert proc.returncode == 2 and "is not a file torch.save wrote" in proc.stderr
    proc = run_cli("deploy", "--model", "nosuch.module:make", "--no-progress")
    assert proc.returncode == 2 and "cannot import 'nosuch.module:make'" in proc.stderr
    proc = run_cli("mac", "--model", str(tmp_path / "p.pt"), "--arch", "mlp-digits")
    assert proc.returncode == 2 and "--input-shape is needed" in proc.stderr


def test_info_asks_a_simulated_board_what_its_bitstream_holds():
    """`hwprune info --board` asks the board's default bitstream (verilated behind its UART):
    its blocks and the parameters it reports, from the device's INFO and WS_STATUS answers."""
    from hwprune.contract.protocol import PROTOCOL_VERSION
    from hwprune.hw.boards import DEFAULT_BLOCKS, DEFAULT_LANES, HIST_BANKS
    proc = run_cli("info", "--board", "icebreaker", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["protocol"], data["lanes"], data["width"]) == (PROTOCOL_VERSION,
                                                              DEFAULT_LANES["icebreaker"], 8)
    assert set(data["blocks"]) == set(DEFAULT_BLOCKS["icebreaker"])
    assert data["blocks"]["magnitude_histogram"] == {"banks": HIST_BANKS["icebreaker"]}
    assert data["blocks"]["weight_store"]["capacity"] > 0
    text = run_cli("info", "--board", "icebreaker").stdout
    assert "magnitude_histogram  banks=1" in text
    both = run_cli("info", "--board", "ulx3s", "--port", "x")
    assert both.returncode == 2 and "give one of them" in both.stderr
