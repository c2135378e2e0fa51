"""What the build tools are given: the simulation Verilog's memory initialisers
(sim.build.sim_verilog), the board flow's read-during-write declaration (hw.boards.no_rw_check),
and the cocotb simulator cache's key (sim.cocotb_run.simulator_dir)."""

import json
import os
import re
import subprocess
from pathlib import Path

from amaranth import *
from amaranth.back import rtlil, verilog
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwprune.hw.boards import no_rw_check, setup_toolchain
from hwprune.hw.component import NO_RW_CHECK
from sim.build import sim_verilog

# YoWASP tools see a private /tmp: build under the repository, never under /tmp.
BUILD = Path(__file__).resolve().parent.parent / "build" / "memories"


#: (name, attrs, transparent read port, initial contents) of each memory of a test design
SPECS = (("marked", NO_RW_CHECK, False, []), ("plain", None, False, []),
         ("bypass", None, True, []), ("lookup", None, False, [1, 2, 3] * 85))


class _Memories(wiring.Component):
    """16 x 256 memories, one write port and one read port each, their read data side by side:
    by default one marked NO_RW_CHECK, a plain one, one with a transparent read port and one
    with non-zero initial contents."""

    def __init__(self, specs=SPECS):
        self.specs = specs
        super().__init__({"wa": In(8), "wd": In(16), "we": In(1), "ra": In(8),
                          "rd": Out(16 * len(specs))})

    def elaborate(self, platform):
        m = Module()
        outs = []
        for name, attrs, transparent, init in self.specs:
            mem = Memory(shape=16, depth=256, init=init, attrs=attrs)
            m.submodules[name] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,) if transparent else ())
            m.d.comb += [wp.addr.eq(self.wa), wp.data.eq(self.wd), wp.en.eq(self.we),
                         rp.addr.eq(self.ra)]
            outs.append(rp.data)
        m.d.comb += self.rd.eq(Cat(*outs))
        return m


def _collision_masks(text):
    """MEMID -> COLLISION_X_MASK of every $memrd_v2 cell in RTLIL ``text``."""
    masks = {}
    for cell in re.findall(r"cell \$memrd_v2 .*?\n  end", text, re.S):
        memid = re.search(r'parameter \\MEMID "\\\\(\w+)"', cell).group(1)
        masks[memid] = re.search(r"parameter \\COLLISION_X_MASK (\S+)", cell).group(1)
    return masks


def test_only_the_marked_memorys_read_port_is_declared_dont_care_on_a_collision():
    text = rtlil.convert(_Memories(), name="top")
    assert _collision_masks(text) == {"marked": "1'0", "plain": "1'0", "bypass": "1'0",
                                      "lookup": "1'0"}
    patched = no_rw_check(text)
    assert _collision_masks(patched) == {"marked": "1'1", "plain": "1'0", "bypass": "1'0",
                                         "lookup": "1'0"}
    # nothing else changes
    assert patched.replace("COLLISION_X_MASK 1'1", "COLLISION_X_MASK 1'0") == text


def test_the_marked_memory_maps_to_block_ram_without_read_first_logic():
    """yosys (synth_ice40) on the patched RTLIL: the marked memory is a block RAM and nothing
    else; the same memory unmarked needs flip-flops around it (read-first emulation)."""
    setup_toolchain()
    BUILD.mkdir(parents=True, exist_ok=True)

    def cells(marked):
        design = _Memories([("mem", NO_RW_CHECK if marked else None, False, [])])
        name = "marked" if marked else "plain"
        (BUILD / f"{name}.il").write_text(no_rw_check(rtlil.convert(design, name="top")))
        # YoWASP tools see a private /tmp: relative paths inside the folder
        subprocess.run([os.environ["YOSYS"], "-q", "-p",
                        f"read_rtlil {name}.il; synth_ice40 -top top; "
                        f"tee -q -o {name}.json stat -json"],
                       cwd=BUILD, check=True, capture_output=True)
        stat = json.loads((BUILD / f"{name}.json").read_text())
        return stat["design"]["num_cells_by_type"]

    marked, plain = cells(True), cells(False)
    assert marked.get("SB_RAM40_4K") == 1 and plain.get("SB_RAM40_4K") == 1
    ffs = lambda c: sum(v for k, v in c.items() if k.startswith("SB_DFF"))
    assert ffs(marked) == 0, marked
    assert ffs(plain) > 16, plain


def test_sim_verilog_writes_zero_initialisers_as_loops_and_keeps_the_rest():
    text = verilog.convert(_Memories(), name="top")
    out = sim_verilog(text)
    for name in ("marked", "plain", "bypass"):
        assert f"{name}[0] = 16'h0000;" in text and f"{name}[255] = 16'h0000;" in text
        assert f"{name}[0] =" not in out
        assert re.search(rf"initial for \((\w+) = 0; \1 < 256; \1 = \1 \+ 1\) {name}\[\1\] = "
                         rf"16'h0000;", out), name
    # non-zero contents stay word by word
    assert "lookup[1] = 16'h0002;" in out and "lookup[254] = 16'h0003;" in out
    assert len(out.splitlines()) < len(text.splitlines()) - 700


def test_a_cocotb_simulator_is_cached_per_environment(tmp_path, monkeypatch):
    """The simulator loads cocotb's VPI library from the environment that built it: another
    cocotb installation (another virtual environment) gets its own build, not that one."""
    import cocotb

    from sim.cocotb_run import simulator_dir
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(tmp_path))
    vfile = tmp_path / "block.v"
    vfile.write_text("module block; endmodule\n")
    here = simulator_dir("block", vfile)
    assert here == simulator_dir("block", vfile)          # stable
    monkeypatch.setattr(cocotb, "__file__", str(tmp_path / "other-venv" / "cocotb" /
                                                "__init__.py"))
    assert simulator_dir("block", vfile) != here
