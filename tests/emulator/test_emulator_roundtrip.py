"""Import -> export round trips: integrity_check ok and every row equal (values and types),
on every backend (`store_url`: PostgreSQL and MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgfs.emulator.exporter import export_file, verify
from pgfs.emulator.importer import import_file
from pgfs.store import Store, open_store
from tests.support.dbgen import build_all_types, build_jellyfin
from tests.support.invariants import (
    all_rows,
    assert_export_matches,
    assert_same_database,
    assert_store_matches,
    integrity,
    open_readonly,
)
from tests.support.server_view import ServerView, view_of

TYPE_NAMES = {
    "postgres": {"text": "text", "integer": "bigint", "real": "double precision"},
    "mariadb": {"text": "longtext", "integer": "bigint", "real": "double"},
}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def server(store_url: str) -> ServerView:
    return view_of(store_url)


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


def test_rows_are_typed_in_the_server(
    store, tmp_path: Path, server: ServerView, jellyfin_schema
) -> None:
    source = build_jellyfin(tmp_path / "jellyfin.db", jellyfin_schema("10.11"), items=30)
    import_file(store, source, progress=False)
    conn = open_readonly(source)
    item_id, name, data, folder = conn.execute(
        'SELECT "Id", "Name", "Data", "IsFolder" FROM "BaseItems" ORDER BY rowid LIMIT 1 OFFSET 5'
    ).fetchone()
    (logs,) = conn.execute('SELECT count(*) FROM "ActivityLogs"').fetchone()
    conn.close()
    q = server.quote
    rows = server.query(
        f"SELECT {q('Name')}, {q('Data')}, {q('IsFolder')}, _pgfs_inexact"
        f" FROM {server.table('jellyfin', 'BaseItems')} WHERE {q('Id')} = %s",
        (item_id,),
    )
    assert rows == [(name, data, folder, False)]
    types = dict(
        server.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'jellyfin' AND table_name = 'BaseItems'"
        )
    )
    names = TYPE_NAMES[server.backend]
    assert types["Id"] == names["text"]
    assert types["IsFolder"] == names["integer"]
    assert types["CommunityRating"] == names["real"]
    assert types["_rowid"] == "bigint"
    assert server.count("ActivityLogs") == logs


def test_lossless_values_in_the_server(store, tmp_path: Path, server: ServerView) -> None:
    source = build_all_types(tmp_path / "src.db")
    import_file(store, source, progress=False)
    # text in an INTEGER column cannot be typed: the row is inexact, its record
    # (kept for every row) holds the value
    columns = ["i", "t", "_pgfs_inexact", "_pgfs_record"]
    ((i, t, inexact, kept),) = server.select("types", columns, "id = 200")
    assert (i, t, inexact, kept is not None) == (None, "12", True, True)
    # DATETIME has NUMERIC affinity: a date text does not fit a number
    columns = ["dbl", "flt", "dec", "flag", "ch", "dt", "_pgfs_inexact"]
    assert server.select("types", columns, "id = 301") == [(1.0, 2.5, 3.14, 1, "char", None, True)]
    # an integer in a column without type (BLOB affinity) does not fit a blob column
    columns = ["i", "untyped", "_pgfs_inexact"]
    assert server.select("types", columns, "id = 7") == [(32767, None, True)]
    out = tmp_path / "out.db"
    export_file(store, out, progress=False)
    assert_same_database(source, out)
