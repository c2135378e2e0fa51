"""The formal harness: one block, free inputs, and the checks one property adds.

A :class:`Harness` instantiates a block's component (from its description), resets it in the
first cycle, and drives every input port from ``AnySeq`` (a value the solver picks anew every
cycle) unless the property drives it. The property's ``build(m, dut, env)`` then adds
``Assume``s (what a well-behaved environment does) and ``Assert``s (what the block promises).
:class:`Env` holds the pieces most properties use: the stream rules on both sides, the cycle
count since reset, registered copies of signals, beat counters, and the tracking of one
arbitrary beat (``AnyConst``) from the input to the output, which proves order and
once-only delivery for every beat at once.
"""

from amaranth import *
from amaranth.asserts import AnyConst, AnySeq, Initial
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import wiring

__all__ = ["Harness", "Env"]


class Env:
    """Helpers bound to one harness module ``m``."""

    def __init__(self, m, rst):
        self.m, self.rst = m, rst
        self.driven = set()
        self.covers = 0
        #: cycles since reset, saturating (a property may need "from cycle 2 on")
        self.cycle = Signal(8)
        m.d.sync += self.cycle.eq(self.cycle + (self.cycle != 255))
        #: high from the first cycle after reset
        self.live = Signal()
        m.d.comb += self.live.eq(~rst & (self.cycle != 0))

    def reach(self, condition):
        """A state the property's assertions are about, which must be reachable within the
        depth (checked in a cover run: an assertion that never triggers proves nothing)."""
        self.covers += 1
        self.m.d.comb += Cover(condition)

    def drive(self, port, value):
        """Drive input ``port`` with ``value`` (instead of ``AnySeq``)."""
        self.driven.add(id(port))
        self.m.d.comb += Value.cast(port).eq(value)

    def const(self, port):
        """Hold input ``port`` at one value the solver picks (``AnyConst``); return it."""
        value = AnyConst(len(Value.cast(port)))
        self.drive(port, value)
        return value

    def past(self, value, init=0):
        """``value`` one clock ago (``init`` in the first cycle). Call it outside any
        ``m.If``: the register must load every cycle."""
        reg = Signal(len(Value.cast(value)), init=init)
        self.m.d.sync += reg.eq(value)
        return reg

    def fire(self, stream):
        return stream.valid & stream.ready

    def stalled_before(self, stream):
        """The stream offered a beat last cycle that was not taken (and no reset since)."""
        return self.live & self.past(stream.valid & ~stream.ready & ~self.rst)

    def assume_source(self, stream):
        """The environment offers nothing before the first cycle after reset, and keeps an
        offered beat (valid and payload) until it is taken."""
        stalled, before = self.stalled_before(stream), self.past(stream.payload)
        with self.m.If(~self.live):
            self.m.d.comb += Assume(~stream.valid)
        with self.m.If(stalled):
            self.m.d.comb += [Assume(stream.valid),
                              Assume(Value.cast(stream.payload) == before)]

    def assert_sink(self, stream):
        """The block keeps an offered beat (valid and payload) until it is taken."""
        stalled, before = self.stalled_before(stream), self.past(stream.payload)
        with self.m.If(stalled):
            self.m.d.comb += [Assert(stream.valid),
                              Assert(Value.cast(stream.payload) == before)]

    def one_pass(self, dut):
        """One pass of a stream block: ``clear`` once, in the first cycle after reset, with no
        input before it; every input stream obeys the stream rules."""
        self.drive(dut.clear, self.cycle == 1)
        for s in dut.description.inputs:
            stream = getattr(dut, s.name)
            with self.m.If(self.cycle <= 1):
                self.m.d.comb += Assume(~stream.valid)
            self.assume_source(stream)

    def counter(self, event, width=8):
        """Count ``event`` since reset (saturating at ``2**width - 1``)."""
        count = Signal(width)
        with self.m.If(event & (count != 2 ** width - 1)):
            self.m.d.sync += count.eq(count + 1)
        return count

    def track(self, stream, count):
        """Record the payload of the beat number ``n`` (an ``AnyConst``) of ``stream``, whose
        handshakes ``count`` counts. Returns ``(n, seen, payload)``: ``seen`` is high once that
        beat went through, ``payload`` holds it from the next cycle on."""
        n = AnyConst(len(count))
        seen = Signal()
        payload = Signal(len(Value.cast(stream.payload)))
        with self.m.If(self.fire(stream) & (count == n) & ~seen):
            self.m.d.sync += [seen.eq(1), payload.eq(stream.payload)]
        return n, seen, payload


class Harness(Elaboratable):
    """Block ``block`` with ``params``, reset in the first cycle, under ``build``'s checks."""

    def __init__(self, block, params, build, factory=None):
        self.block, self.params, self.build, self.factory = block, params, build, factory
        # The clock is the one port: a clock yosys sees as undriven would be a constant, and
        # its flip-flops constants too.
        self.domain = ClockDomain("sync")
        self.ports = [self.domain.clk]

    def elaborate(self, platform):
        from hwprune.hw import component

        m = Module()
        m.domains.sync = cd = self.domain
        m.d.comb += cd.rst.eq(Initial())
        # The block's component, or a part of it (``factory``: the bridge's parser, encoder).
        dut = (self.factory or (lambda **p: component(self.block, **p)))(**self.params)
        m.submodules.dut = dut
        env = Env(m, cd.rst)
        self.build(m, dut, env)
        self.covers = env.covers
        for path, member, value in dut.signature.flatten(dut):
            if member.flow == wiring.In and id(value) not in env.driven:
                m.d.comb += Value.cast(value).eq(AnySeq(len(Value.cast(value))))
        return m
