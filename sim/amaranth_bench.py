"""Helpers for unit tests in Amaranth's own simulator: a block with a tile input stream and an
output stream, driven by one async testbench with random stalls on both sides.
"""

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["tile_payload", "simulate", "reset_mid_stream", "stream_beats", "stream_pass"]


def tile_payload(tiles, lane_valid, beat, **extra):
    """The TileLayout payload of one beat (plus any ``extra`` fields)."""
    lanes = len(tiles[beat])
    return {"data": [int(v) for v in tiles[beat]],
            "lane_valid": int(sum(1 << i for i in range(lanes) if lane_valid[beat, i])),
            **extra}


def simulate(dut, bench):
    """Run ``bench(ctx, rst)`` on ``dut`` in an explicit ``sync`` domain whose reset it drives."""
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut

    async def testbench(ctx):
        await bench(ctx, sync.rst)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


async def reset_mid_stream(ctx, dut, rst, drive, count, rng):
    """Stream ``count`` beats (outputs thrown away, as a host does when it restarts a pass), then
    reset the domain for two clocks and check the output is empty."""
    sent = 0
    while sent < count:
        ctx.set(dut.i_stream.valid, 1)
        drive(ctx, sent)
        ctx.set(dut.o_stream.ready, rng.random() < 0.5)
        _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
        sent += ready
    ctx.set(dut.o_stream.ready, 0)
    ctx.set(dut.i_stream.valid, 0)
    ctx.set(rst, 1)
    await ctx.tick()
    await ctx.tick()
    ctx.set(rst, 0)
    assert not ctx.get(dut.o_stream.valid)


async def stream_beats(ctx, dut, beats, drive, take, done, rng, in_stall, out_stall):
    """Offer ``beats`` input beats and take output beats with random stalls on both streams.

    ``drive(ctx, b)`` puts beat ``b`` on the input payload, ``take(payload)`` receives each output
    beat, ``done()`` says when all outputs are in. Returns the clock cycles used.
    """
    sent = cycles = 0
    while not done():
        offer = sent < beats and rng.random() >= in_stall
        ready = rng.random() >= out_stall
        ctx.set(dut.i_stream.valid, offer)
        if offer:
            drive(ctx, sent)
        ctx.set(dut.o_stream.ready, ready)
        _, _, i_ready, o_valid, payload = await ctx.tick().sample(
            dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
        cycles += 1
        sent += bool(offer and i_ready)
        if o_valid and ready:
            take(payload)
        assert cycles < 20 * beats + 100, "block stopped making progress"
    ctx.set(dut.i_stream.valid, 0)
    ctx.set(dut.o_stream.ready, 0)
    await ctx.tick()
    return cycles


def stream_pass(dut, beats, drive, take, done, *, configure=None, counters=(), rng,
                in_stall=0.0, out_stall=0.0, reset_after=None):
    """Simulate one pass of a block with a ``clear`` strobe; return (cycles, counters).

    ``configure(ctx)`` sets the block's configuration ports before ``clear`` is strobed. With
    ``reset_after=n`` the domain is reset after ``n`` input beats (beats still in the pipeline)
    and the pass restarts from the first beat, as a host does. ``counters`` names the ports read
    at the end of the pass.
    """
    result = {}

    async def start(ctx):
        if configure:
            configure(ctx)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)

    async def bench(ctx, rst):
        await start(ctx)
        if reset_after is not None:
            await reset_mid_stream(ctx, dut, rst, drive, reset_after, rng)
            await start(ctx)
        result["cycles"] = await stream_beats(ctx, dut, beats, drive, take, done, rng,
                                              in_stall, out_stall)
        result["counters"] = {name: ctx.get(getattr(dut, name)) for name in counters}

    simulate(dut, bench)
    return result["cycles"], result["counters"]
