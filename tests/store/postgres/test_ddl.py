"""Data-table DDL on a real server: columns, types, keys, no other constraints."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from pgfs.sqlite.errors import UnsupportedFeatureError
from pgfs.sqlite.schema import SchemaEntry, has_data_table, parse_create_table
from pgfs.store.postgres import ddl

from ..helpers import tables_of


def columns_of(conn: psycopg.Connection, table: str) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()


def constraints_of(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT contype FROM pg_constraint WHERE conrelid = %s::regclass",
        (f'public."{table}"',),
    ).fetchall()
    return sorted(r[0] for r in rows)


def test_types_by_affinity_and_integer_primary_key(pg):
    table = parse_create_table(
        'CREATE TABLE "Items" ("Id" INTEGER PRIMARY KEY, "Name" TEXT NOT NULL UNIQUE,'
        ' "Rating" REAL CHECK ("Rating" > 0), "Price" NUMERIC(10,2) DEFAULT 1,'
        ' "Blob" BLOB, "Untyped", "Parent" INTEGER REFERENCES "Items"("Id"))'
    )
    pg.execute(ddl.create_table("public", table))
    assert columns_of(pg, "Items") == [
        ("Id", "bigint", "NO"),
        ("Name", "text", "YES"),
        ("Rating", "double precision", "YES"),
        ("Price", "numeric", "YES"),
        ("Blob", "bytea", "YES"),
        ("Untyped", "bytea", "YES"),
        ("Parent", "bigint", "YES"),
        ("_pgfs_record", "bytea", "YES"),
        ("_pgfs_fields", "smallint", "YES"),
        ("_pgfs_inexact", "boolean", "YES"),
    ]
    assert constraints_of(pg, "Items") == ["p"]  # the rowid key, nothing else


def test_hidden_rowid_and_without_rowid_mirror(pg):
    pg.execute(
        ddl.create_table("public", parse_create_table("CREATE TABLE h (a TEXT PRIMARY KEY, b)"))
    )
    assert [c[0] for c in columns_of(pg, "h")] == [
        "a",
        "b",
        "_pgfs_record",
        "_pgfs_fields",
        "_pgfs_inexact",
        "_rowid",
    ]
    assert constraints_of(pg, "h") == ["p"]
    key = pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'public.h'::regclass AND i.indisprimary"
    ).fetchall()
    assert key == [("_rowid",)]
    wr = parse_create_table("CREATE TABLE w (k TEXT, v INT, PRIMARY KEY (k)) WITHOUT ROWID")
    pg.execute(ddl.create_table("public", wr))
    assert [c[0] for c in columns_of(pg, "w")] == [
        "k",
        "v",
        "_pgfs_record",
        "_pgfs_fields",
        "_pgfs_inexact",
    ]
    assert constraints_of(pg, "w") == []


def test_integer_primary_key_desc_is_not_an_alias(pg):
    table = parse_create_table("CREATE TABLE d (id INTEGER PRIMARY KEY DESC, v TEXT)")
    pg.execute(ddl.create_table("public", table))
    assert [c[0] for c in columns_of(pg, "d")][-1] == "_rowid"


def test_virtual_generated_columns_are_left_out(pg):
    table = parse_create_table(
        "CREATE TABLE g (a INT, v INT AS (a + 1) VIRTUAL, s INT AS (a * 2) STORED)"
    )
    pg.execute(ddl.create_table("public", table))
    assert [c[0] for c in columns_of(pg, "g")][:2] == ["a", "s"]


def test_odd_identifiers_are_quoted(pg):
    table = parse_create_table(
        'CREATE TABLE "we""ird ; DROP TABLE x"'
        ' ("sp ace" TEXT, "Ünï" INT, [select] REAL, `a"b` BLOB)'
    )
    pg.execute(ddl.create_table("public", table))
    assert [c[0] for c in columns_of(pg, 'we"ird ; DROP TABLE x')][:4] == [
        "sp ace",
        "Ünï",
        "select",
        'a"b',
    ]


@pytest.mark.parametrize(
    "create",
    [
        f"CREATE TABLE {'t' * 64} (a)",
        f'CREATE TABLE t ("{"é" * 32}" TEXT)',  # 64 bytes in UTF-8
        "CREATE TABLE t (_pgfs_record TEXT)",
        "CREATE TABLE t (_pgfs_fields TEXT)",
        "CREATE TABLE t (a TEXT, _rowid INT)",
    ],
)
def test_unsupported_names(create):
    with pytest.raises(UnsupportedFeatureError):
        ddl.create_table("public", parse_create_table(create))


def test_rowid_name_is_free_with_an_integer_primary_key(pg):
    pg.execute(
        ddl.create_table(
            "public", parse_create_table("CREATE TABLE t (_rowid INTEGER PRIMARY KEY, a)")
        )
    )
    assert "_rowid" in [c[0] for c in columns_of(pg, "t")]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (SchemaEntry("table", "t", "t", 2, "CREATE TABLE t (a)"), True),
        (
            SchemaEntry(
                "table",
                "sqlite_sequence",
                "sqlite_sequence",
                3,
                "CREATE TABLE sqlite_sequence(name,seq)",
            ),
            False,
        ),
        (
            SchemaEntry(
                "table",
                "sqlite_stat1",
                "sqlite_stat1",
                4,
                "CREATE TABLE sqlite_stat1(tbl,idx,stat)",
            ),
            False,
        ),
        (SchemaEntry("table", "v", "v", 0, "CREATE VIRTUAL TABLE v USING fts5(x)"), False),
        (
            SchemaEntry(
                "table",
                "v_data",
                "v_data",
                5,
                "CREATE TABLE 'v_data'(id INTEGER PRIMARY KEY, block BLOB)",
            ),
            True,
        ),
        (SchemaEntry("index", "i", "t", 6, "CREATE INDEX i ON t(a)"), False),
        (SchemaEntry("view", "vw", "vw", 0, "CREATE VIEW vw AS SELECT 1"), False),
        (SchemaEntry("trigger", "tr", "t", 0, "CREATE TRIGGER tr ..."), False),
    ],
)
def test_has_data_table(entry, expected):
    assert has_data_table(entry) is expected


def test_alter_plans():
    def plan(old: str, new: str):
        return ddl.alter_plan(parse_create_table(old), parse_create_table(new))

    added = plan("CREATE TABLE t (a TEXT, b INT)", "CREATE TABLE t (a TEXT, b INT, c REAL)")
    assert added is not None and [c.name for c in added.added] == ["c"]
    assert not added.renames and not added.dropped
    renamed = plan("CREATE TABLE t (a TEXT, b INT)", "CREATE TABLE t (a TEXT, bb INT)")
    assert renamed is not None and renamed.renames == [("b", "bb")]
    dropped = plan("CREATE TABLE t (a TEXT, b INT, c REAL)", "CREATE TABLE t (a TEXT, c REAL)")
    assert dropped is not None and dropped.dropped == ["b"]
    assert plan("CREATE TABLE t (a TEXT)", "CREATE TABLE t (a INT)") is None
    assert (
        plan("CREATE TABLE t (a INTEGER PRIMARY KEY, b)", "CREATE TABLE t (a INT PRIMARY KEY, b)")
        is None
    )
    virtual = plan("CREATE TABLE t (a INT)", "CREATE TABLE t (a INT, v AS (a+1) VIRTUAL)")
    assert virtual is not None and virtual.is_empty()


@pytest.mark.parametrize("version", ["10.11", "12.0-rc"])
def test_every_jellyfin_table(pg, jellyfin_schema, version):
    sqlite = sqlite3.connect(":memory:")
    sqlite.executescript(jellyfin_schema(version).read_text())
    entries = [
        SchemaEntry(*row)
        for row in sqlite.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema")
    ]
    tables = tables_of(entries)
    names = {t.name for t in tables}
    assert "BaseItems" in names and "sqlite_sequence" not in names
    for table in tables:
        pg.execute(ddl.create_table("public", table))
        info = sqlite.execute(f'PRAGMA table_xinfo("{table.name}")').fetchall()
        stored = [row[1] for row in info if row[6] != 2]  # hidden=2: VIRTUAL generated
        assert [c[0] for c in columns_of(pg, table.name)][: len(stored)] == stored
