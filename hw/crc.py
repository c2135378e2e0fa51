"""Byte-at-a-time CRC update logic, derived symbolically (GF(2) linear algebra) from the polynomial.

The three CRCs of the UART command protocol (docs/uart_protocol.md) and their host-side twins:

========  =======================  ==========  ==========  ==========================
name      poly / bit order         init        final xor   host function
========  =======================  ==========  ==========  ==========================
CRC-8     0x07, MSB first          0xFF        none        ``hwprune.uart.crc8``
CRC-16    0x1021, MSB first        0xFFFF      none        ``binascii.crc_hqx(b, 0xFFFF)``
CRC-32    0x04C11DB7, LSB first    0xFFFFFFFF  0xFFFFFFFF  ``zlib.crc32``
========  =======================  ==========  ==========  ==========================

The hardware keeps the un-finalised register; :data:`CRC32` users xor the final value themselves.
"""

from amaranth.hdl import Cat, Const, Value

__all__ = ["CrcSpec", "CRC8", "CRC16", "CRC32", "crc_next"]


class CrcSpec:
    """A CRC: register ``width``, polynomial ``poly`` (normal form), bit order, ``init``."""

    def __init__(self, *, width, poly, init, lsb_first):
        self.width, self.poly, self.init, self.lsb_first = width, poly, init, lsb_first
        self._matrix = self._derive()

    def _derive(self):
        # Each bit is a set of source indices XORed together: 0..width-1 are the register bits,
        # width..width+7 the data byte's bits. Sets XOR by symmetric difference.
        w = self.width
        reg = [frozenset([i]) for i in range(w)]
        data_bits = [frozenset([w + j]) for j in range(8)]
        if self.lsb_first:
            rpoly = int(f"{self.poly:0{w}b}"[::-1], 2)  # reflected polynomial
            for j in range(8):  # data LSB first
                fb = reg[0] ^ data_bits[j]
                reg = reg[1:] + [frozenset()]
                reg = [r ^ fb if (rpoly >> i) & 1 else r for i, r in enumerate(reg)]
        else:
            for j in reversed(range(8)):  # data MSB first
                fb = reg[w - 1] ^ data_bits[j]
                reg = [frozenset()] + reg[:-1]
                reg = [r ^ fb if (self.poly >> i) & 1 else r for i, r in enumerate(reg)]
        return reg

    def next(self, crc, byte):
        """The register after ``byte`` (an 8-bit value) is shifted into ``crc`` (a Value)."""
        crc, byte = Value.cast(crc), Value.cast(byte)
        sources = [crc[i] for i in range(self.width)] + [byte[j] for j in range(8)]
        bits = []
        for terms in self._matrix:
            acc = Const(0, 1)
            for t in sorted(terms):
                acc = acc ^ sources[t]
            bits.append(acc)
        return Cat(*bits)

    def software(self, data, crc=None):
        """Reference bitwise model of :meth:`next` over ``data`` (bytes), for tests."""
        crc = self.init if crc is None else crc
        w, mask = self.width, (1 << self.width) - 1
        rpoly = int(f"{self.poly:0{w}b}"[::-1], 2)
        for byte in data:
            if self.lsb_first:
                crc ^= byte
                for _ in range(8):
                    crc = (crc >> 1) ^ (rpoly if crc & 1 else 0)
            else:
                crc ^= byte << (w - 8)
                for _ in range(8):
                    crc = ((crc << 1) ^ (self.poly if crc >> (w - 1) else 0)) & mask
        return crc


CRC8 = CrcSpec(width=8, poly=0x07, init=0xFF, lsb_first=False)
CRC16 = CrcSpec(width=16, poly=0x1021, init=0xFFFF, lsb_first=False)
CRC32 = CrcSpec(width=32, poly=0x04C11DB7, init=0xFFFFFFFF, lsb_first=True)


def crc_next(spec, crc, byte):
    """Shorthand for ``spec.next(crc, byte)``."""
    return spec.next(crc, byte)
