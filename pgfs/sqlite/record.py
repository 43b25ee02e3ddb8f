"""Records: the payload format of every cell (fileformat2 §2.1 "Record Format").

A record is a header — its own size as a varint, then one serial-type varint
per column — followed by the column bodies:

====== ============ ==========================================
type   body bytes   meaning
====== ============ ==========================================
0      0            NULL
1..6   1,2,3,4,6,8  big-endian two's-complement integer
7      8            big-endian IEEE 754 float
8, 9   0            the integers 0 and 1 (schema format >= 4)
10, 11 -            reserved: never in a well-formed database
N>=12  (N-12)/2     BLOB, N even
N>=13  (N-13)/2     TEXT in the database encoding, N odd
====== ============ ==========================================
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.varint import decode_varint, encode_varint, varint_size

Value = None | int | float | str | bytes

# SQLite refuses record headers bigger than this (OP_Column: "aOffset[0] > 98307"):
# 3 bytes per serial type for the maximum of 32767 columns, plus the size varint.
MAX_HEADER_SIZE = 98307
_MAX_6BYTE = 0x00007FFFFFFFFFFF
_MIN_I64 = -(1 << 63)
_MAX_I64 = (1 << 63) - 1
_DOUBLE = struct.Struct(">d")
_INT_SIZES = (0, 1, 2, 3, 4, 6, 8)  # body size of serial types 0..6


@dataclass(frozen=True)
class InvalidText:
    """A TEXT value whose bytes do not decode in the database encoding.

    SQLite stores whatever bytes it was given; keeping them raw makes the
    round trip exact (encode_record writes ``raw`` back as serial type 13+2n).
    """

    raw: bytes


def serial_type_size(serial_type: int) -> int:
    """Body size of a serial type (§2.1 table); ValueError for 10 and 11."""
    if serial_type < 0:
        raise ValueError(f"negative serial type {serial_type}")
    if serial_type <= 6:
        return _INT_SIZES[serial_type]
    if serial_type == 7:
        return 8
    if serial_type in (8, 9):
        return 0
    if serial_type < 12:
        raise ValueError(f"reserved serial type {serial_type}")
    return (serial_type - 12) >> 1


def _corrupt(detail: str) -> CorruptPageError:
    return CorruptPageError(None, f"record: {detail}")


def _decode_text(raw: bytes, codec: str) -> str | InvalidText:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        return InvalidText(raw)


def decode_record(payload: bytes, encoding: TextEncoding) -> list[Value | InvalidText]:
    """Decode a record into Python values (§2.1).

    Integers come back as int, serial type 7 as float (NaN included, although
    SQLite itself reads a stored NaN as NULL), blobs as bytes, text as str or
    :class:`InvalidText`. Raises CorruptPageError(None, ...) on anything
    malformed: a header bigger than the payload, a serial type running past the
    header, reserved serial types 10/11, bodies that end before or after the
    end of the payload (SQLite's OP_Column checks both).
    """
    if not isinstance(payload, bytes):
        payload = bytes(payload)
    size = len(payload)
    header_size, pos = decode_varint(payload, 0) if size else (0, 0)
    if size == 0:
        raise _corrupt("empty payload")
    if header_size < pos or header_size > size or header_size > MAX_HEADER_SIZE:
        raise _corrupt(f"header size {header_size} for a {size}-byte payload")
    codec = encoding.codec
    body = header_size
    values: list[Value | InvalidText] = []
    append = values.append
    from_bytes = int.from_bytes
    while pos < header_size:
        st = payload[pos]
        if st < 0x80:
            pos += 1
        else:
            st, pos = decode_varint(payload, pos)
            if pos > header_size:
                raise _corrupt("serial type runs past the end of the header")
            if st < 0 or st > 0xFFFFFFFF:
                raise _corrupt(f"serial type {st} out of range")
        if st == 0:
            append(None)
        elif st <= 6:
            n = _INT_SIZES[st]
            end = body + n
            if end > size:
                raise _corrupt("integer body runs past the end of the payload")
            append(from_bytes(payload[body:end], "big", signed=True))
            body = end
        elif st == 7:
            end = body + 8
            if end > size:
                raise _corrupt("float body runs past the end of the payload")
            append(_DOUBLE.unpack_from(payload, body)[0])
            body = end
        elif st == 8:
            append(0)
        elif st == 9:
            append(1)
        elif st < 12:
            raise _corrupt(f"reserved serial type {st}")
        else:
            end = body + ((st - 12) >> 1)
            if end > size:
                raise _corrupt(f"serial type {st} body runs past the end of the payload")
            raw = payload[body:end]
            append(_decode_text(raw, codec) if st & 1 else raw)
            body = end
    if body != size:
        raise _corrupt(f"bodies end at {body}, the payload at {size}")
    return values


def serial_type_of(value: Value | InvalidText, encoding: TextEncoding, schema_format: int = 4):
    """(serial type, body bytes) exactly as SQLite's OP_MakeRecord chooses them.

    Integers take the smallest of types 1-6 (comparing ~i for negatives, as
    sqlite3VdbeSerialType does); 0 and 1 become types 8 and 9 only when the
    schema format is 4 or more (§1.3.12). Floats are always type 7.
    """
    if value is None:
        return 0, b""
    if isinstance(value, int):
        if value < _MIN_I64 or value > _MAX_I64:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        u = ~value if value < 0 else value
        if u <= 127:
            if value in (0, 1) and schema_format >= 4:
                return 8 + value, b""
            return 1, value.to_bytes(1, "big", signed=True)
        if u <= 32767:
            return 2, value.to_bytes(2, "big", signed=True)
        if u <= 8388607:
            return 3, value.to_bytes(3, "big", signed=True)
        if u <= 2147483647:
            return 4, value.to_bytes(4, "big", signed=True)
        if u <= _MAX_6BYTE:
            return 5, value.to_bytes(6, "big", signed=True)
        return 6, value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return 7, _DOUBLE.pack(value)
    if isinstance(value, str):
        raw = value.encode(encoding.codec)
        return 13 + 2 * len(raw), raw
    if isinstance(value, InvalidText):
        return 13 + 2 * len(value.raw), bytes(value.raw)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return 12 + 2 * len(raw), raw
    raise TypeError(f"cannot store a {type(value).__name__} in a SQLite record")


def encode_record(
    values: Sequence[Value | InvalidText], encoding: TextEncoding, *, schema_format: int = 4
) -> bytes:
    """Encode values as a record, byte for byte as SQLite's encoder writes it.

    The header-size varint is computed as OP_MakeRecord does: one byte while
    the serial types take at most 126 bytes, else the varint length of the sum,
    plus one more byte if adding the varint itself makes it longer.
    """
    types = []
    bodies = []
    for value in values:
        st, body = serial_type_of(value, encoding, schema_format)
        types.append(encode_varint(st) if st >= 0x80 else bytes((st,)))
        bodies.append(body)
    n_hdr = sum(map(len, types))
    if n_hdr <= 126:
        n_hdr += 1
    else:
        n_varint = varint_size(n_hdr)
        n_hdr += n_varint
        if n_varint < varint_size(n_hdr):
            n_hdr += 1
    return encode_varint(n_hdr) + b"".join(types) + b"".join(bodies)


def stored_real(value: float) -> int | float:
    """The value SQLite puts in the record for a float in a REAL-affinity column.

    datatype3 §3 ("REAL ... as an internal optimization"): OP_MakeRecord turns a
    float with an exact integer value into an integer (MEM_IntReal) when that
    integer fits in 6 bytes; a larger one stays a type-7 float. -0.0 becomes 0.
    Reading back, SQLite converts the integer to REAL again.
    """
    if math.isfinite(value) and value == math.floor(value) and -(2.0**63) < value < 2.0**63:
        i = int(value)
        u = ~i if i < 0 else i
        if u <= _MAX_6BYTE:
            return i
    return value


def stored_numeric(value: float) -> int | float:
    """The value SQLite stores for a float in a NUMERIC- or INTEGER-affinity column.

    applyAffinity -> sqlite3VdbeIntegerAffinity: a float that equals an integer
    strictly inside the 64-bit range is stored as that integer (any size).
    """
    if math.isfinite(value) and value == math.floor(value) and -(2.0**63) < value < 2.0**63:
        i = int(value)
        if _MIN_I64 < i < _MAX_I64:
            return i
    return value
