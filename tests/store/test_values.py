"""The lossless rule of values.py, through a real PostgreSQL table every time.

Every record goes SQLite record -> to_pg_row -> INSERT (pipelined executemany
or binary COPY, the store's two write paths) -> SELECT (binary, as the store
reads) -> payload_from_pg, and must come back byte for byte. The typed
columns must hold the value whenever the column's type can.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.record import InvalidText, decode_record, encode_record, stored_real
from pgfs.sqlite.schema import Affinity, TableDefinition, parse_create_table
from pgfs.store.postgres import ddl
from pgfs.store.values import (
    HIDDEN_FIELDS,
    HIDDEN_INEXACT,
    HIDDEN_RECORD,
    layout_of,
    payload_from_pg,
    to_pg_row,
)

from .helpers import SqliteFile

IPK_SQL = (
    'CREATE TABLE "ipk" (id INTEGER PRIMARY KEY, i INTEGER, t TEXT, r REAL, n NUMERIC, b BLOB, x)'
)
HIDDEN_SQL = (
    "CREATE TABLE hidden (i INT, t VARCHAR(10), r DOUBLE PRECISION, n DECIMAL(10,2), b BLOB, x)"
)
WR_SQL = (
    "CREATE TABLE wr (a TEXT, r REAL, n NUMERIC, k INTEGER, b BLOB, PRIMARY KEY (k, a))"
    " WITHOUT ROWID"
)
GEN_SQL = (
    "CREATE TABLE gen (id INTEGER PRIMARY KEY, a REAL, v REAL AS (a * 2) VIRTUAL,"
    " s TEXT AS (a || 'x') STORED, t TEXT)"
)
TABLES = {
    sql_text: parse_create_table(sql_text) for sql_text in (IPK_SQL, HIDDEN_SQL, WR_SQL, GEN_SQL)
}
ENCODINGS = list(TextEncoding)

SPECIAL_INT_VALUES = [
    0,
    1,
    -1,
    127,
    128,
    -128,
    -129,
    32767,
    32768,
    2**47 - 1,
    2**47,
    -(2**47),
    -(2**47) - 1,
    2**53,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
]
"""Integers at the edges of SQLite's integer serial types, bigint and float precision."""
SPECIAL_INTS = st.sampled_from(SPECIAL_INT_VALUES)
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-300, 300))
SPECIAL_FLOAT_VALUES = [
    -0.0,
    0.0,
    1.0,
    3.0,
    0.1,
    0.99,
    1e20,
    -1e20,
    2.0**47,
    -(2.0**47),
    2.0**63,
    -(2.0**63),
    5e-324,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
]
SPECIAL_FLOATS = st.sampled_from(SPECIAL_FLOAT_VALUES)
FLOATS = st.one_of(
    st.floats(allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.integers(-(2**53), 2**53).map(float),
)


def _undecodable(raw: bytes, encoding: TextEncoding) -> bool:
    try:
        raw.decode(encoding.codec)
    except UnicodeDecodeError:
        return True
    return False


TEXT = st.text(max_size=40) | st.text(alphabet="ab\x00é中😀", max_size=8)
BLOBS = st.binary(max_size=40)
RAW_TEXT = st.binary(min_size=1, max_size=12)


def values(encoding: TextEncoding):
    invalid = RAW_TEXT.filter(lambda raw: _undecodable(raw, encoding)).map(InvalidText)
    return st.one_of(st.none(), INT64, SPECIAL_INTS, FLOATS, SPECIAL_FLOATS, TEXT, BLOBS, invalid)


def _widened_record(values: list, encoding: TextEncoding) -> bytes:
    """A valid record SQLite would not write: every integer as an 8-byte type 6."""
    types, bodies = [], []
    for value in values:
        if type(value) is int:
            types.append(6)
            bodies.append(value.to_bytes(8, "big", signed=True))
        else:
            single = encode_record([value], encoding)
            types.append(single[1])  # one-byte header size, then the serial type
            bodies.append(single[2:] if single[1] < 0x80 else None)
    if any(b is None for b in bodies):
        return encode_record(values, encoding)
    header = bytes(types)
    return bytes([len(header) + 1]) + header + b"".join(bodies)


def fitting_values(affinity: Affinity):
    """Values SQLite itself writes in a column of `affinity` and its type holds."""
    small = st.integers(-(2**47), 2**47 - 1)
    reals = st.one_of(FLOATS, SPECIAL_FLOATS).map(stored_real)
    return {
        Affinity.INTEGER: st.one_of(INT64, SPECIAL_INTS),
        Affinity.TEXT: TEXT,
        Affinity.REAL: st.one_of(small, reals),
        Affinity.NUMERIC: st.one_of(INT64, SPECIAL_INTS, FLOATS, SPECIAL_FLOATS),
        Affinity.BLOB: BLOBS,
    }[affinity]


@st.composite
def records(draw, table: TableDefinition, encoding: TextEncoding):
    """(rowid, payload, decoded values) — canonical, short, widened or garbage records."""
    layout = layout_of(table)
    n = layout.field_count
    vals = []
    for index in layout.record_order:
        choice = draw(st.integers(0, 9))
        if choice < 8:  # mostly values that fit: exactness is what is tested
            vals.append(draw(fitting_values(layout.columns[index].affinity)))
        elif choice < 9:
            vals.append(None)
        else:
            vals.append(draw(values(encoding)))
    if layout.ipk_index is not None and draw(st.integers(0, 9)):
        vals[layout.ipk_index] = None
    kind = draw(st.sampled_from(["canonical"] * 6 + ["short", "widened", "format1", "garbage"]))
    if kind == "short":
        vals = vals[: draw(st.integers(1, n - 1))]
    if kind == "widened":
        payload = _widened_record(vals, encoding)
    elif kind == "format1":
        payload = encode_record(vals, encoding, schema_format=1)
    elif kind == "garbage":
        payload = draw(st.binary(min_size=1, max_size=30))
    else:
        payload = encode_record(vals, encoding)
    rowid = draw(INT64)
    return rowid, payload, kind


def expected_typed(affinity: Affinity, value):
    """What the typed column must hold for a record field (None = does not fit)."""
    if value is None or isinstance(value, InvalidText):
        return None
    kind = type(value)
    if affinity is Affinity.INTEGER:
        return value if kind is int else None
    if affinity is Affinity.TEXT:
        return value if kind is str and "\x00" not in value else None
    if affinity is Affinity.REAL:
        if kind is float:
            return None if math.isnan(value) else value
        return float(value) if kind is int else None
    if affinity is Affinity.NUMERIC:
        if kind is int:
            return value
        if kind is float and math.isfinite(value):
            return 0.0 if value == 0 else value
        return None
    return value if kind is bytes else None


def sqlite_normal(affinity: Affinity, value) -> bool:
    """True when SQLite itself would write `value` in a column of `affinity`
    and the typed column can hold it: such records need no side record."""
    if value is None:
        return True
    kind = type(value)
    if affinity is Affinity.INTEGER:
        return kind is int
    if affinity is Affinity.TEXT:
        return kind is str and "\x00" not in value
    if affinity is Affinity.REAL:
        if kind is int:
            return (~value if value < 0 else value) < 2**47
        return kind is float and not math.isnan(value) and stored_real(value) is value
    if affinity is Affinity.NUMERIC:
        return kind is int or (kind is float and math.isfinite(value) and str(value) != "-0.0")
    return kind is bytes


class PgTable:
    """A data table on the real server, written and read the way the store does."""

    def __init__(self, conn: psycopg.Connection, table: TableDefinition, name: str):
        self.conn = conn
        self.table = table
        self.name = name
        self.layout = layout_of(table)
        conn.execute(ddl.drop_table("public", name))
        conn.execute(ddl.create_table("public", dataclasses.replace(table, name=name)))
        self.columns = ddl.identifiers(self.layout.column_names())

    def write(self, rows: list[list], copy: bool) -> None:
        target = sql.Identifier("public", self.name)
        self.conn.execute(sql.SQL("DELETE FROM {}").format(target))
        if copy:
            statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                target, self.columns
            )
            with self.conn.cursor() as cur, cur.copy(statement) as out:
                out.set_types(ddl.copy_types(self.layout))
                for row in rows:
                    out.write_row(row)
        else:
            names = self.layout.column_names()
            with self.conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        target, self.columns, sql.SQL(", ").join(sql.Placeholder() * len(names))
                    ),
                    rows,
                )

    def read(self) -> list[tuple]:
        """Every row, in no particular order."""
        with self.conn.cursor(binary=True) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    self.columns, sql.Identifier("public", self.name)
                )
            )
            return cur.fetchall()


@pytest.fixture(scope="module")
def conn(pg_cluster):
    """One database for the whole module (tables are truncated per example)."""
    name = f"values_{os.getpid()}"
    with psycopg.connect(pg_cluster.admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = pg_cluster.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c
    with psycopg.connect(pg_cluster.admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


_tables: dict[tuple[int, TableDefinition], PgTable] = {}


def pg_table_for(conn: psycopg.Connection, table: TableDefinition) -> PgTable:
    key = (id(conn), table)
    if key not in _tables:
        _tables[key] = PgTable(conn, table, f"t{len(_tables)}")
    return _tables[key]


def check_round_trip(
    conn: psycopg.Connection,
    table: TableDefinition,
    items: list[tuple[int, bytes]],
    encoding: TextEncoding,
    copy: bool,
    schema_format: int = 4,
) -> list[tuple]:
    pg_table = pg_table_for(conn, table)
    rows = [to_pg_row(table, rowid, payload, encoding, schema_format) for rowid, payload in items]
    pg_table.write(rows, copy)
    layout = pg_table.layout
    n = len(layout.columns)
    # Pair rows by rendered payload (and rowid where stored): a wrong payload
    # shows up as a mismatch of the two sorted lists.
    rendered = [
        (payload_from_pg(table, row, encoding, schema_format), row) for row in pg_table.read()
    ]
    assert sorted(p for p, _ in rendered) == sorted(payload for _, payload in items)
    by_key: dict[tuple, list[tuple]] = {}
    for payload, row in rendered:
        by_key.setdefault((payload, _stored_rowid(layout, row)), []).append(row)
    stored = [
        by_key[(payload, rowid if layout.rowid_column else None)].pop() for rowid, payload in items
    ]
    for (rowid, payload), row in zip(items, stored, strict=True):
        if layout.ipk_index is not None:
            assert row[layout.ipk_index] == rowid
        if layout.hidden_rowid:
            assert row[-1] == rowid
        try:
            decoded = decode_record(payload, encoding)
        except ValueError:
            assert row[n] == payload
            continue
        for position, value in enumerate(decoded[: layout.field_count]):
            index = layout.record_order[position]
            if index == layout.ipk_index:
                continue
            want = expected_typed(layout.columns[index].affinity, value)
            got = row[index]
            if isinstance(got, Decimal):
                got = int(got) if got.as_tuple().exponent == 0 else float(got)
            assert got == want and type(got) is type(want), (position, value, got)
            if isinstance(want, float):
                assert math.copysign(1, got) == math.copysign(1, want)
        if len(decoded) < layout.field_count:
            assert row[n + 1] == len(decoded)
        else:
            assert row[n + 1] is None
        assert row[n] == payload  # every row keeps its record
        fits = all(
            (
                v is None
                if layout.record_order[p] == layout.ipk_index
                else fits_typed(layout.columns[layout.record_order[p]].affinity, v)
            )
            for p, v in enumerate(decoded[: layout.field_count])
        )
        assert row[n + 2] is (not fits), decoded
        if (
            fits
            and all(
                sqlite_normal(layout.columns[layout.record_order[p]].affinity, v)
                for p, v in enumerate(decoded[: layout.field_count])
                if layout.record_order[p] != layout.ipk_index
            )
            and payload == encode_record(decoded, encoding, schema_format=schema_format)
            and len(decoded) <= layout.field_count
        ):
            # A row stored without its record (format 2) renders from its typed columns.
            legacy = list(row)
            legacy[n] = None
            assert payload_from_pg(table, legacy, encoding, schema_format) == payload
    return stored


def fits_typed(affinity: Affinity, value) -> bool:
    """Whether a typed column of `affinity` holds `value` (NUMERIC keeps no -0.0)."""
    if value is None:
        return True
    if expected_typed(affinity, value) is None:
        return False
    return not (
        affinity is Affinity.NUMERIC
        and isinstance(value, float)
        and value == 0
        and math.copysign(1, value) < 0
    )


def _stored_rowid(layout, row: tuple) -> int | None:
    if layout.ipk_index is not None:
        return row[layout.ipk_index]
    if layout.hidden_rowid:
        return row[-1]
    return None


SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.name)
@pytest.mark.parametrize("table_sql", list(TABLES), ids=["ipk", "hidden", "without_rowid", "gen"])
@SETTINGS
@given(data=st.data())
def test_random_records_round_trip_byte_exact(conn, table_sql, encoding, data):
    table = TABLES[table_sql]
    items = data.draw(st.lists(records(table, encoding), min_size=1, max_size=12))
    unique = {rowid: payload for rowid, payload, _ in items}
    copy = data.draw(st.booleans())
    check_round_trip(conn, table, list(unique.items()), encoding, copy)


def _sqlite_file(tmp_path: Path, encoding: TextEncoding, rows: list[list]) -> SqliteFile:
    path = tmp_path / f"db-{encoding.name}.sqlite"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(
        f"PRAGMA encoding = '{encoding.codec.upper().replace('-LE', 'le').replace('-BE', 'be')}'"
    )
    conn.execute(IPK_SQL)
    conn.executemany('INSERT INTO "ipk" (i, t, r, n, b, x) VALUES (?, ?, ?, ?, ?, ?)', rows)
    conn.commit()
    conn.close()
    return SqliteFile(path)


SQLITE_VALUES = st.one_of(
    st.none(),
    INT64,
    SPECIAL_INTS,
    FLOATS,
    SPECIAL_FLOATS.filter(lambda f: not math.isnan(f)),
    TEXT,
    BLOBS,
)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.name)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(st.lists(SQLITE_VALUES, min_size=6, max_size=6), min_size=1, max_size=15))
def test_records_written_by_sqlite(conn, tmp_path, encoding, rows):
    """What real SQLite writes (affinity conversions, the REAL-as-integer
    optimisation, UTF-16) needs a side record only when a value does not fit
    its column's type."""
    db = _sqlite_file(tmp_path, encoding, rows)
    assert db.header.text_encoding == encoding
    table = TABLES[IPK_SQL]
    items = sorted(db.records("ipk").items())
    stored = check_round_trip(conn, table, items, encoding, copy=True)
    layout = layout_of(table)
    n = len(layout.columns)
    for (_, payload), row in zip(items, stored, strict=True):
        decoded = decode_record(payload, encoding)
        fits = all(
            value is None or expected_typed(column.affinity, value) is not None
            for column, value in zip(layout.columns[1:], decoded[1:], strict=True)
        )
        assert row[n + 2] is (not fits), decoded


@pytest.mark.parametrize(
    ("declared", "value", "typed", "side"),
    [
        ("REAL", 3.0, 3.0, False),  # SQLite stores it as the integer 3
        ("REAL", 2.0**50, 2.0**50, False),  # too big for 6 bytes: stays a float
        ("REAL", -0.0, 0.0, False),  # stored as integer 0
        ("REAL", 0.1, 0.1, False),
        ("NUMERIC", 0.99, 0.99, False),
        ("NUMERIC", 1e20, 1e20, False),
        ("NUMERIC", 12, 12, False),
        ("NUMERIC", "abc", None, True),
        ("INTEGER", "abc", None, True),
        ("INTEGER", 2**63 - 1, 2**63 - 1, False),
        ("INTEGER", 1.5, None, True),
        ("TEXT", "a\x00b", None, True),
        ("TEXT", b"blob", None, True),
        ("BLOB", b"\x00\x01", b"\x00\x01", False),
        ("", 5, None, True),
    ],
)
def test_sqlite_values_by_affinity(conn, tmp_path, declared, value, typed, side):
    path = tmp_path / "one.sqlite"
    sqlite = sqlite3.connect(path)
    sqlite.execute(f"CREATE TABLE one (v {declared})")
    sqlite.execute("INSERT INTO one VALUES (?)", (value,))
    sqlite.commit()
    sqlite.close()
    table = parse_create_table(f"CREATE TABLE one (v {declared})")
    items = sorted(SqliteFile(path).records("one").items())
    (row,) = check_round_trip(conn, table, items, TextEncoding.UTF8, copy=False)
    got = row[0]
    if isinstance(got, Decimal):
        got = int(got) if got.as_tuple().exponent == 0 else float(got)
    assert got == typed
    assert row[3] is side  # v, _pgfs_record, _pgfs_fields, _pgfs_inexact


def test_numeric_keeps_the_storage_class(conn):
    table = parse_create_table("CREATE TABLE n (v NUMERIC)")
    items = [
        (1, encode_record([3], TextEncoding.UTF8)),
        (2, encode_record([3.0], TextEncoding.UTF8)),
        (3, encode_record([0.99], TextEncoding.UTF8)),
        (4, encode_record([-0.0], TextEncoding.UTF8)),
    ]
    rows = check_round_trip(conn, table, items, TextEncoding.UTF8, copy=True)
    assert [str(r[0]) for r in rows] == ["3", "3.0", "0.99", "0.0"]
    assert [r[3] for r in rows] == [False, False, False, True]  # numeric has no -0


def test_integer_primary_key_holds_the_rowid(conn):
    table = TABLES[IPK_SQL]
    good = encode_record([None, 1, "a", 1.5, 2, b"x", None], TextEncoding.UTF8)
    odd = encode_record(
        [7, 1, "a", 1.5, 2, b"x", None], TextEncoding.UTF8
    )  # not NULL: not SQLite's
    rows = check_round_trip(conn, table, [(42, good), (43, odd)], TextEncoding.UTF8, copy=False)
    assert rows[0][0] == 42 and rows[0][7] == good and rows[0][9] is False
    assert rows[1][0] == 43 and rows[1][7] == odd and rows[1][9] is True


def test_short_records_after_add_column(conn):
    table = parse_create_table("CREATE TABLE s (a TEXT, b INTEGER, c REAL)")
    short = encode_record(["x"], TextEncoding.UTF8)
    full = encode_record(["x", 2, 1.5], TextEncoding.UTF8)
    rows = check_round_trip(conn, table, [(1, short), (2, full)], TextEncoding.UTF8, copy=True)
    assert rows[0][:6] == ("x", None, None, short, 1, False)
    assert rows[1][:6] == ("x", 2, 1.5, full, None, False)


def test_without_rowid_record_order_is_key_first(conn):
    table = TABLES[WR_SQL]
    layout = layout_of(table)
    assert [layout.columns[i].name for i in layout.record_order] == ["k", "a", "r", "n", "b"]
    payload = encode_record([5, "key", 1.5, 7, b"z"], TextEncoding.UTF8)
    (row,) = check_round_trip(conn, table, [(0, payload)], TextEncoding.UTF8, copy=True)
    assert row[:5] == ("key", 1.5, Decimal(7), 5, b"z")
    assert row[5] == payload and row[7] is False


def test_virtual_generated_columns_are_not_stored(conn):
    table = TABLES[GEN_SQL]
    assert [c.name for c in layout_of(table).columns] == ["id", "a", "s", "t"]
    payload = encode_record([None, 2.5, "2.5x", "t"], TextEncoding.UTF8)
    (row,) = check_round_trip(conn, table, [(1, payload)], TextEncoding.UTF8, copy=False)
    assert row[:6] == (1, 2.5, "2.5x", "t", payload, None)


def test_hidden_columns_are_named_as_documented():
    layout = layout_of(TABLES[HIDDEN_SQL])
    assert layout.column_names()[-4:] == [HIDDEN_RECORD, HIDDEN_FIELDS, HIDDEN_INEXACT, "_rowid"]


def _specials() -> list:
    ints = SPECIAL_INT_VALUES
    floats = [*SPECIAL_FLOAT_VALUES, -3.0, 2.0**53]
    texts = ["", "a", "a\x00b", "é", "中文", "😀", "12", "1.5", " 7 "]
    blobs = [b"", b"\x00", b"\xff\xfe", b"abc"]
    invalid = [InvalidText(b"\xff"), InvalidText(b"\xd8\x00")]
    return [None, *ints, *floats, *texts, *blobs, *invalid]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.name)
@pytest.mark.parametrize("copy", [False, True], ids=["executemany", "copy"])
def test_every_special_value_in_every_affinity(conn, encoding, copy):
    table = parse_create_table("CREATE TABLE every (i INTEGER, t TEXT, r REAL, n NUMERIC, b BLOB)")
    items = []
    for rowid, value in enumerate(_specials(), start=1):
        if isinstance(value, InvalidText) and not _undecodable(value.raw, encoding):
            continue
        for column in range(5):
            fields = [None] * 5
            fields[column] = value
            key = rowid * 10 + column
            items.append((key, encode_record(fields, encoding)))
            items.append((-key, encode_record(fields, encoding, schema_format=1)))
    check_round_trip(conn, table, items, encoding, copy)
