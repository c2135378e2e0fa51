"""The board's UART core verilated with a C++ serial-line shim (``sim/shim/uart_core.cpp``).

Built, like every block, by :func:`hwprune.sim.build.shared_library` and
:mod:`hwprune.sim.cocotb_run` (``uart_core`` and ``command_bridge`` are in
:data:`hwprune.hw.BLOCKS`).
"""

import ctypes

import numpy as np

from ..contract.protocol import UART_CORE
from .build import shared_library
from .verilator_lib import BlockLib
from .cocotb_run import cocotb_test

__all__ = ["SIM_CLOCKS_PER_BIT", "sim_timeout", "UartCoreLib", "bridge_cocotb_test"]

#: Clocks per UART bit in simulation (the board uses clock / baud rate).
SIM_CLOCKS_PER_BIT = 4


def sim_timeout(clocks_per_bit):
    """The bridge's idle timeout in simulation: 50 byte times."""
    return 500 * clocks_per_bit


_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")


class UartCoreLib(BlockLib):
    """One verilated UART core; the host's serial line is played by the C++ shim."""

    prefix = "us"

    def __init__(self, *, lanes, width, clocks_per_bit=SIM_CLOCKS_PER_BIT, timeout=None,
                 blocks=0, hist_banks=0):
        timeout = timeout or sim_timeout(clocks_per_bit)
        self.params = UART_CORE.check(lanes=lanes, width=width, clocks_per_bit=clocks_per_bit,
                                      timeout=timeout, blocks=blocks, hist_banks=hist_banks)
        self.lanes, self.width, self.clocks_per_bit = lanes, width, clocks_per_bit
        self.timeout = timeout
        self._load(lambda: shared_library(UART_CORE.name, UART_CORE.shim, **self.params))

    def _declare(self, lib):
        vp = ctypes.c_void_p
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
        lib.us_set_skew.argtypes = [vp, ctypes.c_int32]
        lib.us_set_faults.argtypes = [vp, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
        lib.us_reset_device_after.argtypes = [vp, ctypes.c_uint64]
        lib.us_faults.argtypes = [vp, np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")]
        got = (lib.us_lanes(), lib.us_width(), lib.us_clocks_per_bit(), lib.us_timeout())
        if got != (self.lanes, self.width, self.clocks_per_bit, self.timeout):
            raise RuntimeError(f"stale library {self.path}: built for {got}")

    def set_link(self, up):
        """Connect (True) or pull (False) the host-to-device line."""
        self._lib.us_set_link(self._handle, int(bool(up)))

    def set_gaps(self, probability, seed=1):
        """Idle gaps of random length after a byte, with this probability (host-side stalls)."""
        self._lib.us_set_gaps(self._handle, int(round(probability * 100)), int(seed))

    def set_skew(self, fraction):
        """The host's clock off by ``fraction`` (``0.02``: its bits 2 % longer than the
        device's; ``-0.02``: 2 % shorter), on both of its lines."""
        self._lib.us_set_skew(self._handle, int(round(fraction * 1e6)))

    def set_faults(self, *, ber=0.0, drop=0.0, seed=7):
        """Flip each bit on either line with probability ``ber`` and lose each byte with
        probability ``drop`` (resolution: one in a million)."""
        self._lib.us_set_faults(self._handle, int(round(ber * 1e6)), int(round(drop * 1e6)),
                                int(seed))

    def reset_device_after(self, cycles):
        """Reset the device (its registers, not the host's line) ``cycles`` clocks from now."""
        self._lib.us_reset_device_after(self._handle, int(cycles))

    @property
    def faults(self):
        """Faults injected so far: ``{"flips", "drops", "resets"}``."""
        out = np.zeros(3, dtype=np.uint64)
        self._lib.us_faults(self._handle, out)
        return {"flips": int(out[0]), "drops": int(out[1]), "resets": int(out[2])}

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


def bridge_cocotb_test(test_module, *, testcase=None, extra_env=None, **params):
    """Run cocotb tests of ``test_module`` on the command bridge; return (tests, failed)."""
    return cocotb_test("command_bridge", test_module, testcase=testcase, extra_env=extra_env,
                       **params)
