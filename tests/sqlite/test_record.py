"""Records (fileformat2 §2.1): round trips, SQLite's own encoder choices,
hostile payloads."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.btree import PageType, parse_btree_page
from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.header import DatabaseHeader, TextEncoding
from pgfs.sqlite.overflow import assemble_payload
from pgfs.sqlite.record import (
    InvalidText,
    decode_record,
    encode_record,
    serial_type_of,
    serial_type_size,
    stored_numeric,
    stored_real,
)
from pgfs.sqlite.varint import decode_varint

ENCODINGS = list(TextEncoding)

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 127, 128, -128, -129, 2**47, -(2**47) - 1, 2**63 - 1]),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)


def same(a, b) -> bool:
    """Equality that tells -0.0 from 0.0 and int from float."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return a == b


@given(st.lists(values, max_size=40), st.sampled_from(ENCODINGS))
@settings(deadline=None, max_examples=200)
def test_round_trip(row: list, encoding: TextEncoding) -> None:
    payload = encode_record(row, encoding)
    decoded = decode_record(payload, encoding)
    assert len(decoded) == len(row)
    assert all(same(a, b) for a, b in zip(decoded, row, strict=True))
    assert encode_record(decoded, encoding) == payload


@given(st.lists(st.integers(0, 300), min_size=1, max_size=150), st.sampled_from(ENCODINGS))
@settings(deadline=None, max_examples=40)
def test_round_trip_large_header(lengths: list[int], encoding: TextEncoding) -> None:
    """Headers past 126 bytes (2-byte header-size varint), 2-byte serial types."""
    row = ["x" * n if n % 2 else b"y" * n for n in lengths]
    payload = encode_record(row, encoding)
    assert decode_record(payload, encoding) == row


def header_types(payload: bytes) -> list[int]:
    size, pos = decode_varint(payload, 0)
    types = []
    while pos < size:
        t, pos = decode_varint(payload, pos)
        types.append(t)
    return types


@pytest.mark.parametrize(
    ("value", "serial_type"),
    [
        (None, 0),
        (0, 8),
        (1, 9),
        (2, 1),
        (-1, 1),
        (127, 1),
        (-128, 1),
        (128, 2),
        (-129, 2),
        (32767, 2),
        (-32768, 2),
        (32768, 3),
        (-32769, 3),
        (8388607, 3),
        (8388608, 4),
        (-8388609, 4),
        (2**31 - 1, 4),
        (2**31, 5),
        (-(2**31) - 1, 5),
        (2**47 - 1, 5),
        (-(2**47), 5),
        (2**47, 6),
        (-(2**47) - 1, 6),
        (2**63 - 1, 6),
        (-(2**63), 6),
        (0.0, 7),
        (1.0, 7),
        (b"", 12),
        (b"ab", 16),
        ("", 13),
        ("ab", 17),
        (InvalidText(b"\xff"), 15),
    ],
)
def test_serial_types(value, serial_type: int) -> None:
    assert header_types(encode_record([value], TextEncoding.UTF8)) == [serial_type]
    body = serial_type_of(value, TextEncoding.UTF8)[1]
    assert serial_type_size(serial_type) == len(body)


def test_schema_format_below_4_has_no_types_8_and_9() -> None:
    """§1.3.12: serial types 8 and 9 exist from schema format 4 on."""
    assert header_types(encode_record([0, 1], TextEncoding.UTF8, schema_format=1)) == [1, 1]
    assert header_types(encode_record([0, 1], TextEncoding.UTF8, schema_format=4)) == [8, 9]


def test_text_encodings() -> None:
    for encoding, raw in [
        (TextEncoding.UTF8, "é€".encode()),
        (TextEncoding.UTF16LE, "é€".encode("utf-16-le")),
        (TextEncoding.UTF16BE, "é€".encode("utf-16-be")),
    ]:
        payload = encode_record(["é€"], encoding)
        assert payload.endswith(raw)
        assert decode_record(payload, encoding) == ["é€"]


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (b"\xff\xfe", TextEncoding.UTF8),
        (b"\xed\xa0\x80", TextEncoding.UTF8),  # a UTF-8-encoded surrogate
        (b"\xc0\x80", TextEncoding.UTF8),  # overlong NUL
        (b"abc", TextEncoding.UTF16LE),  # odd length
        (b"\x00\xd8", TextEncoding.UTF16LE),  # lone high surrogate
        (b"\xdc\x00", TextEncoding.UTF16BE),  # lone low surrogate
    ],
)
def test_invalid_text_is_kept_raw(raw: bytes, encoding: TextEncoding) -> None:
    payload = bytes([2, 13 + 2 * len(raw)]) + raw
    decoded = decode_record(payload, encoding)
    assert decoded == [InvalidText(raw)]
    assert encode_record(decoded, encoding) == payload


def test_nan_float_bits_decode() -> None:
    payload = bytes([2, 7]) + struct.pack(">d", math.nan)
    [value] = decode_record(payload, TextEncoding.UTF8)
    assert math.isnan(value)
    assert encode_record([value], TextEncoding.UTF8) == payload


def test_encode_rejects() -> None:
    with pytest.raises(ValueError):
        encode_record([2**63], TextEncoding.UTF8)
    with pytest.raises(TypeError):
        encode_record([object()], TextEncoding.UTF8)


# ---------------------------------------------------------------- malformed payloads


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",  # header size smaller than its own varint
        b"\x05\x01",  # header bigger than the payload
        b"\x02\x01",  # int8 body missing
        b"\x02\x0a",  # reserved serial type 10
        b"\x02\x0b",  # reserved serial type 11
        b"\x02\x01\x05\x06",  # bytes after the last body
        b"\x02\x81",  # serial type varint runs past the header
        b"\x02\x0f",  # 1-byte text missing
        b"\x03\x81\x80",  # serial type varint runs into the body: header size 3 ends it
        b"\x0a" + b"\xff" * 9,  # 9-byte varint serial type: negative
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(CorruptPageError) as info:
        decode_record(payload, TextEncoding.UTF8)
    assert info.value.pgno is None


@given(st.binary(max_size=64), st.sampled_from(ENCODINGS))
@settings(deadline=None, max_examples=400)
def test_hostile_bytes(payload: bytes, encoding: TextEncoding) -> None:
    try:
        decoded = decode_record(payload, encoding)
    except CorruptPageError:
        return
    # Whatever decodes re-encodes to a record that decodes the same.
    again = decode_record(encode_record(decoded, encoding), encoding)
    assert len(again) == len(decoded)


@given(st.data())
@settings(deadline=None, max_examples=150)
def test_mutated_real_records(data: st.DataObject) -> None:
    row = data.draw(st.lists(values, min_size=1, max_size=8))
    payload = bytearray(encode_record(row, TextEncoding.UTF8))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    for candidate in (bytes(payload), bytes(payload[:cut])):
        with contextlib.suppress(CorruptPageError):
            decode_record(candidate, TextEncoding.UTF8)


# ---------------------------------------------------------------- SQLite as ground truth


def test_reencode_every_record_sqlite_wrote(real_db) -> None:
    """Every record of every cell (tables, indexes, sqlite_schema, WITHOUT ROWID)
    re-encodes to exactly the bytes SQLite wrote: same serial types (incl. 8/9
    and integers in REAL columns), same header-size varint."""
    encoding = real_db.header.text_encoding
    count = 0
    for root in [1, *real_db.roots().values()]:
        for _page, _cell, payload, _chain in real_db.payloads(root):
            decoded = decode_record(payload, encoding)
            assert encode_record(decoded, encoding) == payload
            count += 1
    assert count > 200


def record_of_single_row(tmp_path, create: str, insert: str, params: tuple = ()) -> bytes:
    """Write one row with SQLite and return its record bytes from the file."""
    path = tmp_path / "one.db"
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute(create)
    con.execute(insert, params)
    con.commit()
    con.close()
    data = path.read_bytes()
    header = DatabaseHeader.parse(data)
    page = parse_btree_page(data[header.page_size : 2 * header.page_size], 2, header.usable_size)
    [cell] = page.cells

    def read(pgno: int) -> bytes:
        return data[(pgno - 1) * header.page_size : pgno * header.page_size]

    payload, _ = assemble_payload(cell, read, header.usable_size, PageType.TABLE_LEAF, 2)
    return payload


@pytest.mark.parametrize("n_columns", [1, 60, 125, 126, 127, 128, 129, 1000])
@pytest.mark.parametrize("kind", ["int", "text100"])
def test_header_size_varint_like_sqlite(tmp_path, n_columns: int, kind: str) -> None:
    """OP_MakeRecord's header size: one byte up to 126 bytes of serial types,
    then the varint length, plus one if the varint itself tips it over."""
    columns = ", ".join(f"c{i}" for i in range(n_columns))
    value = 5 if kind == "int" else "x" * 100
    params = tuple(value if i % 2 == 0 else 7 for i in range(n_columns))
    payload = record_of_single_row(
        tmp_path,
        f"CREATE TABLE t({columns})",
        f"INSERT INTO t VALUES ({', '.join('?' * n_columns)})",
        params,
    )
    assert encode_record(decode_record(payload, TextEncoding.UTF8), TextEncoding.UTF8) == payload


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=20))
@settings(deadline=None, max_examples=15)
def test_stored_real_and_numeric_match_sqlite(floats: list[float]) -> None:
    """datatype3 §3: a float in a REAL column is stored as an integer when it
    is integral and fits in 6 bytes; NUMERIC/INTEGER store integral floats as
    integers of any size."""
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE TABLE t(r REAL, n NUMERIC, i INTEGER)")
        for f in floats:
            con.execute("INSERT INTO t VALUES (?, ?, ?)", (f, f, f))
        rows = con.execute("SELECT typeof(r), r, typeof(n), n, typeof(i), i FROM t").fetchall()
    finally:
        con.close()
    for f, (_tr, r, tn, n, ti, i) in zip(floats, rows, strict=True):
        assert r == f or (math.isinf(f) and r == f)
        assert tn == ("integer" if isinstance(stored_numeric(f), int) else "real")
        assert ti == tn
        assert n == stored_numeric(f) == i


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1.0, -1.0, 3.5, 2.0**47 - 1, -(2.0**47), 2.0**47, 2.0**62, 1e300, -1e-300],
)
def test_stored_real_bytes_match_sqlite(tmp_path, value: float) -> None:
    payload = record_of_single_row(
        tmp_path, "CREATE TABLE t(r REAL)", "INSERT INTO t VALUES (?)", (value,)
    )
    assert encode_record([stored_real(value)], TextEncoding.UTF8) == payload


def test_invalid_utf8_written_by_sqlite(tmp_path) -> None:
    payload = record_of_single_row(
        tmp_path, "CREATE TABLE t(a TEXT)", "INSERT INTO t VALUES (CAST(x'ff00c3' AS TEXT))"
    )
    assert decode_record(payload, TextEncoding.UTF8) == [InvalidText(b"\xff\x00\xc3")]
    assert encode_record([InvalidText(b"\xff\x00\xc3")], TextEncoding.UTF8) == payload
