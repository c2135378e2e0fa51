"""Synthesis smoke test: the smallest board configuration goes through yosys, nextpnr and the
packer (YoWASP), so a design that no longer synthesizes or fits fails CI. ``make setup`` warms
the YoWASP cache; bench/synth.py measures the real configurations."""

from pathlib import Path

from hwprune.hw.boards import synth

BUILD = Path(__file__).resolve().parent.parent / "build" / "synth-smoke"


def test_smallest_icebreaker_configuration_synthesizes():
    # YoWASP tools see a private /tmp: build under the repository, never under /tmp.
    report = synth("icebreaker", lanes=4, width=4, build_dir=BUILD)
    bitstream = Path(report["bitstream"])
    assert bitstream.is_file() and bitstream.stat().st_size > 0
    assert report["device"] == "iCE40UP5K"
    for name in ("lut", "ff", "bram", "dsp", "cells"):
        res = report["resources"][name]
        assert res["available"] > 0, name
        assert 0 <= res["used"] <= res["available"], name
    assert report["resources"]["lut"]["used"] > 0 and report["resources"]["ff"]["used"] > 0
    assert report["fmax_mhz"] and all(f > 0 for f in report["fmax_mhz"].values())
    assert (BUILD / "icebreaker_l4_w4" / "report.json").is_file()
