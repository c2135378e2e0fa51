"""cocotb 2.x stream components: a valid/ready source, a sink, and pause generators.

Every cycle each component writes its side of the handshake right after the rising edge, then
samples the settled values in ``ReadOnly``: a transfer happens at the next edge exactly when
``valid and ready`` were seen there. Pause generators inject idle cycles (source) and
backpressure (sink), as cocotbext-axi's ``set_pause_generator`` does.
"""

import itertools
import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "random_pauses", "no_pauses"]


def random_pauses(probability, seed):
    """Endless booleans: True (pause this cycle) with the given probability."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


def no_pauses():
    return itertools.repeat(False)


class StreamSource:
    """Drive ``<prefix>__valid`` / ``__payload`` from a queue of payload integers."""

    def __init__(self, dut, prefix, clk, pauses=None):
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._clk = clk
        self._pauses = pauses or no_pauses()
        self.queue = []
        self.sent = 0
        self.first_offer_cycle = None
        self._valid.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        cycle = 0
        while True:
            await RisingEdge(self._clk)
            cycle += 1
            offer = self.sent < len(self.queue) and not next(self._pauses)
            self._valid.value = int(offer)
            if offer:
                self._payload.value = self.queue[self.sent]
                if self.first_offer_cycle is None:
                    self.first_offer_cycle = cycle
            await ReadOnly()
            if offer and int(self._ready.value):
                self.sent += 1

    @property
    def idle(self):
        return self.sent == len(self.queue)

    def stop(self):
        self._task.cancel()
        self._valid.value = 0


class StreamSink:
    """Take beats from ``<prefix>__valid`` / ``__payload`` with backpressure on ``__ready``."""

    def __init__(self, dut, prefix, clk, pauses=None, callback=None):
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._clk = clk
        self._pauses = pauses or no_pauses()
        self._callback = callback
        self.received = []
        self.cycle = 0
        self.last_take_cycle = None
        self._ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self._clk)
            self.cycle += 1
            take = not next(self._pauses)
            self._ready.value = int(take)
            await ReadOnly()
            if take and int(self._valid.value):
                beat = int(self._payload.value)
                self.received.append(beat)
                self.last_take_cycle = self.cycle
                if self._callback:
                    self._callback(beat)

    def stop(self):
        self._task.cancel()
        self._ready.value = 0
