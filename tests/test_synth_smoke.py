"""Synthesis smoke test: the iCEBreaker's default bitstream (its default blocks and lanes, at
its default clock) goes through yosys, nextpnr and the packer (YoWASP), so a design that no
longer synthesizes, fits, or meets the board's clock fails CI. ``make setup`` warms the YoWASP
cache; bench/board.py builds both boards' default tops (the ULX3S's takes minutes)."""

import json
from pathlib import Path

from hwprune.hw.boards import (DEFAULT_BLOCKS, DEFAULT_LANES, DoesNotFit, default_mhz,
                              placement_utilisation, synth)

BUILD = Path(__file__).resolve().parent.parent / "build" / "synth-smoke"


def test_the_icebreaker_default_top_fits_and_meets_its_clock():
    # YoWASP tools see a private /tmp: build under the repository, never under /tmp.
    report = synth("icebreaker", build_dir=BUILD)
    bitstream = Path(report["bitstream"])
    assert bitstream.is_file() and bitstream.stat().st_size > 0
    assert report["device"] == "iCE40UP5K"
    assert report["lanes"] == DEFAULT_LANES["icebreaker"]
    # (the blocks behind the bridge in the bridge's adapter order)
    assert report["blocks"][:2] == ["uart_core", "command_bridge"]
    assert sorted(report["blocks"][2:]) == sorted(DEFAULT_BLOCKS["icebreaker"])
    for name in ("lut", "ff", "bram", "dsp", "cells"):
        res = report["resources"][name]
        assert res["available"] > 0, name
        assert 0 <= res["used"] <= res["available"], name
    assert report["resources"]["lut"]["used"] > 0 and report["resources"]["ff"]["used"] > 0
    # The timing regression guard: the core clock nextpnr achieved is at least the PLL's.
    assert report["clock_mhz"] == default_mhz("icebreaker")
    assert report["meets_timing"], (report["fmax_mhz"], report["clock_mhz"])
    # Part by part (the same RTL synthesized module by module): every block, the bridge, the
    # UART and the board; the hard primitives (block RAM, SPRAM, DSP) are the top's own.
    parts = report["part_resources"]
    assert set(parts) == {"board", "uart_core", *report["blocks"]}
    assert all(parts[b]["lut"] > 0 for b in report["blocks"])
    for name in ("bram", "dsp"):
        assert sum(p[name] for p in parts.values()) == report["resources"][name]["used"], name
    assert parts["weight_store"]["spram"] == 2 and parts["magnitude_histogram"]["bram"] > 0
    saved = json.loads((BUILD / f"icebreaker_l{DEFAULT_LANES['icebreaker']}_w8"
                        / "report.json").read_text())
    assert saved["core_fmax_mhz"] == report["core_fmax_mhz"]


def test_a_top_that_does_not_fit_is_named_from_nextpnrs_log(tmp_path):
    """nextpnr's "Device utilisation" table is read back (a top it could not place raises
    DoesNotFit with it); the log is nextpnr's own wording, as the UP5K deploy top gave it."""
    log = tmp_path / "top.tim"
    log.write_text("Info: Device utilisation:\n"
                   "Info: \t         ICESTORM_LC:    7568/   5280   143%\n"
                   "Info: \t        ICESTORM_RAM:      28/     30    93%\n"
                   "Info: \t        ICESTORM_DSP:       8/      8   100%\n"
                   "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
                   "'ICESTORM_LC'\n")
    assert placement_utilisation(log) == {"ICESTORM_LC": (7568, 5280),
                                          "ICESTORM_RAM": (28, 30), "ICESTORM_DSP": (8, 8)}
    assert placement_utilisation(tmp_path / "missing.tim") == {}
    assert issubclass(DoesNotFit, ValueError)


def test_a_tops_default_clock_is_the_slowest_limit_of_its_blocks():
    """The default top runs at the board's clock, or lower where a block it holds sets a limit
    (BLOCK_MHZ); either way the UART divisor at 3 Mbit/s is exact."""
    from hwprune.hw.boards import BLOCK_MHZ, BOARDS, DEFAULT_BAUD, board_clock
    for board in BOARDS:
        limits = [BLOCK_MHZ[b][board] for b in DEFAULT_BLOCKS[board]
                  if board in BLOCK_MHZ.get(b, {})]
        assert default_mhz(board) == min([BOARDS[board][2], *limits])
        assert default_mhz(board, ()) == BOARDS[board][2]
        assert default_mhz(board, ("net_engine",)) == BLOCK_MHZ["net_engine"][board]
        _, f, cpb = board_clock(board)
        assert f == default_mhz(board) and cpb * DEFAULT_BAUD == f * 1e6
    # the UP5K's default top holds the histogram, at the board's 36 MHz
    assert "magnitude_histogram" in DEFAULT_BLOCKS["icebreaker"]
    assert default_mhz("icebreaker") == BOARDS["icebreaker"][2] == 36.0


def test_part_resources_go_to_the_block_whose_adapter_holds_them():
    """Modules are attributed by their place in the top's hierarchy: under the dispatcher's
    k-th adapter to the k-th block, the rest of the bridge to the bridge, and so on."""
    from hwprune.hw.boards import part_resources

    def module(lut, ram=0):
        return {"num_cells_by_type": {"SB_LUT4": lut, "SB_RAM40_4K": ram, "SB_DFFESR": 1}}
    stat = {"modules": {
        "\\top": module(1), "\\top.reset_sync": module(2),
        "\\top.core.uart_rx": module(4), "\\top.core.uart_tx": module(8),
        "\\top.core.bridge.parser": module(16), "\\top.core.bridge.dispatcher": module(32),
        "\\top.core.bridge.dispatcher.adapter0": module(64),
        "\\top.core.bridge.dispatcher.adapter0.unit": module(128, 3),
        "\\top.core.bridge.dispatcher.adapter1.mem": module(256, 1),
        "\\top.core.bridge.dispatcher.adapter10": module(512)}}
    blocks = ["threshold_engine", "weight_store", *(f"b{k}" for k in range(2, 11))]
    parts = part_resources(stat, "ice40", blocks)
    assert {k: (v["lut"], v["bram"], v["ff"]) for k, v in parts.items()} == {
        "board": (3, 0, 2), "uart_core": (12, 0, 2), "command_bridge": (48, 0, 2),
        "threshold_engine": (192, 3, 2), "weight_store": (256, 1, 1), "b10": (512, 0, 1)}


def test_the_ecp5_tops_reset_goes_through_a_global_buffer():
    """The ECP5 top drives its core's reset from a DCCA (a global buffer: nextpnr-ecp5 promotes
    clocks only); the iCE40's leaves it to nextpnr-ice40, which promotes it itself."""
    from hwprune.hw.boards import BOARDS, BoardTop
    for board, buffers in (("ulx3s", 1), ("icebreaker", 0)):
        top = BoardTop(board, lanes=4, width=8, blocks=["threshold_engine"])
        rtlil = BOARDS[board][0]().build(top, name="top", do_build=False).files["top.il"]
        assert rtlil.count("cell \\DCCA ") == buffers, board
        if buffers:
            # its output is the core's reset, its input the synchronised one
            cell = rtlil[rtlil.index("cell \\DCCA "):].split("end\n", 1)[0]
            assert "connect \\CLKO \\rst\n" in cell and "connect \\CLKI \\reset_rst" in cell
