"""Bit layouts of stream payloads, as plain data.

A :class:`Layout` is an ordered list of :class:`Field` s, packed LSB first with no gaps, exactly as
Amaranth's ``data.StructLayout`` of ``data.ArrayLayout`` fields packs them. It is the one
description of a payload from which every other form is derived:

- the Amaranth layout of the RTL (:func:`hwprune.hw.layouts.amaranth_layout`);
- the C++ constants of a shim (:meth:`Layout.cpp_constants`);
- the host's vectorised packing into 32-bit words and back (:meth:`Layout.pack`,
  :meth:`Layout.unpack`), used by the Verilator and cocotb backends and the UART wire format.

This module imports numpy only (no Amaranth, no torch).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Field", "Layout"]


@dataclass(frozen=True)
class Field:
    """``count`` elements of ``width`` bits each (``count == 1``: a plain scalar field)."""

    name: str
    width: int
    count: int = 1
    signed: bool = False

    def __post_init__(self):
        if not (isinstance(self.width, int) and self.width >= 1):
            raise ValueError(f"field {self.name!r}: width must be a positive integer, "
                             f"not {self.width!r}")
        if not (isinstance(self.count, int) and self.count >= 1):
            raise ValueError(f"field {self.name!r}: count must be a positive integer, "
                             f"not {self.count!r}")

    @property
    def bits(self):
        return self.width * self.count

    def dtype(self):
        """Host element type: the narrowest numpy integer that holds one element."""
        for nbits, s, u in ((8, np.int8, np.uint8), (16, np.int16, np.uint16),
                            (32, np.int32, np.uint32), (64, np.int64, np.uint64)):
            if self.width <= nbits:
                if self.signed:
                    return np.dtype(np.int16 if nbits == 8 else s)  # weights are int16 on host
                return np.dtype(np.bool_ if self.width == 1 else u)
        return np.dtype(object)


#: Beats per block of :meth:`Layout.pack` / :meth:`Layout.unpack` (intermediates in the caches).
_BLOCK = 1 << 16


def _windows(lo, field):
    """Split a field's elements into 64-bit windows: ``[(first byte, [(element, bit offset in
    the window), ...]), ...]``; every element lies wholly inside its window."""
    windows, current, first = [], None, None
    for i in range(field.count):
        bit = lo + i * field.width
        if current is None or bit + field.width > 8 * first + 64:
            first = bit // 8
            current = []
            windows.append((first, current))
        current.append((i, bit - 8 * first))
    return windows


class Layout:
    """An ordered, gap-free struct of :class:`Field` s (LSB first)."""

    def __init__(self, name, fields):
        self.name = name
        self.fields = tuple(fields)
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"layout {name!r} has duplicate field names: {names}")
        self.offsets = {}
        lo = 0
        for f in self.fields:
            self.offsets[f.name] = lo
            lo += f.bits
        self.size = lo

    # --- plain-data views -------------------------------------------------------------------
    def __getitem__(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"layout {self.name!r} has no field {name!r}; "
                       f"fields: {[f.name for f in self.fields]}")

    def __eq__(self, other):
        return isinstance(other, Layout) and self.fields == other.fields

    def __hash__(self):
        return hash(self.fields)

    def __repr__(self):
        body = ", ".join(f"{f.name}: {'s' if f.signed else 'u'}{f.width}"
                         + (f"x{f.count}" if f.count > 1 else "") for f in self.fields)
        return f"Layout({self.name!r}, {{{body}}}, {self.size} bits)"

    @property
    def words(self):
        """32-bit words per payload."""
        return max(1, (self.size + 31) // 32)

    def describe(self):
        """JSON-ready description: one entry per field with its bit offset."""
        return {"name": self.name, "bits": self.size,
                "fields": [{"name": f.name, "lo": self.offsets[f.name], "width": f.width,
                            "count": f.count, "signed": f.signed} for f in self.fields]}

    def cpp_constants(self, prefix):
        """C++ ``constexpr`` offsets and widths of every field (generated into the shims)."""
        p = prefix.upper()
        lines = [f"// {self!r}",
                 f"constexpr unsigned {p}_BITS = {self.size};",
                 f"constexpr unsigned {p}_WORDS = {self.words};"]
        for f in self.fields:
            n = f"{p}_{f.name.upper()}"
            lines += [f"constexpr unsigned {n}_LO = {self.offsets[f.name]};",
                      f"constexpr unsigned {n}_WIDTH = {f.width};",
                      f"constexpr unsigned {n}_COUNT = {f.count};",
                      f"constexpr bool {n}_SIGNED = {'true' if f.signed else 'false'};"]
        return "\n".join(lines) + "\n"

    # --- host packing (vectorised) ----------------------------------------------------------
    def _elements(self, f, values, beats):
        v = np.asarray(values)
        if v.size != beats * f.count:
            raise ValueError(f"{self.name}.{f.name}: expected {beats} x {f.count} values, "
                             f"got shape {v.shape}")
        return v.reshape(beats, f.count)

    def pack(self, values, beats=None):
        """Pack ``{field: array (beats, count) or (beats,)}`` into ``(beats, words)`` uint32.

        Missing fields are zero. Values are truncated to their field width (two's complement).
        """
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise ValueError(f"layout {self.name!r} has no field(s) {sorted(unknown)}")
        if beats is None:
            first = next(iter(values.values()))
            beats = np.asarray(first).shape[0]
        if beats > _BLOCK:
            arrays = {f.name: self._elements(f, values[f.name], beats)
                      for f in self.fields if f.name in values}
            return np.concatenate([self._pack({k: a[i:i + _BLOCK] for k, a in arrays.items()},
                                              min(_BLOCK, beats - i))
                                   for i in range(0, beats, _BLOCK)])
        return self._pack(values, beats)

    def _pack(self, values, beats):
        nbytes = self.words * 4
        out = np.zeros((beats, nbytes + 8), dtype=np.uint8)   # 8 spare bytes for the windows
        if beats == 0:
            return out[:, :nbytes].view("<u4")
        bits = None
        for f in self.fields:
            if f.name not in values:
                continue
            v = self._elements(f, values[f.name], beats)
            lo = self.offsets[f.name]
            if lo % 8 == 0 and f.width in (8, 16, 32):
                nb = f.width // 8
                # A wrapping cast to the field's width is its two's complement truncation.
                raw = np.ascontiguousarray(v.astype(f"<{'i' if f.signed else 'u'}{nb}",
                                                    copy=False))
                out[:, lo // 8:lo // 8 + f.count * nb] |= raw.view(np.uint8).reshape(beats, -1)
            elif lo % 8 == 0 and f.width == 1:
                packed = np.packbits(v.astype(bool, copy=False), axis=1, bitorder="little")
                out[:, lo // 8:lo // 8 + packed.shape[1]] |= packed
            elif f.width <= 56:
                # 64-bit windows: the elements inside a window are shifted into one uint64 per
                # beat, which is then ORed into the window's bytes.
                mask = np.uint64((1 << f.width) - 1)
                for first, elements in _windows(lo, f):
                    x = np.zeros(beats, dtype="<u8")
                    for i, off in elements:
                        x |= (v[:, i].astype(np.int64).astype(np.uint64) & mask) << np.uint64(off)
                    out[:, first:first + 8] |= x.view(np.uint8).reshape(beats, 8)
            else:
                if bits is None:
                    bits = np.zeros((beats, nbytes * 8), dtype=np.uint8)
                b = (v.astype(object)[:, :, None] >> np.arange(f.width).astype(object)) & 1
                bits[:, lo:lo + f.bits] = b.reshape(beats, -1).astype(np.uint8)
        out = out[:, :nbytes]
        if bits is not None:
            out |= np.packbits(bits, axis=1, bitorder="little")
        return np.ascontiguousarray(out).view("<u4")

    def unpack(self, words):
        """Inverse of :meth:`pack`: ``(beats, words)`` uint32 -> ``{field: (beats, count)}``.

        Signed fields are sign-extended into int16 / int64, 1-bit fields come back as bool.
        Long streams go in blocks of beats, so that the intermediates stay in the caches.
        """
        words = np.ascontiguousarray(words, dtype="<u4")
        if words.shape[0] > _BLOCK:
            parts = [self._unpack(words[i:i + _BLOCK]) for i in range(0, words.shape[0], _BLOCK)]
            return {f.name: np.concatenate([p[f.name] for p in parts]) for f in self.fields}
        return self._unpack(words)

    def _unpack(self, words):
        beats = words.shape[0]
        if beats == 0:
            return {f.name: np.zeros((0, f.count), dtype=f.dtype()) for f in self.fields}
        raw = words.view(np.uint8).reshape(beats, -1)
        padded = np.zeros((beats, raw.shape[1] + 8), dtype=np.uint8)
        padded[:, :raw.shape[1]] = raw
        out = {}
        for f in self.fields:
            lo = self.offsets[f.name]
            if lo % 8 == 0 and f.width in (8, 16, 32):
                nb = f.width // 8
                chunk = np.ascontiguousarray(raw[:, lo // 8:lo // 8 + f.count * nb])
                v = chunk.view(f"<{'i' if f.signed else 'u'}{nb}").reshape(beats, f.count)
            elif lo % 8 == 0 and f.width == 1:
                v = np.unpackbits(raw[:, lo // 8:lo // 8 + (f.count + 7) // 8], axis=1,
                                  bitorder="little")[:, :f.count]
            elif f.width <= 56:
                # 64-bit windows of the field's bytes, each read as one uint64 per beat; every
                # element inside a window is a shift and a mask of it.
                v = np.empty((beats, f.count), dtype=np.int64)
                mask = np.uint64((1 << f.width) - 1)
                for first, elements in _windows(lo, f):
                    x = np.ascontiguousarray(padded[:, first:first + 8]).view("<u8")[:, 0]
                    for i, off in elements:
                        v[:, i] = ((x >> np.uint64(off)) & mask).astype(np.int64)
            else:
                # Wider elements: expand the field's bytes to bits (Python integers beyond 62).
                first, last = lo // 8, (lo + f.bits + 7) // 8
                bits = np.unpackbits(raw[:, first:last], axis=1, bitorder="little")
                b = bits[:, lo - 8 * first:lo - 8 * first + f.bits].reshape(beats, f.count,
                                                                           f.width)
                v = (b.astype(object) << np.arange(f.width).astype(object)).sum(axis=2)
            if f.signed and not (lo % 8 == 0 and f.width in (8, 16, 32)):
                sign = 1 << (f.width - 1)
                v = (v ^ sign) - sign
            out[f.name] = np.asarray(v).astype(f.dtype() if f.width <= 64 else np.int64)
        return out

    def to_ints(self, values, beats=None):
        """Pack into one Python integer per beat (what cocotb writes to a payload port)."""
        words = self.pack(values, beats)
        nbytes = (self.size + 7) // 8
        raw = words.view(np.uint8).reshape(words.shape[0], self.words * 4)
        return [int.from_bytes(row[:nbytes].tobytes(), "little") for row in raw]

    def from_ints(self, ints):
        """Inverse of :meth:`to_ints` (what cocotb reads from a payload port)."""
        nbytes = self.words * 4
        raw = np.frombuffer(b"".join(int(i).to_bytes(nbytes, "little") for i in ints),
                            dtype=np.uint8).reshape(len(ints), nbytes)
        return self.unpack(raw.view("<u4"))
