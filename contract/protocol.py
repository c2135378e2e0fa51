"""The UART command protocol (docs/uart_protocol.md) as plain data: command codes, framing, CRCs
and the wire layout of a beat. The bridge RTL (:mod:`hwprune.hw.bridge`) and the host
(:mod:`hwprune.uart`) both read it from here.

Frame (both directions)::

    SYNC | CMD | LEN_L | LEN_H | HCRC8(CMD, LEN) | PAYLOAD[LEN] | CRC16_L | CRC16_H
"""

import binascii
import enum
from dataclasses import dataclass

import numpy as np

from .block import Block
from .channel_norms import l1_width, l2_width
from .layout import Field, Layout
from .params import Domain, Param
from .threshold_engine import LANES, WIDTH

__all__ = ["PROTOCOL_VERSION", "HOST_SYNC", "DEVICE_SYNC", "MAX_PAYLOAD", "Cmd", "ErrorCode",
           "Status", "STATUS_FIELDS", "MH_STATUS_FIELDS", "MH_SELECT_FIELDS", "INFO_FIELDS", "INFO_PARAMS", "CFG_LEN", "MH_CFG_LEN",
           "ERROR_FIELDS", "NM_STATUS_FIELDS", "NM_CFG_LEN", "CN_STATUS_FIELDS", "CN_CFG_LEN",
           "norm_bytes", "unpack_norms", "WS_STATUS_FIELDS", "NE_CFG_LEN", "NE_STATUS_FIELDS",
           "SM_CFG_LEN", "SM_STATUS_FIELDS",
           "result_bytes", "program_beat_bytes", "STORE_BIT", "STORE_BYTES", "RUN_LEN", "mask_bytes", "data_bytes",
           "CrcDef", "CRC8_DEF", "CRC16_DEF", "CRC32_DEF", "crc8", "crc16", "encode_frame", "split_frames",
           "beat_bytes", "wire_tile_layout", "wire_masked_layout", "pack_beats", "unpack_beats",
           "UART_CORE", "COMMAND_BRIDGE", "BLOCKS_PARAM"]

#: 2: INFO reports the histogram's counter banks (``hist_banks``).
PROTOCOL_VERSION = 2
HOST_SYNC = 0xA5
DEVICE_SYNC = 0x5A
#: Largest payload of a TE_DATA frame the bridge accepts (the host splits passes into frames).
MAX_PAYLOAD = 4096


class Cmd(enum.IntEnum):
    """Command codes. Answers carry ``code | 0x80``; ``ERROR`` is the device's error frame."""
    INFO = 0x01
    TE_CONFIG = 0x10
    TE_DATA = 0x11
    TE_STATUS = 0x12
    TE_RUN = 0x13
    NM_CONFIG = 0x20
    NM_DATA = 0x21
    NM_STATUS = 0x22
    SM_CONFIG = 0x30
    SM_RUN = 0x31
    SM_STATUS = 0x32
    SM_LOAD = 0x33
    MH_CONFIG = 0x40
    MH_DATA = 0x41
    MH_STATUS = 0x42
    MH_SELECT = 0x43
    MH_RUN = 0x44
    CN_CONFIG = 0x50
    CN_DATA = 0x51
    CN_STATUS = 0x52
    WS_CONFIG = 0x60
    WS_DATA = 0x61
    WS_STATUS = 0x62
    WS_DENSE = 0x63
    NE_CONFIG = 0x70
    NE_RUN = 0x71
    NE_STATUS = 0x72
    NE_LOAD = 0x73
    ERROR = 0xFF
    # 0x30-0x3F: reserved for the sparse MAC.


class ErrorCode(enum.IntEnum):
    """Payload byte 0 of an ERROR frame (byte 1 is the command byte received, 0 if unknown)."""
    BAD_HEADER = 1
    UNKNOWN_CMD = 2
    BAD_LENGTH = 3
    BAD_CRC = 4
    FRAMING = 5
    TIMEOUT = 6


class Status(enum.IntFlag):
    """Bits of the status byte that ends a TE_DATA answer (0: the pass data is good)."""
    BAD_CRC = 0x01
    FRAMING = 0x02
    TIMEOUT = 0x04


#: TE_STATUS answer payload, in order: (name, bytes), little-endian. ``cycles`` is the engine's
#: own count of clocks from the first beat it took in to the last beat it sent out, per pass.
STATUS_FIELDS = (("beats", 4), ("kept", 4), ("ties_left", 4), ("in_crc", 4), ("out_crc", 4),
                 ("header_errors", 1), ("crc_errors", 1), ("framing_errors", 1),
                 ("timeouts", 1), ("overflows", 1), ("cycles", 4))
#: MH_STATUS answer payload (the magnitude histogram): beats counted and the CRC-32 of their
#: bytes since MH_CONFIG, and the error counters.
MH_STATUS_FIELDS = (("beats", 4), ("in_crc", 4), ("header_errors", 1), ("crc_errors", 1),
                    ("framing_errors", 1), ("timeouts", 1), ("overflows", 1))
#: MH_SELECT answer payload: the select walk's results and the unit's clocks of the pass.
MH_SELECT_FIELDS = (("beats", 4), ("in_crc", 4), ("found_bin", 2), ("above", 4), ("ties", 4),
                    ("counted", 4), ("cycles", 4))
#: MH_CONFIG payload: shift u8, match_en u8, match_value u8, keep u32.
MH_CFG_LEN = 7
#: The error counters, in the order every STATUS answer carries them (saturating, since reset).
ERROR_FIELDS = (("header_errors", 1), ("crc_errors", 1), ("framing_errors", 1),
                ("timeouts", 1), ("overflows", 1))
#: NM_STATUS answer payload (the N:M selector): as TE_STATUS without the tie budget.
NM_STATUS_FIELDS = (("beats", 4), ("kept", 4), ("in_crc", 4), ("out_crc", 4), *ERROR_FIELDS,
                    ("cycles", 4))
#: NM_CONFIG payload: m u8 (4 or 8), n u8.
NM_CFG_LEN = 2
#: CN_STATUS answer payload (the channel norms): input beats, channels finished.
CN_STATUS_FIELDS = (("beats", 4), ("channels", 4), ("in_crc", 4), ("out_crc", 4),
                    *ERROR_FIELDS, ("cycles", 4))
#: WS_STATUS answer payload (the weight store): beats held, beats it can hold.
WS_STATUS_FIELDS = (("beats", 4), ("capacity", 4), *ERROR_FIELDS)
#: INFO ``blocks`` bit of the weight store.
STORE_BIT = 7
#: Bytes the weight store holds (64 KiB: two UP5K SPRAMs, 32 ECP5 DP16KD).
STORE_BYTES = 65536
#: TE_RUN / MH_RUN payload: first beat u32, beats u32 (of the store). A TE_RUN answer carries
#: each beat's keep mask, ``mask_bytes(lanes)`` bytes a beat (lane i: bit i % 8 of byte i // 8),
#: then the status byte.
RUN_LEN = 8
#: CN_CONFIG payload: beats_per_channel u32 (every channel of the pass has this many beats).
CN_CFG_LEN = 4
#: NE_CONFIG payload (the network engine): in_words u16, out_words u16 (the program's input
#: and result words a vector), slot u16 (result words a vector occupies in an NE_RUN frame and
#: its answer), new_program u8 (1: forget the program, zero the counters: a load follows),
#: skip_zero u8.
NE_CFG_LEN = 8
#: NE_STATUS answer payload: a program is loaded; program beats committed and the CRC-32 of
#: their bytes since the last new_program; the engine's counters (since then).
NE_STATUS_FIELDS = (("program", 1), ("program_beats", 4), ("program_crc", 4), ("vectors", 4),
                    ("compute", 4), ("beats", 4), ("columns", 4), *ERROR_FIELDS)
#: SM_CONFIG payload (the sparse MAC): act_beats u16 (activation beats a vector), rows u16
#: (results a vector), slot u16 (32-bit values a vector occupies in an SM_RUN frame and its
#: answer), new_program u8 (1: forget the weights, zero the counters: a load follows), format
#: u8 (bit 0 fmt, bits 1-3 nm_n, bits 4-5 nm_m_log2).
SM_CFG_LEN = 8
#: SM_STATUS answer payload: weights are loaded (a beat with ``final`` committed); weight beats
#: committed and the CRC-32 of their bytes since the last new_program; vectors run and the
#: unit's clocks (from a frame's first weight beat offered to its last result taken), since then.
SM_STATUS_FIELDS = (("program", 1), ("program_beats", 4), ("program_crc", 4), ("vectors", 4),
                    ("cycles", 4), *ERROR_FIELDS)
#: INFO answer payload. ``blocks``: bitmap of the blocks behind the bridge (bit
#: ``Block.bridge_bit``); ``hist_banks``: the magnitude histogram's counter banks (its
#: ``banks`` parameter: lanes counted a clock; 0 when the bitstream holds no histogram).
INFO_FIELDS = (("version", 1), ("blocks", 1), ("lanes", 1), ("width", 1), ("max_payload", 2),
               ("hist_banks", 1))
#: INFO fields that report a block's parameter: field -> (block, parameter). The bridge fills
#: each from its block's unit (0 when the bitstream lacks the block); the host reads them back
#: as that block's parameters on the device.
INFO_PARAMS = {"hist_banks": ("magnitude_histogram", "banks")}
#: TE_CONFIG payload: threshold u16, tie_budget u32.
CFG_LEN = 6


@dataclass(frozen=True)
class CrcDef:
    """A CRC as the usual catalogue parameters (Williams' model, as ``amaranth.lib.crc``)."""

    width: int
    poly: int
    init: int
    reflect: bool       # input and output reflected (LSB first)
    xor_out: int

    def compute(self, data, crc=None):
        """Bitwise reference over ``data`` (the finalised value, ``xor_out`` applied)."""
        return self.register(data, crc) ^ self.xor_out

    def register(self, data, crc=None):
        """The un-finalised register after ``data`` (what the RTL holds)."""
        crc = self.init if crc is None else crc
        w, mask = self.width, (1 << self.width) - 1
        rpoly = int(f"{self.poly:0{w}b}"[::-1], 2)
        for byte in bytes(data):
            if self.reflect:
                crc ^= byte
                for _ in range(8):
                    crc = (crc >> 1) ^ (rpoly if crc & 1 else 0)
            else:
                crc ^= byte << (w - 8)
                for _ in range(8):
                    crc = ((crc << 1) ^ (self.poly if crc >> (w - 1) else 0)) & mask
        return crc


#: Header CRC (CRC-8/SMBus polynomial, initial 0xFF).
CRC8_DEF = CrcDef(width=8, poly=0x07, init=0xFF, reflect=False, xor_out=0)
#: Frame CRC: CRC-16/CCITT-FALSE (``binascii.crc_hqx(b, 0xFFFF)``).
CRC16_DEF = CrcDef(width=16, poly=0x1021, init=0xFFFF, reflect=False, xor_out=0)
#: Pass checksums: CRC-32/ISO-HDLC (``zlib.crc32``).
CRC32_DEF = CrcDef(width=32, poly=0x04C11DB7, init=0xFFFFFFFF, reflect=True, xor_out=0xFFFFFFFF)


def crc8(data, crc=0xFF):
    """CRC-8 (polynomial 0x07, initial 0xFF, MSB first) of the frame header."""
    return CRC8_DEF.register(data, crc)


def crc16(data):
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF) of CMD, LEN and the payload."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_frame(cmd, payload=b"", *, sync=HOST_SYNC):
    """One frame: SYNC, CMD, LEN (LE), CRC-8 of CMD+LEN, payload, CRC-16 (LE)."""
    payload = bytes(payload)
    head = bytes([int(cmd), len(payload) & 0xFF, len(payload) >> 8])
    return (bytes([sync]) + head + bytes([crc8(head)]) + payload
            + crc16(head + payload).to_bytes(2, "little"))


def split_frames(buf, *, sync=DEVICE_SYNC):
    """Split a byte string into frames: returns ([(cmd, payload, crc_ok), ...], unused tail).

    Bytes before a SYNC, and SYNCs whose header CRC-8 fails, are skipped.
    """
    buf, frames, pos = bytes(buf), [], 0
    while True:
        start = buf.find(bytes([sync]), pos)
        if start < 0 or len(buf) - start < 5:
            return frames, buf[start:] if start >= 0 else b""
        head = buf[start + 1:start + 5]
        if crc8(head[:3]) != head[3]:
            pos = start + 1
            continue
        length = head[1] | head[2] << 8
        end = start + 5 + length + 2
        if len(buf) < end:
            return frames, buf[start:]
        payload = buf[start + 5:start + 5 + length]
        crc_ok = crc16(head[:3] + payload) == int.from_bytes(buf[end - 2:end], "little")
        frames.append((head[0], payload, crc_ok))
        pos = end


# --- the wire format of a beat --------------------------------------------------------------
def _wire_layout(name, flag, lanes, width):
    wbits = 16 if width == 16 else 8
    fields = [Field("data", wbits, lanes, signed=True), Field(flag, 1, lanes)]
    if lanes % 8:
        fields.append(Field("pad", 8 - lanes % 8))
    return Layout(name, fields)


def wire_tile_layout(*, lanes, width):
    """A tile on the wire: weights (1 byte each, 2 at width 16), then the lane bitmap, bytes."""
    return _wire_layout("wire_tile", "lane_valid", lanes, width)


def wire_masked_layout(*, lanes, width):
    """A pruned tile on the wire: weights as in :func:`wire_tile_layout`, then the keep mask."""
    return _wire_layout("wire_masked_tile", "mask", lanes, width)


def data_bytes(lanes, width):
    """Bytes of one beat's weights on the wire (a WS_DENSE beat: no lane bitmap)."""
    return lanes * (2 if width == 16 else 1)


def result_bytes(lanes):
    """Bytes of one result word of the network engine in an NE_RUN answer: ``lanes`` signed
    32-bit values, little-endian (the NE_RUN frame's unit)."""
    return 4 * lanes


def program_beat_bytes(lanes, width, **depths):
    """Bytes of one program beat in an NE_LOAD frame: the engine's program beat layout
    (:func:`hwprune.contract.net_engine.program_layout`), packed, rounded up to bytes."""
    from .net_engine import program_layout
    return -(-program_layout(lanes=lanes, width=width, **depths).size // 8)


def mask_bytes(lanes):
    """Bytes of one beat's keep mask in a TE_RUN answer."""
    return (lanes + 7) // 8


def beat_bytes(lanes, width):
    """Bytes of one tile on the wire (the same for an input and an output beat)."""
    return wire_tile_layout(lanes=lanes, width=width).size // 8


def pack_beats(tiles, lane_valid, width):
    """(beats, lanes) weights and lane flags -> (beats, beat_bytes) uint8, the wire format."""
    tiles = np.asarray(tiles, dtype=np.int16)
    beats, lanes = tiles.shape
    layout = wire_tile_layout(lanes=lanes, width=width)
    words = layout.pack({"data": tiles, "lane_valid": np.asarray(lane_valid, dtype=bool)}, beats)
    return np.ascontiguousarray(words.view(np.uint8).reshape(beats, layout.words * 4)
                                [:, :layout.size // 8])


def unpack_beats(raw, lanes, width):
    """(beats, beat_bytes) uint8 answer bytes -> (data int16, mask bool), both (beats, lanes)."""
    raw = np.asarray(raw, dtype=np.uint8)
    layout = wire_masked_layout(lanes=lanes, width=width)
    beats = raw.shape[0]
    padded = np.zeros((beats, layout.words * 4), dtype=np.uint8)
    padded[:, :raw.shape[1]] = raw
    fields = layout.unpack(padded.view("<u4"))
    data = fields["data"].astype(np.int16)
    if width < 8:
        sign = 1 << (width - 1)
        data = (((data & ((1 << width) - 1)) ^ sign) - sign).astype(np.int16)
    return data, fields["mask"].astype(bool)


# --- the channel norms on the wire ----------------------------------------------------------
def norm_bytes(width):
    """Bytes of a channel's L1 and of its L2 sum in a CN_DATA answer slot (little-endian)."""
    return (l1_width(width) + 7) // 8, (l2_width(width) + 7) // 8


def unpack_norms(raw, width):
    """(beats, beat_bytes) uint8 CN_DATA answer slots -> (l1, l2) int64 per slot: the channel
    norms in the slot of each channel's last beat (the other slots are zero)."""
    raw = np.asarray(raw, dtype=np.uint8)
    n1, n2 = norm_bytes(width)
    weights = 256 ** np.arange(max(n1, n2), dtype=np.uint64)
    l1 = (raw[:, :n1].astype(np.uint64) * weights[:n1]).sum(axis=1)
    l2 = (raw[:, n1:n1 + n2].astype(np.uint64) * weights[:n2]).sum(axis=1)
    return l1.astype(np.int64), l2.astype(np.int64)


# --- the UART blocks ------------------------------------------------------------------------
BLOCKS_PARAM = Param("blocks", lo=0, hi=255, default=0,
                     doc="bitmap of the blocks behind the bridge (bit Block.bridge_bit); 0: "
                         "every block whose adapter fits lanes and width")
CLOCKS_PER_BIT = Param("clocks_per_bit", lo=4, hi=2**16 - 1, default=4,
                       doc="clock cycles per UART bit (4: the simulation's)")
TIMEOUT = Param("timeout", lo=16, hi=2**24, default=2000,
                doc="idle cycles that end a partly received frame (2000: 50 bytes at 4 clocks/bit)")
FIFO_DEPTH = Param("fifo_depth", lo=4, hi=4096, power_of_two=True, default=256,
                   doc="receive FIFO bytes (256: a 4 KiB frame from a host clock 2 % fast "
                       "leaves about 80 bytes waiting)")
HIST_BANKS = Param("hist_banks", lo=0, hi=64, default=0,
                   doc="counter banks of the magnitude histogram behind the bridge (0: one a "
                       "lane; fewer take lanes / banks clocks a beat for less logic)")
_HIST_BANKS_RULE = (lambda p: p["hist_banks"] == 0 or p["lanes"] % p["hist_banks"] == 0,
                    "hist_banks ({hist_banks}) must divide lanes ({lanes})")

COMMAND_BRIDGE = Block(
    name="command_bridge",
    doc="frame decoder, threshold engine and frame encoder on byte streams",
    domain=Domain("command_bridge", (LANES, WIDTH, TIMEOUT, FIFO_DEPTH, BLOCKS_PARAM,
                                     HIST_BANKS), rules=(_HIST_BANKS_RULE,)),
    streams=(),
    component="hwprune.hw.bridge:CommandBridge",
    shim=None, library=None,
    bench="hwprune.sim.cocotb_tb.uart_bridge_tb",
    internal=True,
)

UART_CORE = Block(
    name="uart_core",
    doc="UART receiver + command bridge + UART transmitter (the board top without pins)",
    domain=Domain("uart_core", (LANES, WIDTH, CLOCKS_PER_BIT, TIMEOUT, FIFO_DEPTH,
                                BLOCKS_PARAM, HIST_BANKS), rules=(_HIST_BANKS_RULE,)),
    streams=(),
    component="hwprune.hw.bridge:UARTCore",
    shim="uart_core.cpp", library="hwprune.sim.uart_lib:UartCoreLib",
    internal=True,
)
