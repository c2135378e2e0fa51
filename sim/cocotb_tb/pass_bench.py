"""A block-agnostic cocotb bench for stream-in / stream-out passes (N:M selector, channel norms).

:class:`PassBench` resets the block, strobes its ``clear`` input, streams a list of input payload
integers through ``i_stream`` with random pauses on both sides and collects the ``o_stream``
payloads; the block benches pack, unpack and score against the golden models.
"""

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hwprune.sim.cocotb_tb.streams import StreamSink, StreamSource, no_pauses, random_pauses

__all__ = ["PassBench", "pack_lanes", "field", "signed_field"]


def pack_lanes(rows, width):
    """Integers with ``rows[b][i]`` (two's complement) at bits ``i*width`` of beat ``b``."""
    mask = (1 << width) - 1
    out = []
    for row in rows:
        word = 0
        for i, v in enumerate(row):
            word |= (int(v) & mask) << (i * width)
        out.append(word)
    return out


def field(word, lo, bits):
    return (word >> lo) & ((1 << bits) - 1)


def signed_field(word, lo, bits):
    sign = 1 << (bits - 1)
    return (field(word, lo, bits) ^ sign) - sign


class PassBench:
    """Drive one block: reset, clear, stream a pass with pauses, collect the output payloads."""

    def __init__(self, dut, *, in_pause=0.0, out_pause=0.0, seed=0):
        self.dut = dut
        self.in_pause, self.out_pause, self.seed = in_pause, out_pause, seed
        self.source = self.sink = None

    @classmethod
    async def start(cls, dut, **kwargs):
        """Start the clock, idle every input and reset; return the bench."""
        Clock(dut.clk, 10, unit="ns").start()
        bench = cls(dut, **kwargs)
        dut.clear.value = 0
        dut.i_stream__valid.value = 0
        dut.o_stream__ready.value = 0
        await bench.reset()
        return bench

    async def reset(self, cycles=2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0

    async def clear(self):
        await RisingEdge(self.dut.clk)
        self.dut.clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.clear.value = 0

    def start_streams(self):
        def pauses(p, salt):
            return random_pauses(p, self.seed * 2 + salt) if p else no_pauses()
        self.source = StreamSource(self.dut, "i_stream", self.dut.clk, pauses(self.in_pause, 0))
        self.sink = StreamSink(self.dut, "o_stream", self.dut.clk, pauses(self.out_pause, 1))

    def stop_streams(self):
        self.source.stop()
        self.sink.stop()

    async def run_pass(self, payloads, outputs, *, max_cycles=None):
        """Stream ``payloads``; wait for ``outputs`` output beats; return (beats, cycles).

        ``cycles`` counts from the first beat offered to the last beat taken.
        """
        await self.clear()
        self.start_streams()
        self.source.queue.extend(payloads)
        limit = max_cycles or 64 * len(payloads) + 1000
        waited = 0
        while len(self.sink.received) < outputs or not self.source.idle:
            await RisingEdge(self.dut.clk)
            waited += 1
            assert waited <= limit, f"no progress: {len(self.sink.received)} of {outputs} out"
        await RisingEdge(self.dut.clk)
        self.stop_streams()
        await RisingEdge(self.dut.clk)
        # Nothing extra may come out once the pass is done.
        assert len(self.sink.received) == outputs
        if not payloads:
            return [], 0
        return self.sink.received, self.sink.last_take_cycle - self.source.first_offer_cycle + 1

    async def reset_mid_stream(self, payloads, sent):
        """Start streaming ``payloads``, reset after ``sent`` beats went in; check it empties."""
        await self.clear()
        self.start_streams()
        self.source.queue.extend(payloads)
        while self.source.sent < sent:
            await RisingEdge(self.dut.clk)
        self.stop_streams()
        await self.reset()
        assert int(self.dut.o_stream__valid.value) == 0
