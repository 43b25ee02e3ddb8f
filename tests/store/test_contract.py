"""The store contract: every backend (PostgreSQL, MariaDB) against a real server.

Each test runs once per backend (`store_url`): initialise, imports and reads,
row, chain and page changes, failures that must change nothing, schema changes,
and what an operator sees in the server (`server`, through the server's own
driver).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgfs.sqlite.header import DatabaseHeader, TextEncoding
from pgfs.sqlite.record import encode_record
from pgfs.sqlite.schema import SchemaEntry, parse_create_table
from pgfs.store import Store, open_store
from pgfs.store.changeset import (
    Changeset,
    CommitSource,
    PageKind,
    PageRecord,
    SchemaChange,
    TableRows,
)
from pgfs.store.errors import (
    LeaseHeldError,
    LeaseLostError,
    StoreConflictError,
    StoreError,
    StoreUnavailableError,
)
from pgfs.store.interface import LeaseHolder
from tests.support.server_view import ServerView, view_of

from .helpers import (
    SqliteFile,
    apply,
    bad_page_changeset,
    changeset_from_file,
    ddl_change,
    entries_for,
    header,
    import_file,
    record,
    table_change,
)

WAL = CommitSource.WAL

HDR = header()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.initialise()
    opened.acquire_lease(LeaseHolder.this_process("tests/store"))
    yield opened
    opened.close()


@pytest.fixture
def server(store_url: str) -> ServerView:
    return view_of(store_url)


def test_initialise_is_idempotent(store: Store):
    store.initialise()
    assert store.is_empty()
    state = store.load_state()
    assert state.header is None and state.page_count == 0 and state.tables == {}
    assert store.inspect()["initialised"] is True


def test_initialise_refuses_foreign_tables(store_url: str, server: ServerView):
    server.create_foreign_table("jellyfin", "someone_elses")
    with open_store(store_url) as store:
        with pytest.raises(StoreConflictError, match="someone_elses"):
            store.initialise()
        assert store.is_empty()
    assert not server.tables("pgfs")
    with open_store(store_url, data_schema="other") as store:
        store.initialise()
    server.create_foreign_table("pgfs", "extra")
    with open_store(store_url, data_schema="other") as store, pytest.raises(StoreConflictError):
        store.initialise()


def test_initialise_accepts_its_own_tables(store: Store, sample: SqliteFile):
    import_file(store, sample.path)
    store.initialise()
    assert not store.is_empty()


def test_import_and_read_back(store: Store, sample: SqliteFile, server: ServerView):
    import_file(store, sample.path, parts=3)
    state = store.load_state()
    assert state.header == sample.data[:100]
    assert state.page_size == 1024 and state.page_count == sample.page_count
    assert state.encoding is TextEncoding.UTF8
    assert sorted(state.tables) == ["grown", "items", "kv", "tags"]
    assert [e.name for e in state.entries] == [e.name for e in sample.entries()]
    roots = {e.name: e.rootpage for e in sample.entries()}
    for name in ("items", "tags", "grown"):
        rows = list(sample.rows(roots[name]))
        expected = {rowid: payload for rowid, payload, _ in rows}
        assert store.row_payloads(name, expected) == expected
        cells = store.leaf_rows(name, [(min(expected), max(expected))])
        assert [c.rowid for c in cells] == sorted(expected)
        assert all(c.payload == expected[c.rowid] for c in cells)
        first_overflow = {rowid: chain[0] if chain else None for rowid, _, chain in rows}
        assert {c.rowid: c.first_overflow for c in cells} == first_overflow
        assert list(store.table_rows(name)) == [
            (rowid, expected[rowid]) for rowid in sorted(expected)
        ]
    chains = {rowid: chain for rowid, _, chain in sample.rows(roots["items"]) if chain}
    assert chains and store.overflow_chains("items", [*chains, 10**9]) == chains
    some = store.leaf_rows("items", [(5, 7), (299, 400)])
    assert [r.rowid for r in some] == [5, 6, 7, 299, 300, 301]
    report = store.inspect()
    tables = {t["name"]: t for t in report["tables"]}
    assert tables["items"]["rows"] == 301 and tables["items"]["inexact_rows"] == 1
    assert tables["grown"]["short_records"] == 20
    assert tables["kv"]["without_rowid"] and tables["kv"]["rows"] == 40
    assert report["inexact_rows"] == 1
    assert report["header"]["page_size"] == 1024
    assert report["page_records"] == sample.page_count
    (commit,) = report["last_commits"]
    assert commit["source"] == "import" and commit["inserted"] == 301 + 50 + 40 + 21
    shorts = {row[0] for row in server.select("grown", ["_pgfs_fields"])}
    assert shorts == {2, None}
    # The typed columns hold the values an operator expects.
    (row,) = server.select("items", ["id", "name", "score", "price"], "id = 4")
    assert row[:3] == (4, "item 4", 1.0) and float(row[3]) == pytest.approx(3.96)
    assert server.count("commit_log", "pgfs") == 1


@pytest.mark.parametrize("count", [5, 800], ids=["small", "bulk"])
def test_row_changes_and_counts(store: Store, count: int):
    first = {i: record(None, f"v{i}", i) for i in range(1, count + 1)}
    stats = apply(
        store, table_change("t", "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n INT)", first)
    )
    assert stats.inserted == {"t": count} and stats.updated == {} and stats.deleted == {}
    changed = {i: record(None, f"w{i}", -i) for i in range(count // 2, count + count // 2)}
    updated = {k: v for k, v in changed.items() if k in first}
    inserted = {k: v for k, v in changed.items() if k not in first}
    deletes = {1}
    stats = apply(store, table_change("t", "", inserted, updated=updated, deleted=deletes))
    assert stats.deleted == {"t": 1}
    assert stats.updated == {"t": count - count // 2 + 1}
    assert stats.inserted == {"t": len(changed) - stats.updated["t"]}
    expected = {**{k: v for k, v in first.items() if k not in deletes}, **changed}
    assert store.row_payloads("t", range(0, 2 * count + 2)) == expected
    assert stats.ms > 0


def test_hidden_rowid_table_upserts(store: Store):
    create = "CREATE TABLE h (k TEXT PRIMARY KEY, v REAL)"
    rows = {i * 10: record(f"k{i}", i + 0.5) for i in range(300)}
    apply(store, table_change("h", create, rows))
    update = {10: record("k1", 2.0), 7: record("x", None)}
    stats = apply(store, table_change("h", "", {7: update[7]}, updated={10: update[10]}))
    assert stats.updated == {"h": 1} and stats.inserted == {"h": 1}
    assert store.row_payloads("h", [7, 10]) == update


def test_replace_all_drops_rows_and_chains(store: Store):
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"
    changeset = table_change("t", create, {1: record(None, "a"), 2: record(None, "b")})
    changeset.chains = {("t", 1): [5, 6], ("t", 2): [7]}
    apply(store, changeset)
    replacement = table_change("t", "", {3: record(None, "c")}, replace_all=True)
    replacement.chains = {("t", 3): [8]}
    stats = apply(store, replacement)
    assert stats.deleted == {"t": 2} and stats.inserted == {"t": 1}
    assert store.row_payloads("t", [1, 2, 3]) == {3: record(None, "c")}
    assert store.overflow_chains("t", [1, 2, 3]) == {3: [8]}


def test_chains_follow_rows(store: Store):
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"
    changeset = table_change("t", create, {i: record(None, str(i)) for i in range(1, 5)})
    changeset.chains = {("t", i): [10 + i, 20 + i] for i in range(1, 5)}
    apply(store, changeset)
    later = table_change("t", "", {}, deleted={1})
    later.chains = {("t", 2): [], ("t", 3): [99]}
    apply(store, later)
    assert store.overflow_chains("t", range(1, 5)) == {3: [99], 4: [14, 24]}
    many = table_change("t", "", {})
    many.chains = {("t", i): [i, i + 1] for i in range(600)}
    apply(store, many)
    assert store.overflow_chains("t", [4, 300])[300] == [300, 301]


def test_pages_upsert_and_truncate(store: Store):
    pages = [PageRecord(1, PageKind.TABLE_LEAF, "sqlite_schema", data=b"\1" * 1024)]
    pages += [
        PageRecord(i, PageKind.TABLE_LEAF, "t", lo=i * 10, hi=i * 10 + 9) for i in range(2, 600)
    ]
    pages += [PageRecord(600, PageKind.OVERFLOW, "t", lo=42, seq=0)]
    pages += [PageRecord(601, PageKind.FREE, None)]
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"
    changeset = table_change("t", create, {})
    changeset.pages = pages
    assert apply(store, changeset).pages == len(pages)
    assert store.page_records([1, 600, 601, 9999]) == {1: pages[0], 600: pages[-2], 601: pages[-1]}
    shrink = Changeset(
        CommitSource.JOURNAL,
        HDR,
        100,
        pages=[PageRecord(2, PageKind.INDEX_LEAF, "i", data=b"x")],
        removed_pages_from=101,
    )
    stats = apply(store, shrink)
    assert stats.pages == 1
    assert [p.pgno for p in store.pages_of("t")] == list(range(3, 101))
    assert store.page_records([2])[2] == PageRecord(2, PageKind.INDEX_LEAF, "i", data=b"x")
    assert not store.is_empty()


def test_failed_apply_changes_nothing(store: Store, sample: SqliteFile, server: ServerView):
    import_file(store, sample.path)
    before = server.snapshot()
    with pytest.raises(StoreError) as info:
        apply(store, bad_page_changeset(sample))
    assert not isinstance(info.value, StoreUnavailableError)
    assert server.snapshot() == before
    # The next commit works.
    stats = apply(store, table_change("tags", "", {}, updated={1: record("changed", 5)}))
    assert stats.updated == {"tags": 1}


def test_error_in_a_streamed_import_stores_nothing(store: Store, sample: SqliteFile):
    parts = changeset_from_file(sample.path, parts=3)
    parts[2].pages.append(PageRecord(0, PageKind.FREE, None))
    with pytest.raises(StoreError):
        store.write(parts, source=CommitSource.IMPORT)
    assert store.is_empty()
    assert store.load_state().tables == {}


def test_parts_that_write_a_page_again(store: Store, server: ServerView):
    """The last record of a page wins across the parts of one write too: the pages an
    empty store has not seen go straight in, a page written again replaces the first."""
    first = [PageRecord(p, PageKind.FREE, None, data=b"a" * 16) for p in range(1, 401)]
    second = [PageRecord(p, PageKind.FREE, None, data=b"b" * 16) for p in range(301, 701)]
    parts = [
        Changeset(CommitSource.IMPORT, HDR, 700, pages=first),
        Changeset(CommitSource.IMPORT, HDR, 700, pages=second),
    ]
    store.write(parts, source=CommitSource.IMPORT)
    rows = server.select("pages", ["pgno", "data"], schema="pgfs")
    assert [pgno for pgno, _ in rows] == list(range(1, 701))
    assert {bytes(data) for pgno, data in rows if pgno <= 300} == {b"a" * 16}
    assert {bytes(data) for pgno, data in rows if pgno > 300} == {b"b" * 16}


def test_a_failing_part_rolls_back_the_parts_before_it(store: Store):
    parts = [
        table_change("a", "CREATE TABLE a (x)", {1: record(1)}),
        Changeset(WAL, HDR, 1, pages=[PageRecord(1, "bogus", None)]),  # type: ignore[arg-type]
    ]
    with pytest.raises(StoreError):
        store.write(parts, source=WAL)
    assert store.load_state().tables == {}


def test_reads_survive_a_lost_connection(store: Store, sample: SqliteFile, server: ServerView):
    import_file(store, sample.path)
    assert server.end_store_sessions() >= 1
    assert store.row_payloads("tags", [1]) == {1: sample.records("tags")[1]}
    assert len(store.leaf_rows("tags", [(1, 5)])) == 5


def test_schema_changes(store: Store, server: ServerView):
    enc = TextEncoding.UTF8
    s1 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INT)"
    v1 = parse_create_table(s1)
    rows = {i: encode_record([None, f"a{i}", i], enc) for i in range(1, 6)}
    changeset = table_change("t", s1, rows)
    changeset.chains = {("t", 1): [50]}
    changeset.pages = [
        PageRecord(2, PageKind.TABLE_LEAF, "t", 1, 5),
        PageRecord(50, PageKind.OVERFLOW, "t", 1, seq=0),
    ]
    apply(store, changeset)

    # ADD COLUMN: old rows keep their 3-field records, marked with their field count.
    s2 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INT, c REAL)"
    v2 = parse_create_table(s2)
    full = encode_record([None, "new", 6, 1.5], enc)
    apply(
        store,
        ddl_change(SchemaChange(altered=[(v1, v2)]), s2, rows={"t": TableRows("t", {6: full})}),
    )
    assert store.row_payloads("t", range(1, 7)) == rows | {6: full}
    fields = dict(server.select("t", ["id", "_pgfs_fields"]))
    assert fields == {1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: None}

    # RENAME COLUMN, then RENAME TABLE: values, pages and chains follow.
    s3 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, bee INT, c REAL)"
    apply(store, ddl_change(SchemaChange(altered=[(v2, parse_create_table(s3))]), s3))
    s4 = 'CREATE TABLE "T2" (id INTEGER PRIMARY KEY, a TEXT, bee INT, c REAL)'
    v4 = parse_create_table(s4)
    apply(store, ddl_change(SchemaChange(renamed=[("t", "T2")]), s4))
    assert server.select("T2", ["bee"], "id = 2") == [(2,)]
    assert list(store.load_state().tables) == ["T2"]
    assert [p.pgno for p in store.pages_of("T2")] == [2, 50]
    assert store.overflow_chains("T2", [1]) == {1: [50]}
    assert store.row_payloads("T2", range(1, 7)) == rows | {6: full}

    # DROP COLUMN: SQLite rewrites every row; the changeset carries them all.
    s5 = 'CREATE TABLE "T2" (id INTEGER PRIMARY KEY, a TEXT, c REAL)'
    v5 = parse_create_table(s5)
    rewritten = {i: encode_record([None, f"a{i}", 2.5], enc) for i in range(1, 6)}
    rewritten[6] = encode_record([None, "new", 1.5], enc)
    rows_t2 = TableRows("T2", {}, rewritten)
    apply(store, ddl_change(SchemaChange(altered=[(v4, v5)]), s5, rows={"T2": rows_t2}))
    assert store.row_payloads("T2", range(1, 7)) == rewritten
    columns = server.columns("T2")
    assert "bee" not in columns and "c" in columns

    # An affinity change (writable_schema) rewrites the table, still losslessly.
    s6 = 'CREATE TABLE "T2" (id INTEGER PRIMARY KEY, a INTEGER, c TEXT)'
    apply(store, ddl_change(SchemaChange(altered=[(v5, parse_create_table(s6))]), s6))
    assert store.row_payloads("T2", range(1, 7)) == rewritten
    assert len([r for r in server.select("T2", ["_pgfs_record"]) if r[0] is not None]) == 6

    # Dropped and created again under the same name in one commit (a rebuild).
    s7 = 'CREATE TABLE "T2" (k TEXT PRIMARY KEY)'
    x = encode_record(["x"], enc)
    change = SchemaChange(created=[parse_create_table(s7)], dropped=["T2"])
    apply(store, ddl_change(change, s7, rows={"T2": TableRows("T2", {1: x})}))
    assert store.row_payloads("T2", [1, 2]) == {1: x}
    assert store.overflow_chains("T2", [1]) == {}

    # Swapped names in one commit.
    s8 = "CREATE TABLE o (z TEXT)"
    o = encode_record(["o"], enc)
    change = SchemaChange(created=[parse_create_table(s8)])
    apply(store, ddl_change(change, s7, s8, rows={"o": TableRows("o", {1: o})}))
    swapped = (s7.replace('"T2"', "o"), s8.replace("o (", '"T2" ('))
    apply(store, ddl_change(SchemaChange(renamed=[("o", "T2"), ("T2", "o")]), *swapped))
    assert server.select("T2", ["z"]) == [("o",)]
    assert server.select("o", ["k"]) == [("x",)]
    assert store.row_payloads("T2", [1]) == {1: o}

    apply(store, ddl_change(SchemaChange(dropped=["o", "T2"])))
    assert server.tables() == set()
    assert store.load_state().tables == {}


def test_schema_change_must_match_sqlite_schema(store: Store, server: ServerView):
    before = server.snapshot()
    changeset = table_change("t", "CREATE TABLE t (a TEXT)", {1: record("x")})
    changeset.schema_entries = entries_for("CREATE TABLE t (a INT)")
    with pytest.raises(StoreError, match="does not match sqlite_schema"):
        apply(store, changeset)
    changeset.schema_entries = []
    with pytest.raises(StoreError, match="does not match sqlite_schema"):
        apply(store, changeset)
    assert server.snapshot() == before


def test_state_follows_the_schema_mirror(store: Store):
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"
    entries = [
        SchemaEntry("table", "t", "t", 2, create),
        SchemaEntry(
            "table",
            "sqlite_sequence",
            "sqlite_sequence",
            3,
            "CREATE TABLE sqlite_sequence(name,seq)",
        ),
        SchemaEntry("index", "ti", "t", 4, "CREATE INDEX ti ON t(s)"),
    ]
    changeset = table_change("t", create, {1: record(None, "x")})
    changeset.schema_entries = entries
    apply(store, changeset)
    state = store.load_state()
    assert list(state.entries) == entries and list(state.tables) == ["t"]
    assert state.tables["t"] == parse_create_table(create)


def test_without_rowid_mirror_is_replaced_wholesale(store: Store, server: ServerView):
    create = "CREATE TABLE w (k TEXT, v INT, PRIMARY KEY (v, k)) WITHOUT ROWID"
    first = {i: record(i, f"k{i}") for i in range(3)}
    apply(store, table_change("w", create, first))
    stats = apply(store, table_change("w", "", {0: record(9, "only")}))
    assert stats.inserted == {"w": 1}
    assert server.select("w", ["k", "v"]) == [("only", 9)]
    assert [payload for _, payload in store.table_rows("w")] == [record(9, "only")]
    with pytest.raises(StoreError, match="WITHOUT ROWID"):
        store.leaf_rows("w", [(0, 10)])


def test_replace_is_atomic(store: Store, sample: SqliteFile, server: ServerView):
    import_file(store, sample.path)
    parts = [Changeset(CommitSource.IMPORT, HDR, 1, pages=[PageRecord(-1, PageKind.FREE, None)])]
    with pytest.raises(StoreError):  # a failed import --replace leaves the old database
        store.write(parts, source=CommitSource.IMPORT, clear=True)
    assert sorted(store.load_state().tables) == ["grown", "items", "kv", "tags"]
    other = sample.path.with_name("other.db")
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE fresh (a TEXT)")
    conn.commit()
    conn.close()
    import_file(store, other, clear=True)
    assert sorted(store.load_state().tables) == ["fresh"]
    assert server.tables() == {"fresh"}
    assert server.select("commit_log", ["id", "source"], schema="pgfs") == [
        (1, "import"),
        (2, "import"),
    ]


def test_uninitialised_store(store_url: str):
    with open_store(store_url) as store:
        assert store.is_empty()
        assert store.load_state().tables == {}
        assert store.inspect()["initialised"] is False
        with pytest.raises(StoreError):
            store.acquire_lease(LeaseHolder.this_process("test"))


def test_utf16_database(store: Store, tmp_path: Path):
    path = tmp_path / "utf16.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA encoding = 'UTF-16be'")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, r REAL)")
    conn.executemany("INSERT INTO t (s, r) VALUES (?, ?)", [("héllo 中文 😀", 1.0), ("x", 0.5)])
    conn.commit()
    conn.close()
    import_file(store, path)
    state = store.load_state()
    assert state.encoding is TextEncoding.UTF16BE
    expected = SqliteFile(path).records("t")
    assert store.row_payloads("t", expected) == expected
    assert store.inspect()["inexact_rows"] == 0


def test_import_of_a_big_database_streams(store: Store, tmp_path: Path):
    """20 MB in 4 parts through COPY; the typed rows need no side records."""
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, body TEXT, n INTEGER, r REAL)")
    conn.executemany(
        "INSERT INTO docs VALUES (?, ?, ?, ?)",
        ((f"{i:08x}", "lorem ipsum " * 170, i, i / 7) for i in range(10_000)),
    )
    conn.commit()
    conn.close()
    started = time.perf_counter()
    import_file(store, path, parts=4)
    elapsed = time.perf_counter() - started
    report = store.inspect()
    (docs,) = report["tables"]
    assert docs["rows"] == 10_000 and docs["inexact_rows"] == 0
    assert elapsed < 30, elapsed


def test_jellyfin_schema_import(store: Store, jellyfin_schema, tmp_path: Path):
    for version in ("10.11", "12.0-rc"):
        path = tmp_path / f"jf-{version}.db"
        conn = sqlite3.connect(path)
        conn.executescript(jellyfin_schema(version).read_text())
        conn.commit()
        conn.close()
        import_file(store, path, clear=True)
        state = store.load_state()
        assert "BaseItems" in state.tables and "sqlite_sequence" not in state.tables
        assert len(state.tables) >= 30


def test_chinook_round_trip(store: Store, shared_dir: Path):
    path = shared_dir / "samples" / "Chinook_Sqlite.sqlite"
    if not path.exists():
        pytest.skip("Chinook sample absent")
    import_file(store, path, parts=2)
    db = SqliteFile(path)
    report = store.inspect()
    assert sum(t["rows"] for t in report["tables"]) == 15607
    for table in store.load_state().tables:
        expected = db.records(table)
        assert store.row_payloads(table, expected) == expected
    assert DatabaseHeader.parse(store.load_state().header or b"").page_size == db.header.page_size


def test_one_writer_takeover_fences_the_old_one(store: Store, store_url: str, sample):
    """A second writer is refused naming the holder; --takeover fences the first (its
    next write fails and changes nothing); the new writer's writes go through."""
    import_file(store, sample.path)
    second = open_store(store_url)
    try:
        with pytest.raises(LeaseHeldError, match="tests/store"):
            second.acquire_lease(LeaseHolder.this_process("second"))
        status = second.acquire_lease(LeaseHolder.this_process("second"), takeover=True)
        assert status.held and status.epoch == store.lease_status().epoch + 1
        with pytest.raises(LeaseLostError):
            apply(store, table_change("tags", "", {}, updated={1: record("old writer", 1)}))
        assert not store.lease_status().held
        apply(second, table_change("tags", "", {}, updated={1: record("new writer", 2)}))
        assert second.row_payloads("tags", [1]) == {1: record("new writer", 2)}
    finally:
        second.close()


def test_a_dropped_lease_connection_is_taken_again(
    store: Store, sample: SqliteFile, server: ServerView
):
    import_file(store, sample.path)
    epoch = store.lease_status().epoch
    assert server.end_store_sessions() >= 1  # the lease's, the writer's, the reads'
    time.sleep(0.2)
    store.check_lease()
    apply(store, table_change("tags", "", {}, updated={1: record("after", 1)}))
    status = store.lease_status()
    assert status.held and status.epoch == epoch and status.reacquired == 1
    assert store.row_payloads("tags", [1]) == {1: record("after", 1)}
