"""The bridge's two-entry register stage (``SkidQueue``) in Amaranth's simulator: under random
stalls on both sides every beat comes out once, in order, and neither side's handshake reaches
the other within a clock (its ``valid`` and ``ready`` follow its count alone)."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwprune.hw.framing import PayloadByte, SkidQueue


def run(seed, beats, p_valid, p_ready):
    rng = random.Random(seed)
    dut = SkidQueue(PayloadByte)
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    got, checks, when = [], [], []

    async def bench(ctx):
        k = 0
        for clock in range(40 * len(beats) + 50):
            offer = k < len(beats) and rng.random() < p_valid
            take = rng.random() < p_ready
            ctx.set(dut.i.valid, offer)
            if offer:
                data, ferr, timeout = beats[k]
                ctx.set(dut.i.payload, {"data": data, "ferr": ferr, "timeout": timeout})
            ctx.set(dut.o.ready, take)
            # Registered handshakes: the queue's ready does not follow this clock's o.ready,
            # nor its valid this clock's i.valid.
            i_ready, o_valid = ctx.get(dut.i.ready), ctx.get(dut.o.valid)
            ctx.set(dut.o.ready, not take)
            ctx.set(dut.i.valid, not offer)
            checks.append((i_ready, o_valid) == (ctx.get(dut.i.ready), ctx.get(dut.o.valid)))
            ctx.set(dut.o.ready, take)
            ctx.set(dut.i.valid, offer)
            if o_valid and take:
                p = ctx.get(dut.o.payload)
                got.append((p["data"], p["ferr"], p["timeout"]))
                when.append(clock)
            if offer and i_ready:
                k += 1
            await ctx.tick()
        assert k == len(beats), f"seed {seed}: only {k} of {len(beats)} beats taken"

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, checks, when


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.9, 0.4), (0.3, 0.9), (0.6, 0.6)])
def test_every_beat_comes_out_once_in_order_under_random_stalls(seed, p_valid, p_ready):
    rng = random.Random(seed)
    beats = [(rng.choice([0, 0xFF, 0x80, rng.randrange(256)]), rng.random() < 0.2,
              rng.random() < 0.1) for _ in range(60)]
    got, checks, _ = run(seed, beats, p_valid, p_ready)
    assert got == beats, f"seed {seed}"
    assert all(checks), f"seed {seed}: a handshake followed the other side's"


def test_it_streams_a_beat_every_clock():
    beats = [(k, 0, 0) for k in range(20)]
    got, _, when = run(0, beats, 1.0, 1.0)
    assert got == beats
    assert when == list(range(1, 21))      # one clock in, then a beat every clock
