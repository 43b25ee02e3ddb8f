"""Import -> export round trips: integrity_check ok and every row equal (values and types)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from pgfs.emulator.exporter import export_file, verify
from pgfs.emulator.importer import import_file
from tests.support.dbgen import build_all_types, build_jellyfin
from tests.support.invariants import (
    all_rows,
    assert_export_matches,
    assert_same_database,
    assert_store_matches,
    integrity,
    open_readonly,
)


def roundtrip(store, source: Path, folder: Path) -> Path:
    assert integrity(source) == ["ok"]
    report = import_file(store, source, progress=False)
    assert report.pages == source.stat().st_size // report.page_size
    out = assert_export_matches(store, source, folder)
    assert out.stat().st_size == source.stat().st_size
    assert_store_matches(store, source)
    assert verify(store).ok
    return out


@pytest.mark.parametrize("page_size", [1024, 4096, 65536])
def test_all_types_page_sizes(store, tmp_path: Path, page_size: int) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=page_size)
    roundtrip(store, source, tmp_path)


@pytest.mark.parametrize(
    ("auto_vacuum", "encoding"),
    [("FULL", "UTF-8"), ("INCREMENTAL", "UTF-8"), ("NONE", "UTF-16le"), ("NONE", "UTF-16be")],
)
def test_all_types_vacuum_modes_and_encodings(
    store, tmp_path: Path, auto_vacuum: str, encoding: str
) -> None:
    source = build_all_types(tmp_path / "src.db", auto_vacuum=auto_vacuum, encoding=encoding)
    roundtrip(store, source, tmp_path)


def test_freelist_survives(store, tmp_path: Path) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=1024)
    conn = open_readonly(source)
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.close()
    assert free > 10
    out = roundtrip(store, source, tmp_path)
    conn = open_readonly(out)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == free
    conn.close()


def test_chinook(store, tmp_path: Path, shared_dir: Path) -> None:
    source = shared_dir / "samples" / "Chinook_Sqlite.sqlite"
    out = roundtrip(store, source, tmp_path)
    assert out.read_bytes() == source.read_bytes()  # a compact file renders byte for byte
    conn = open_readonly(source)
    assert sum(len(rows) for rows in all_rows(conn).values()) == 15607
    conn.close()


@pytest.mark.parametrize("version", ["10.11", "12.0-rc"])
def test_jellyfin(store, tmp_path: Path, jellyfin_schema, version: str) -> None:
    source = build_jellyfin(tmp_path / "jellyfin.db", jellyfin_schema(version), items=150)
    roundtrip(store, source, tmp_path)


def test_rows_are_typed_in_postgresql(store, tmp_path: Path, pg_dsn: str, jellyfin_schema) -> None:
    source = build_jellyfin(tmp_path / "jellyfin.db", jellyfin_schema("10.11"), items=30)
    import_file(store, source, progress=False)
    conn = open_readonly(source)
    item_id, name, data, folder = conn.execute(
        'SELECT "Id", "Name", "Data", "IsFolder" FROM "BaseItems" ORDER BY rowid LIMIT 1 OFFSET 5'
    ).fetchone()
    (logs,) = conn.execute('SELECT count(*) FROM "ActivityLogs"').fetchone()
    conn.close()
    with psycopg.connect(pg_dsn) as pg:
        row = pg.execute(
            'SELECT "Name", "Data", "IsFolder", _pgfs_inexact FROM jellyfin."BaseItems"'
            ' WHERE "Id" = %s',
            (item_id,),
        ).fetchone()
        assert row == (name, data, folder, False)
        types = dict(
            pg.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'jellyfin' AND table_name = 'BaseItems'"
            ).fetchall()
        )
        assert types["Id"] == "text"
        assert types["IsFolder"] == "bigint"
        assert types["CommunityRating"] == "double precision"
        assert types["_rowid"] == "bigint"
        assert pg.execute('SELECT count(*) FROM jellyfin."ActivityLogs"').fetchone() == (logs,)


def test_lossless_values_in_postgresql(store, tmp_path: Path, pg_dsn: str) -> None:
    source = build_all_types(tmp_path / "src.db")
    import_file(store, source, progress=False)
    with psycopg.connect(pg_dsn) as pg:
        # text in an INTEGER column cannot be typed: the row is inexact, its record
        # (kept for every row) holds the value
        row = pg.execute(
            "SELECT i, t, _pgfs_inexact, _pgfs_record IS NOT NULL FROM jellyfin.types"
            " WHERE id = 200"
        )
        assert row.fetchone() == (None, "12", True, True)
        row = pg.execute(
            "SELECT dbl, flt, dec, flag, ch, dt, _pgfs_inexact FROM jellyfin.types WHERE id = 301"
        )
        # DATETIME has NUMERIC affinity: a date text does not fit numeric
        assert row.fetchone() == (1.0, 2.5, Decimal("3.14"), 1, "char", None, True)
        # an integer in a column without type (BLOB affinity) does not fit bytea
        row = pg.execute("SELECT i, untyped, _pgfs_inexact FROM jellyfin.types WHERE id = 7")
        assert row.fetchone() == (32767, None, True)
    out = tmp_path / "out.db"
    export_file(store, out, progress=False)
    assert_same_database(source, out)
