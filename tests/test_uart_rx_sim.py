"""The UART receiver in Amaranth's simulator: where it samples and what it rejects.

The receiver samples every bit in its middle: a line whose level is right only on the middle
clock of each bit (and wrong on every other clock) still gives the byte, and a low pulse of
half a bit or less is a glitch, not a start bit. (A sample point one clock early passed every
byte-level test in a clean simulation; a real USB-UART's clock mismatch eats that margin.)
"""

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwprune.hw.uart import UARTRx


def run(cpb, levels, settle=4):
    """Drive ``rx`` with ``levels`` (one per clock, after ``settle`` idle clocks); return the
    bytes the receiver offered as ``(data, ferr)``."""
    dut = UARTRx(clocks_per_bit=cpb)
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    got = []

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for level in [1] * settle + list(levels) + [1] * (3 * cpb):
            ctx.set(dut.rx, level)
            await ctx.tick()
            if ctx.get(dut.o_stream.valid):
                got.append((ctx.get(dut.o_stream.payload.data), ctx.get(dut.o_stream.payload.ferr)))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def middle_only(byte, cpb):
    """An 8N1 frame whose data bits hold their value only on the clock the receiver samples
    (``cpb // 2`` clocks into the bit) and the opposite value on every other clock."""
    levels = [0] * cpb
    for i in range(8):
        bit = (byte >> i) & 1
        levels += [bit if c == cpb // 2 else 1 - bit for c in range(cpb)]
    return levels + [1] * cpb


@pytest.mark.parametrize("cpb", [4, 5, 8, 13])
@pytest.mark.parametrize("byte", [0x00, 0xFF, 0xA5, 0x3C])
def test_bits_are_sampled_in_their_middle(cpb, byte):
    assert run(cpb, middle_only(byte, cpb)) == [(byte, 0)]


@pytest.mark.parametrize("cpb", [4, 5, 8, 13])
def test_a_low_pulse_of_half_a_bit_is_a_glitch(cpb):
    frame = [0] * cpb + [(0x5A >> i) & 1 for i in range(8) for _ in range(cpb)] + [1] * cpb
    # The glitch (low for cpb // 2 clocks) is ignored; the frame after it arrives whole.
    assert run(cpb, [0] * (cpb // 2) + [1] * (2 * cpb) + frame) == [(0x5A, 0)]
    # Low for one clock more is a start bit (of a byte of ones).
    assert run(cpb, [0] * (cpb // 2 + 1) + [1] * (11 * cpb)) == [(0xFF, 0)]
