"""The UART protocol's CRCs in hardware: ``amaranth.lib.crc`` processors built from the
contract's definitions (:mod:`hwprune.contract.protocol`), the same definitions the host uses.

========  =======================  ==========  ==========  ==========================
name      poly / bit order         init        final xor   host function
========  =======================  ==========  ==========  ==========================
CRC-8     0x07, MSB first          0xFF        none        ``hwprune.uart.crc8``
CRC-16    0x1021, MSB first        0xFFFF      none        ``binascii.crc_hqx(b, 0xFFFF)``
CRC-32    0x04C11DB7, LSB first    0xFFFFFFFF  0xFFFFFFFF  ``zlib.crc32``
========  =======================  ==========  ==========  ==========================
"""

from amaranth.lib import crc

from ..contract.protocol import CRC8_DEF, CRC16_DEF, CRC32_DEF

__all__ = ["parameters", "processor", "CRC8", "CRC16", "CRC32"]


def parameters(definition):
    """``amaranth.lib.crc.Parameters`` (one byte per update) of a contract ``CrcDef``."""
    return crc.Algorithm(crc_width=definition.width, polynomial=definition.poly,
                         initial_crc=definition.init, reflect_input=definition.reflect,
                         reflect_output=definition.reflect,
                         xor_output=definition.xor_out)(data_width=8)


CRC8, CRC16, CRC32 = (parameters(d) for d in (CRC8_DEF, CRC16_DEF, CRC32_DEF))


def processor(m, name, params, *, start, valid, data):
    """Add a ``crc.Processor`` to ``m``, restarted by ``start`` and fed ``data`` on ``valid``;
    return its (finalised, registered) ``crc`` output."""
    proc = params.create()
    m.submodules[name] = proc
    m.d.comb += [proc.start.eq(start), proc.valid.eq(valid), proc.data.eq(data)]
    return proc.crc
