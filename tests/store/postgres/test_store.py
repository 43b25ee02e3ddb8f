"""Store against a real PostgreSQL: initialise, apply, reads, failures, schema changes."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgfs.sqlite.header import DatabaseHeader, TextEncoding
from pgfs.sqlite.record import encode_record
from pgfs.sqlite.schema import SchemaEntry, parse_create_table
from pgfs.store.changeset import (
    Changeset,
    CommitSource,
    PageKind,
    PageRecord,
    SchemaChange,
    TableRows,
)
from pgfs.store.errors import StoreConflictError, StoreError, StoreUnavailableError
from pgfs.store.interface import LeaseHolder
from pgfs.store.postgres import PostgresStore as Store
from pgfs.store.postgres.writer import SMALL_BATCH

from ..helpers import SqliteFile, apply, changeset_from_file, header, import_file, record

WAL = CommitSource.WAL

HDR = header()


def snapshot(conn: psycopg.Connection) -> dict:
    """Every relation of the pgfs and jellyfin schemas with its columns and rows."""
    out = {}
    relations = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('pgfs', 'jellyfin') AND c.relkind = 'r' ORDER BY 1, 2"
    ).fetchall()
    for schema, name in relations:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, name),
        ).fetchall()
        rows = conn.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
        ).fetchall()
        out[(schema, name)] = (columns, sorted(map(repr, rows)))
    return out


def make_db(path: Path) -> Path:
    """A SQLite database with the shapes the store must handle."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA page_size = 1024;
        CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, score REAL,
                            price NUMERIC, data BLOB);
        CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER);
        CREATE TABLE kv (k TEXT PRIMARY KEY, v REAL) WITHOUT ROWID;
        CREATE TABLE grown (a TEXT, b INTEGER);
        CREATE INDEX items_name ON items(name);
        CREATE VIEW big AS SELECT * FROM items WHERE score > 1;
        """
    )
    for i in range(1, 301):
        conn.execute(
            "INSERT INTO items (name, score, price, data) VALUES (?, ?, ?, ?)",
            (f"item {i}", i / 4, i * 0.99, bytes([i % 256]) * (i * 7)),
        )
    conn.execute("INSERT INTO items (name, score) VALUES (?, ?)", ("odd", "not a number"))
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [(f"tag{i}", i) for i in range(50)])
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(f"k{i}", i * 1.5) for i in range(40)])
    conn.executemany("INSERT INTO grown VALUES (?, ?)", [(f"g{i}", i) for i in range(20)])
    conn.execute("ALTER TABLE grown ADD COLUMN c REAL DEFAULT 2.5")
    conn.execute("INSERT INTO grown VALUES ('new', 1, 3.5)")
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def sample(tmp_path: Path) -> SqliteFile:
    return SqliteFile(make_db(tmp_path / "sample.db"))


def test_initialise_is_idempotent(store: Store):
    store.initialise()
    assert store.is_empty()
    state = store.load_state()
    assert state.header is None and state.page_count == 0 and state.tables == {}
    assert store.inspect()["initialised"] is True


def test_initialise_refuses_foreign_tables(pg_dsn: str, pg: psycopg.Connection):
    pg.execute("CREATE SCHEMA jellyfin")
    pg.execute("CREATE TABLE jellyfin.someone_elses (x int)")
    with Store.connect(pg_dsn) as store:
        with pytest.raises(StoreConflictError, match="someone_elses"):
            store.initialise()
        assert store.is_empty()
    assert pg.execute("SELECT to_regnamespace('pgfs')").fetchone() == (None,)
    with Store.connect(pg_dsn, data_schema="other") as store:
        store.initialise()
    pg.execute("CREATE TABLE pgfs.extra (x int)")
    with Store.connect(pg_dsn, data_schema="other") as store, pytest.raises(StoreConflictError):
        store.initialise()


def test_initialise_accepts_its_own_tables(store: Store, sample: SqliteFile):
    import_file(store, sample.path)
    store.initialise()
    assert not store.is_empty()


def test_import_and_read_back(store: Store, sample: SqliteFile, pg: psycopg.Connection):
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
    shorts = pg.execute("SELECT DISTINCT _pgfs_fields FROM jellyfin.grown").fetchall()
    assert sorted(shorts, key=repr) == sorted([(2,), (None,)], key=repr)
    # The typed columns hold the values an operator expects.
    row = pg.execute("SELECT id, name, score, price FROM jellyfin.items WHERE id = 4").fetchone()
    assert row[:3] == (4, "item 4", 1.0) and float(row[3]) == pytest.approx(3.96)
    assert pg.execute("SELECT count(*) FROM pgfs.commit_log").fetchone() == (1,)


def entries_for(*creates: str) -> list[SchemaEntry]:
    """sqlite_schema rows for these CREATE TABLE statements."""
    out = []
    for root, text in enumerate(creates, start=2):
        name = parse_create_table(text).name
        out.append(SchemaEntry("table", name, name, root, text))
    return out


def _table_change(
    table: str, create: str, inserted: dict[int, bytes], *, updated=None, deleted=None, **kw
) -> Changeset:
    """Row changes of `table`; with `create`, the table is created first."""
    rows = TableRows(table, inserted, updated or {}, deleted or set(), **kw)
    changeset = Changeset(WAL, HDR, 10, rows={table: rows})
    if create:
        changeset.schema = SchemaChange(created=[parse_create_table(create)])
        changeset.schema_entries = entries_for(create)
    return changeset


@pytest.mark.parametrize("count", [5, SMALL_BATCH * 3], ids=["pipelined", "copy"])
def test_row_changes_and_counts(store: Store, count: int):
    first = {i: record(None, f"v{i}", i) for i in range(1, count + 1)}
    stats = apply(
        store, _table_change("t", "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n INT)", first)
    )
    assert stats.inserted == {"t": count} and stats.updated == {} and stats.deleted == {}
    changed = {i: record(None, f"w{i}", -i) for i in range(count // 2, count + count // 2)}
    updated = {k: v for k, v in changed.items() if k in first}
    inserted = {k: v for k, v in changed.items() if k not in first}
    deletes = {1}
    stats = apply(store, _table_change("t", "", inserted, updated=updated, deleted=deletes))
    assert stats.deleted == {"t": 1}
    assert stats.updated == {"t": count - count // 2 + 1}
    assert stats.inserted == {"t": len(changed) - stats.updated["t"]}
    expected = {**{k: v for k, v in first.items() if k not in deletes}, **changed}
    assert store.row_payloads("t", range(0, 2 * count + 2)) == expected
    assert stats.ms > 0


def test_hidden_rowid_table_upserts(store: Store):
    create = "CREATE TABLE h (k TEXT PRIMARY KEY, v REAL)"
    rows = {i * 10: record(f"k{i}", i + 0.5) for i in range(SMALL_BATCH + 5)}
    apply(store, _table_change("h", create, rows))
    update = {10: record("k1", 2.0), 7: record("x", None)}
    stats = apply(store, _table_change("h", "", {7: update[7]}, updated={10: update[10]}))
    assert stats.updated == {"h": 1} and stats.inserted == {"h": 1}
    assert store.row_payloads("h", [7, 10]) == update


def test_replace_all_drops_rows_and_chains(store: Store):
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"
    changeset = _table_change("t", create, {1: record(None, "a"), 2: record(None, "b")})
    changeset.chains = {("t", 1): [5, 6], ("t", 2): [7]}
    apply(store, changeset)
    replacement = _table_change("t", "", {3: record(None, "c")}, replace_all=True)
    replacement.chains = {("t", 3): [8]}
    stats = apply(store, replacement)
    assert stats.deleted == {"t": 2} and stats.inserted == {"t": 1}
    assert store.row_payloads("t", [1, 2, 3]) == {3: record(None, "c")}
    assert store.overflow_chains("t", [1, 2, 3]) == {3: [8]}


def test_chains_follow_rows(store: Store):
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"
    changeset = _table_change("t", create, {i: record(None, str(i)) for i in range(1, 5)})
    changeset.chains = {("t", i): [10 + i, 20 + i] for i in range(1, 5)}
    apply(store, changeset)
    later = _table_change("t", "", {}, deleted={1})
    later.chains = {("t", 2): [], ("t", 3): [99]}
    apply(store, later)
    assert store.overflow_chains("t", range(1, 5)) == {3: [99], 4: [14, 24]}
    many = _table_change("t", "", {})
    many.chains = {("t", i): [i, i + 1] for i in range(SMALL_BATCH * 2)}
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
    changeset = _table_change("t", create, {})
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


def _bad_page_changeset(sample: SqliteFile) -> Changeset:
    changeset = _table_change(
        "u", "CREATE TABLE u (a TEXT)", {i: record(f"x{i}") for i in range(1, 1000)}
    )
    changeset.schema.dropped = ["items"]
    changeset.schema_entries = [e for e in sample.entries() if e.tbl_name != "items"] + entries_for(
        "CREATE TABLE u (a TEXT)"
    )
    changeset.rows["tags"] = TableRows("tags", {}, {1: record("changed", 5)}, {2, 3})
    changeset.pages = [PageRecord(1, PageKind.TABLE_LEAF, "sqlite_schema", data=b"new")]
    changeset.pages.append(PageRecord(3, "no-such-kind", None, data=b"bad"))
    return changeset


def test_failed_apply_changes_nothing(store: Store, sample: SqliteFile, pg: psycopg.Connection):
    import_file(store, sample.path)
    before = snapshot(pg)
    with pytest.raises(StoreError) as info:
        apply(store, _bad_page_changeset(sample))
    assert not isinstance(info.value, StoreUnavailableError)
    assert snapshot(pg) == before
    # The next commit works.
    stats = apply(store, _table_change("tags", "", {}, updated={1: record("changed", 5)}))
    assert stats.updated == {"tags": 1}


def test_error_in_a_streamed_import_stores_nothing(store: Store, sample: SqliteFile):
    parts = changeset_from_file(sample.path, parts=3)
    parts[2].pages.append(PageRecord(0, PageKind.FREE, None))
    with pytest.raises(StoreError):
        store.write(parts, source=CommitSource.IMPORT)
    assert store.is_empty()
    assert store.load_state().tables == {}


def test_a_failing_part_rolls_back_the_parts_before_it(store: Store):
    parts = [
        _table_change("a", "CREATE TABLE a (x)", {1: record(1)}),
        Changeset(WAL, HDR, 1, pages=[PageRecord(1, "bogus", None)]),  # type: ignore[arg-type]
    ]
    with pytest.raises(StoreError):
        store.write(parts, source=WAL)
    assert store.load_state().tables == {}


def test_connection_killed_midway(store: Store, sample: SqliteFile, pg_dsn: str, pg):
    import_file(store, sample.path)
    before = snapshot(pg)
    changeset = _table_change(
        "tags",
        "",
        {i: record(f"n{i}", i) for i in range(51, 2000)},
        updated={i: record(f"n{i}", i) for i in range(1, 51)},
    )
    changeset.pages = [PageRecord(1, PageKind.TABLE_LEAF, "sqlite_schema", data=b"zzz")]
    outcome: list[BaseException] = []

    def commit() -> None:
        try:
            apply(store, changeset)
        except BaseException as exc:
            outcome.append(exc)

    with psycopg.connect(pg_dsn) as blocker:
        # Hold a lock the commit needs once its rows are written: it blocks there.
        blocker.execute("LOCK TABLE pgfs.pages IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=commit)
        worker.start()
        victim = None
        for _ in range(200):
            victim = pg.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgfs-writer'"
                " AND wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            if victim:
                break
            time.sleep(0.05)
        assert victim, "the commit never reached the locked table"
        pg.execute("SELECT pg_terminate_backend(%s)", victim)
        worker.join(30)
        blocker.rollback()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailableError)
    assert "password" not in str(outcome[0])
    assert snapshot(pg) == before
    stats = apply(store, changeset)  # a new connection replaced the dead one
    assert stats.updated == {"tags": 50} and stats.inserted == {"tags": 1949}


def test_reads_survive_a_lost_connection(store: Store, sample: SqliteFile, pg):
    import_file(store, sample.path)
    pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'pgfs' AND datname = current_database()"
    )
    assert store.row_payloads("tags", [1]) == {1: sample.records("tags")[1]}
    assert len(store.leaf_rows("tags", [(1, 5)])) == 5


def _ddl(change: SchemaChange, *creates: str, rows: dict | None = None) -> Changeset:
    return Changeset(WAL, HDR, 10, entries_for(*creates), change, rows=rows or {})


def test_schema_changes(store: Store, pg: psycopg.Connection):
    enc = TextEncoding.UTF8
    s1 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INT)"
    v1 = parse_create_table(s1)
    rows = {i: encode_record([None, f"a{i}", i], enc) for i in range(1, 6)}
    changeset = _table_change("t", s1, rows)
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
    apply(store, _ddl(SchemaChange(altered=[(v1, v2)]), s2, rows={"t": TableRows("t", {6: full})}))
    assert store.row_payloads("t", range(1, 7)) == rows | {6: full}
    fields = dict(pg.execute("SELECT id, _pgfs_fields FROM jellyfin.t").fetchall())
    assert fields == {1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: None}

    # RENAME COLUMN, then RENAME TABLE: values, pages and chains follow.
    s3 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, bee INT, c REAL)"
    apply(store, _ddl(SchemaChange(altered=[(v2, parse_create_table(s3))]), s3))
    s4 = 'CREATE TABLE "T2" (id INTEGER PRIMARY KEY, a TEXT, bee INT, c REAL)'
    v4 = parse_create_table(s4)
    apply(store, _ddl(SchemaChange(renamed=[("t", "T2")]), s4))
    assert pg.execute('SELECT bee FROM jellyfin."T2" WHERE id = 2').fetchone() == (2,)
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
    apply(store, _ddl(SchemaChange(altered=[(v4, v5)]), s5, rows={"T2": rows_t2}))
    assert store.row_payloads("T2", range(1, 7)) == rewritten
    columns = pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'T2'"
    ).fetchall()
    assert ("bee",) not in columns and ("c",) in columns

    # An affinity change (writable_schema) rewrites the table, still losslessly.
    s6 = 'CREATE TABLE "T2" (id INTEGER PRIMARY KEY, a INTEGER, c TEXT)'
    apply(store, _ddl(SchemaChange(altered=[(v5, parse_create_table(s6))]), s6))
    assert store.row_payloads("T2", range(1, 7)) == rewritten
    assert pg.execute('SELECT count(_pgfs_record) FROM jellyfin."T2"').fetchone() == (6,)

    # Dropped and created again under the same name in one commit (a rebuild).
    s7 = 'CREATE TABLE "T2" (k TEXT PRIMARY KEY)'
    x = encode_record(["x"], enc)
    change = SchemaChange(created=[parse_create_table(s7)], dropped=["T2"])
    apply(store, _ddl(change, s7, rows={"T2": TableRows("T2", {1: x})}))
    assert store.row_payloads("T2", [1, 2]) == {1: x}
    assert store.overflow_chains("T2", [1]) == {}

    # Swapped names in one commit.
    s8 = "CREATE TABLE o (z TEXT)"
    o = encode_record(["o"], enc)
    change = SchemaChange(created=[parse_create_table(s8)])
    apply(store, _ddl(change, s7, s8, rows={"o": TableRows("o", {1: o})}))
    swapped = (s7.replace('"T2"', "o"), s8.replace("o (", '"T2" ('))
    apply(store, _ddl(SchemaChange(renamed=[("o", "T2"), ("T2", "o")]), *swapped))
    assert pg.execute('SELECT z FROM jellyfin."T2"').fetchall() == [("o",)]
    assert pg.execute("SELECT k FROM jellyfin.o").fetchall() == [("x",)]
    assert store.row_payloads("T2", [1]) == {1: o}

    apply(store, _ddl(SchemaChange(dropped=["o", "T2"])))
    remaining = pg.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'jellyfin'"
    ).fetchone()
    assert remaining == (0,)
    assert store.load_state().tables == {}


def test_schema_change_must_match_sqlite_schema(store: Store, pg):
    before = snapshot(pg)
    changeset = _table_change("t", "CREATE TABLE t (a TEXT)", {1: record("x")})
    changeset.schema_entries = entries_for("CREATE TABLE t (a INT)")
    with pytest.raises(StoreError, match="does not match sqlite_schema"):
        apply(store, changeset)
    changeset.schema_entries = []
    with pytest.raises(StoreError, match="does not match sqlite_schema"):
        apply(store, changeset)
    assert snapshot(pg) == before


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
    changeset = _table_change("t", create, {1: record(None, "x")})
    changeset.schema_entries = entries
    apply(store, changeset)
    state = store.load_state()
    assert list(state.entries) == entries and list(state.tables) == ["t"]
    assert state.tables["t"] == parse_create_table(create)


def test_without_rowid_mirror_is_replaced_wholesale(store: Store, pg):
    create = "CREATE TABLE w (k TEXT, v INT, PRIMARY KEY (v, k)) WITHOUT ROWID"
    first = {i: record(i, f"k{i}") for i in range(3)}
    apply(store, _table_change("w", create, first))
    stats = apply(store, _table_change("w", "", {0: record(9, "only")}))
    assert stats.inserted == {"w": 1}
    assert pg.execute("SELECT k, v FROM jellyfin.w").fetchall() == [("only", 9)]
    assert [payload for _, payload in store.table_rows("w")] == [record(9, "only")]
    with pytest.raises(StoreError, match="WITHOUT ROWID"):
        store.leaf_rows("w", [(0, 10)])


def test_replace_is_atomic(store: Store, sample: SqliteFile, pg):
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
    assert pg.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'jellyfin'"
    ).fetchall() == [("fresh",)]
    assert pg.execute("SELECT source FROM pgfs.commit_log ORDER BY id").fetchall() == [
        ("import",),
        ("import",),
    ]


def test_unsupported_table_fails_cleanly(store: Store, pg):
    before = snapshot(pg)
    with pytest.raises(StoreError, match="63-byte"):
        apply(store, _table_change("x" * 70, f"CREATE TABLE {'x' * 70} (a)", {}))
    with pytest.raises(StoreError, match="no data table"):
        apply(store, _table_change("ghost", "", {1: record(1)}))
    with pytest.raises(StoreError, match="header"):
        apply(store, Changeset(WAL, b"garbage", 1))
    assert snapshot(pg) == before


def test_uninitialised_store(pg_dsn: str):
    with Store.connect(pg_dsn) as store:
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


def test_table_names_postgres_would_use_for_indexes(store: Store, pg):
    """PostgreSQL names a primary key index "<table>_pkey"; SQLite may want that
    name for a table, also after the first table was renamed."""
    t, t_pkey, renamed = (
        "CREATE TABLE t (a TEXT)",
        "CREATE TABLE t_pkey (b TEXT)",
        "CREATE TABLE t2 (a TEXT)",
    )
    apply(store, _ddl(SchemaChange(created=[parse_create_table(t)]), t))
    apply(store, _ddl(SchemaChange(renamed=[("t", "t2")]), renamed))
    created = [parse_create_table(t_pkey), parse_create_table(t)]
    apply(store, _ddl(SchemaChange(created=created), renamed, t_pkey, t))
    assert sorted(store.load_state().tables) == ["t", "t2", "t_pkey"]
    pg.execute("CREATE TABLE jellyfin.stray (x int)")
    pg.execute("COMMENT ON TABLE jellyfin.stray IS 'pgfs data table (rowid table)'")
    store.write([Changeset(WAL, HDR, 1)], source=WAL, clear=True)
    assert pg.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'jellyfin'"
    ).fetchone() == (0,)
