"""The board's UART core verilated with a C++ serial-line shim (``sim/shim/uart_core.cpp``).

Verilog and shared libraries are cached by content hash like :mod:`hwprune.sim.build`'s; the
cocotb bench of the command bridge is built here too.
"""

import ctypes
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from filelock import FileLock

from .build import (SHIM_DIR, VERILATOR_WARNINGS, BuildError, _compiler, _digest,
                    _hw_sources_digest, cache_dir, setup_verilator)

__all__ = ["SIM_CLOCKS_PER_BIT", "sim_timeout", "core_verilog", "UartCoreLib",
           "bridge_cocotb_build", "bridge_cocotb_test"]

#: Clocks per UART bit in simulation (the board uses clock / baud rate).
SIM_CLOCKS_PER_BIT = 4


def sim_timeout(clocks_per_bit):
    """The bridge's idle timeout in simulation: 50 byte times."""
    return 500 * clocks_per_bit


def _tops():
    from hwprune.hw.bridge import CommandBridge, UARTCore
    return {"uart_core": UARTCore, "command_bridge": CommandBridge}


def core_verilog(top, **params):
    """Path of the cached Verilog of ``top`` ("uart_core" or "command_bridge") with ``params``."""
    from amaranth.back import verilog
    out_dir = cache_dir() / "verilog"
    out_dir.mkdir(exist_ok=True)
    key = _digest(_hw_sources_digest(), top, json.dumps(params, sort_keys=True))
    path = out_dir / f"{top}-{key}.v"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            text = verilog.convert(_tops()[top](**params), name=top, emit_src=False)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return path


def _shared_library(**params):
    verilator = setup_verilator()
    cxx = _compiler()
    vfile = core_verilog("uart_core", **params)
    shim = SHIM_DIR / "uart_core.cpp"
    macros = {k.upper(): v for k, v in params.items() if k != "fifo_depth"}
    key = _digest(vfile.read_bytes(), shim.read_bytes(), (SHIM_DIR / "ports.h").read_bytes(),
                  json.dumps(macros, sort_keys=True), verilator.parent.parent.name,
                  sys.version_info[:2], cxx)
    build_dir = cache_dir() / "lib" / f"uart_core-{key}"
    lib = build_dir / "libuart_core.so"
    with FileLock(str(build_dir) + ".lock"):
        if lib.exists():
            return lib
        if build_dir.exists():
            shutil.rmtree(build_dir)
        cflags = " ".join(["-O2", "-fPIC", f"-I{SHIM_DIR}"] +
                          [f"-D{k}={v}" for k, v in sorted(macros.items())])
        cmd = [str(verilator), "--cc", "--build", "-O3", *VERILATOR_WARNINGS,
               "--top-module", "uart_core", "--x-assign", "fast", "--x-initial", "fast",
               str(vfile), str(shim), "-CFLAGS", cflags, "-LDFLAGS", "-shared",
               "--lib-create", "uart_core", "-Mdir", str(build_dir),
               "-j", str(os.cpu_count() or 2)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, CXX=cxx))
        if proc.returncode != 0 or not lib.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            raise BuildError(f"Verilator build of uart_core {params} failed "
                             f"(exit {proc.returncode}):\n{tail}")
    return lib


_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")


class UartCoreLib:
    """One verilated UART core; the host's serial line is played by the C++ shim."""

    def __init__(self, *, lanes, width, clocks_per_bit=SIM_CLOCKS_PER_BIT, timeout=None):
        self.lanes, self.width, self.clocks_per_bit = lanes, width, clocks_per_bit
        self.timeout = timeout or sim_timeout(clocks_per_bit)
        self.path = _shared_library(lanes=lanes, width=width, clocks_per_bit=clocks_per_bit,
                                    timeout=self.timeout)
        lib = ctypes.CDLL(str(self.path))
        vp = ctypes.c_void_p
        lib.us_create.restype = vp
        for name in ("us_destroy", "us_reset"):
            getattr(lib, name).argtypes = [vp]
        lib.us_set_link.argtypes = [vp, ctypes.c_int]
        lib.us_set_gaps.argtypes = [vp, ctypes.c_uint32, ctypes.c_uint32]
        lib.us_cycles.argtypes = lib.us_framing_errors.argtypes = lib.us_leds.argtypes = [vp]
        lib.us_cycles.restype = lib.us_framing_errors.restype = ctypes.c_uint64
        lib.us_timeout.restype = ctypes.c_int64
        lib.us_send.argtypes = [vp, _u8p, ctypes.c_int64, ctypes.c_int]
        lib.us_recv.argtypes = [vp, _u8p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
        lib.us_recv.restype = ctypes.c_int64
        lib.us_drain.argtypes = [vp, ctypes.c_int64, ctypes.c_int64]
        lib.us_drain.restype = ctypes.c_int64
        assert (lib.us_lanes(), lib.us_width(), lib.us_clocks_per_bit(), lib.us_timeout()) == \
            (lanes, width, clocks_per_bit, self.timeout), "stale library"
        self._lib = lib
        self._handle = lib.us_create()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.us_destroy(self._handle)
            self._handle = None

    def reset(self):
        self._lib.us_reset(self._handle)

    def set_link(self, up):
        """Connect (True) or pull (False) the host-to-device line."""
        self._lib.us_set_link(self._handle, int(bool(up)))

    def set_gaps(self, probability, seed=1):
        """Idle gaps of random length after a byte, with this probability (host-side stalls)."""
        self._lib.us_set_gaps(self._handle, int(round(probability * 100)), int(seed))

    @property
    def cycles(self):
        return int(self._lib.us_cycles(self._handle))

    @property
    def leds(self):
        """(busy, error) status outputs."""
        v = self._lib.us_leds(self._handle)
        return bool(v & 1), bool(v & 2)

    @property
    def framing_errors(self):
        """Answer bytes whose stop bit the host saw low."""
        return int(self._lib.us_framing_errors(self._handle))

    def send(self, data, *, bad_stop=False):
        buf = np.frombuffer(bytes(data), dtype=np.uint8).copy()
        self._lib.us_send(self._handle, buf, buf.size, int(bad_stop))

    def recv(self, n, *, idle_cycles, max_cycles=0):
        out = np.empty(max(n, 1), dtype=np.uint8)
        got = self._lib.us_recv(self._handle, out, n, idle_cycles, max_cycles)
        return out[:got].tobytes()

    def drain(self, *, idle_cycles, max_cycles=0):
        """Run until both lines are quiet; return the bytes dropped (-1: hit max_cycles)."""
        return int(self._lib.us_drain(self._handle, idle_cycles, max_cycles))


def bridge_cocotb_build(**params):
    """Build (once) the cocotb simulator of the command bridge; return its build folder."""
    from cocotb_tools.runner import get_runner
    setup_verilator()
    vfile = core_verilog("command_bridge", **params)
    build_dir = cache_dir() / "cocotb" / vfile.stem
    with FileLock(str(build_dir) + ".lock"):
        if not (build_dir / ".built").exists():
            try:
                get_runner("verilator").build(
                    sources=[vfile], hdl_toplevel="command_bridge", build_dir=build_dir,
                    build_args=[*VERILATOR_WARNINGS, "-O3", "--x-assign", "fast",
                                "--x-initial", "fast"], always=True)
            except (subprocess.CalledProcessError, SystemExit) as exc:
                raise BuildError(f"cocotb build of command_bridge {params} failed: {exc}") \
                    from exc
            (build_dir / ".built").touch()
    return build_dir


def bridge_cocotb_test(test_module, *, testcase=None, extra_env=None, **params):
    """Run cocotb tests of ``test_module`` on the command bridge; return (tests, failed)."""
    from cocotb_tools.runner import get_results, get_runner
    build_dir = bridge_cocotb_build(**params)
    test_dir = build_dir / "run"
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / f"results-{os.getpid()}.xml"
    env = {"PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "")}
    env.update(extra_env or {})
    try:
        get_runner("verilator").test(
            test_module=test_module, hdl_toplevel="command_bridge", hdl_toplevel_lang="verilog",
            testcase=testcase, build_dir=build_dir, test_dir=test_dir,
            results_xml=str(results), extra_env=env)
    except SystemExit as exc:
        if not results.exists():
            raise RuntimeError(f"cocotb simulation of command_bridge failed (exit {exc.code})") \
                from exc
    try:
        return get_results(results)
    finally:
        results.unlink(missing_ok=True)
