"""SQLite variable-length integers (fileformat2 §1.5 "B-tree Pages", "varint").

A varint is 1 to 9 bytes, big-endian. Each of the first eight bytes gives 7
bits (high bit set = more bytes follow); a ninth byte gives all 8 of its bits.
Values are 64-bit two's complement: negative numbers always take 9 bytes.
"""

from __future__ import annotations

from pgfs.sqlite.errors import CorruptPageError

_MIN_I64 = -(1 << 63)
_MAX_U64 = (1 << 64) - 1


def decode_varint(buf: bytes | memoryview, offset: int) -> tuple[int, int]:
    """Decode the varint at ``offset``: (value as signed 64-bit, next offset).

    Raises CorruptPageError(None, ...) when the buffer ends inside the varint.
    """
    end = len(buf)
    if offset < 0 or offset >= end:
        raise CorruptPageError(None, f"varint at {offset} is outside the buffer ({end} bytes)")
    b = buf[offset]
    if b < 0x80:
        return b, offset + 1
    value = b & 0x7F
    limit = min(offset + 8, end)
    i = offset + 1
    while i < limit:
        b = buf[i]
        value = (value << 7) | (b & 0x7F)
        i += 1
        if b < 0x80:
            return value, i
    if i != offset + 8:
        raise CorruptPageError(None, f"varint at {offset} runs past the end of the buffer")
    if i >= end:
        raise CorruptPageError(None, f"varint at {offset} runs past the end of the buffer")
    value = (value << 8) | buf[i]
    if value >= 1 << 63:
        value -= 1 << 64
    return value, i + 1


def encode_varint(value: int) -> bytes:
    """Encode a signed (or unsigned) 64-bit integer as SQLite's putVarint does."""
    if value < _MIN_I64 or value > _MAX_U64:
        raise ValueError(f"{value} does not fit in 64 bits")
    v = value & _MAX_U64
    if v < 0x80:
        return bytes((v,))
    if v >> 56:
        # Nine bytes: eight 7-bit groups then the low 8 bits whole.
        out = bytearray(9)
        out[8] = v & 0xFF
        v >>= 8
        for i in range(7, -1, -1):
            out[i] = (v & 0x7F) | 0x80
            v >>= 7
        return bytes(out)
    groups = []
    while v:
        groups.append(v & 0x7F)
        v >>= 7
    groups.reverse()
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def varint_size(value: int) -> int:
    """Number of bytes encode_varint(value) takes (sqlite3VarintLen)."""
    if value < _MIN_I64 or value > _MAX_U64:
        raise ValueError(f"{value} does not fit in 64 bits")
    v = value & _MAX_U64
    if v >> 56:
        return 9
    return max(1, (v.bit_length() + 6) // 7)
