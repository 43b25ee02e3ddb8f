"""The commit path without FUSE: SQLite edits a local copy, the changed pages go to
Database.commit, and the store must then hold exactly what SQLite holds."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from pgfs.emulator.database import Database
from tests.support.dbgen import build_all_types, build_jellyfin, guid, item_json, jellyfin_date
from tests.support.invariants import CommitHarness


@pytest.fixture
def harness(store, tmp_path: Path) -> CommitHarness:
    source = build_all_types(tmp_path / "src.db", page_size=1024, big_rows=4)
    return CommitHarness(store, source, tmp_path)


def test_nothing_changed(harness: CommitHarness) -> None:
    result = harness.run("SELECT 1")
    assert result.changed == 0


def test_inserts_updates_deletes(harness: CommitHarness) -> None:
    harness.run("INSERT INTO hidden_rowid (a, b, c) VALUES ('new', 1, 2.5)")
    harness.run("UPDATE types SET t = 'changed' WHERE id = 3")
    harness.run("DELETE FROM types WHERE id IN (4, 5)")
    harness.run(
        "BEGIN; INSERT INTO auto (v) VALUES ('a1'); INSERT INTO auto (v) VALUES ('a2');"
        "UPDATE auto SET v = v || '!' WHERE id < 5; DELETE FROM auto WHERE id = 7; COMMIT"
    )


def test_many_rows_split_and_merge_pages(harness: CommitHarness) -> None:
    harness.run(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000) "
        "INSERT INTO hidden_rowid (a, b, c) SELECT 'bulk ' || x, x, x / 7.0 FROM n"
    )
    harness.run("DELETE FROM hidden_rowid WHERE b % 3 = 0 AND a LIKE 'bulk%'")
    harness.run("DELETE FROM hidden_rowid WHERE a LIKE 'bulk%' AND b > 200")
    harness.run("DELETE FROM hidden_rowid")


def test_overflow_updates(harness: CommitHarness) -> None:
    rng = random.Random(3)
    # same size: SQLite overwrites the overflow pages in place, the leaf stays as it is
    (size,) = (
        sqlite3.connect(harness.local)
        .execute("SELECT length(payload) FROM big WHERE id = 2")
        .fetchone()
    )
    result = harness.run(
        lambda c: c.execute("UPDATE big SET payload = ? WHERE id = 2", (rng.randbytes(size),))
    )
    assert result.changed >= 1
    # bigger, smaller, to no overflow at all, and back
    harness.run(
        lambda c: c.execute("UPDATE big SET payload = ? WHERE id = 2", (rng.randbytes(size * 3),))
    )
    harness.run(
        lambda c: c.execute("UPDATE big SET payload = ? WHERE id = 2", (rng.randbytes(size // 5),))
    )
    harness.run(lambda c: c.execute("UPDATE big SET payload = x'01', txt = 'short' WHERE id = 2"))
    harness.run(
        lambda c: c.execute("UPDATE big SET payload = ? WHERE id = 2", (rng.randbytes(50_000),))
    )
    harness.run("DELETE FROM big WHERE id = 2")


def test_same_size_in_place_update_of_overflow_only(harness: CommitHarness) -> None:
    conn = sqlite3.connect(harness.local)
    rowid, payload = conn.execute(
        "SELECT id, payload FROM big ORDER BY length(payload) DESC LIMIT 1"
    ).fetchone()
    conn.close()
    assert len(payload) > 10_000
    changed = bytearray(payload)
    changed[-10] ^= 0xFF  # a byte on an overflow page: the leaf does not change

    def update(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE big SET payload = ? WHERE id = ?", (bytes(changed), rowid))

    result = harness.run(update)
    assert result.changed == 2  # page 1 (change counter) and one overflow page
    changeset = harness.database.last_changeset
    assert list(changeset.rows["big"].updated) == [rowid]
    assert [p.kind for p in changeset.pages] == ["table_interior", "overflow"]


def test_schema_changes(harness: CommitHarness) -> None:
    harness.run(
        "CREATE TABLE fresh (id INTEGER PRIMARY KEY, name TEXT);INSERT INTO fresh VALUES (1, 'one')"
    )
    harness.run("INSERT INTO fresh (name) SELECT a FROM hidden_rowid")
    harness.run("ALTER TABLE fresh ADD COLUMN extra TEXT DEFAULT 'dflt'")
    harness.run(
        "INSERT INTO fresh (name, extra) VALUES ('two', 'x');"
        "UPDATE fresh SET extra = 'y' WHERE id = 1"
    )
    harness.run("ALTER TABLE fresh RENAME COLUMN name TO title")
    harness.run("ALTER TABLE fresh RENAME TO renamed")
    harness.run("ALTER TABLE renamed DROP COLUMN extra")
    harness.run("CREATE INDEX renamed_title ON renamed (title)")
    harness.run("DROP INDEX renamed_title")
    harness.run("DROP TABLE renamed")
    harness.run("DROP VIEW big_tags; DROP TRIGGER auto_audit")


def test_rename_swap_in_one_transaction(harness: CommitHarness) -> None:
    harness.run(
        "BEGIN; ALTER TABLE desc_pk RENAME TO tmp_swap; ALTER TABLE int_pk RENAME TO desc_pk;"
        "ALTER TABLE tmp_swap RENAME TO int_pk; COMMIT"
    )


def test_table_rebuilt_in_one_transaction(harness: CommitHarness) -> None:
    # EF Core's table rebuild: create, copy, drop, rename
    harness.run(
        "BEGIN; DROP VIEW big_tags;"
        "CREATE TABLE ef_temp_big (id INTEGER PRIMARY KEY, payload BLOB, txt TEXT, tag TEXT,"
        " added INTEGER);"
        "INSERT INTO ef_temp_big SELECT id, payload, txt, tag, 1 FROM big;"
        "DROP TABLE big; ALTER TABLE ef_temp_big RENAME TO big; CREATE INDEX big_tag ON big (tag);"
        "CREATE VIEW big_tags AS SELECT tag, count(*) AS n FROM big GROUP BY tag; COMMIT"
    )
    harness.run("UPDATE big SET added = 2 WHERE id = 1")


def test_table_rebuilt_with_auto_vacuum(store, tmp_path: Path) -> None:
    """With auto-vacuum the rebuilt table's root moves into the dropped table's slot."""
    source = build_all_types(tmp_path / "src.db", page_size=1024, auto_vacuum="FULL", big_rows=3)
    harness = CommitHarness(store, source, tmp_path)
    harness.run(
        "BEGIN; DROP VIEW big_tags;"
        "CREATE TABLE ef_temp_big (id INTEGER PRIMARY KEY, payload BLOB, txt TEXT, tag TEXT,"
        " added INTEGER);"
        "INSERT INTO ef_temp_big SELECT id, payload, txt, tag, 1 FROM big;"
        "DROP TABLE big; ALTER TABLE ef_temp_big RENAME TO big; COMMIT"
    )
    harness.run("DELETE FROM big WHERE id = 1; UPDATE big SET added = 3")


def test_without_rowid_changes(harness: CommitHarness) -> None:
    harness.run("INSERT INTO wr (k, v, doc) VALUES ('zzz', 1, 'doc')")
    harness.run("UPDATE wr SET doc = hex(randomblob(3000)) WHERE k = 'key0003'")
    harness.run("DELETE FROM wr2 WHERE a < 40")


def test_vacuum(harness: CommitHarness) -> None:
    harness.run("VACUUM")
    harness.run("UPDATE hidden_rowid SET a = 'after vacuum' WHERE rowid = 3")


def test_vacuum_new_page_size(harness: CommitHarness) -> None:
    harness.run("PRAGMA page_size = 4096; VACUUM")
    assert harness.database.page_size == 4096
    harness.run("INSERT INTO auto (v) VALUES ('after')")


@pytest.mark.parametrize("mode", ["FULL", "INCREMENTAL"])
def test_auto_vacuum(store, tmp_path: Path, mode: str) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=1024, auto_vacuum=mode, big_rows=3)
    harness = CommitHarness(store, source, tmp_path)
    harness.run("DELETE FROM big WHERE id < 6")
    harness.run("DROP TABLE desc_pk")
    harness.run("CREATE TABLE later (x); INSERT INTO later VALUES (randomblob(5000))")
    if mode == "INCREMENTAL":
        harness.run("PRAGMA incremental_vacuum")


def test_commit_cost_is_proportional_to_changed_pages(store, tmp_path: Path) -> None:
    """One small update to a large table renders a handful of pages, not the table."""
    source = tmp_path / "large.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, blob BLOB)")
    conn.executemany(
        "INSERT INTO t (v, blob) VALUES (?, ?)",
        ((f"row {n}" * 5, bytes(3000) if n % 10 == 0 else None) for n in range(20000)),
    )
    conn.commit()
    conn.close()
    harness = CommitHarness(store, source, tmp_path, check_pages=False)
    assert harness.database.page_count > 1500
    harness.database.cache.clear()
    result = harness.run("UPDATE t SET v = 'changed' WHERE id = 12345", check=False)
    diff = harness.database.last_diff
    assert result.changed <= 3
    assert result.pages_rendered <= 2 * result.changed + 2
    assert diff.old_records <= 2 * result.changed + 2
    assert diff.rows_examined < 200
    harness.database.cache.clear()
    result = harness.run(
        "INSERT INTO t (v, blob) SELECT 'new', randomblob(9000) FROM t WHERE id < 20", check=False
    )
    assert result.pages_rendered <= 2 * result.changed + 4
    assert harness.database.last_diff.rows_examined < 400
    harness.check()


def test_jellyfin_workload(store, tmp_path: Path, jellyfin_schema) -> None:
    source = build_jellyfin(tmp_path / "jf.db", jellyfin_schema("10.11"), items=60)
    harness = CommitHarness(store, source, tmp_path)
    rng = random.Random(5)

    def scan(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        for _ in range(10):
            item = guid(rng)
            conn.execute(
                'INSERT INTO "BaseItems" ("Id", "Type", "Data", "IsFolder", "IsInMixedFolder",'
                ' "IsLocked", "IsMovie", "IsRepeat", "IsSeries", "IsVirtualItem", "DateCreated")'
                " VALUES (?, 'Movie', ?, 0, 0, 0, 1, 0, 0, 0, ?)",
                (item, item_json(rng, item, 9000), jellyfin_date(rng)),
            )
        conn.execute(
            'UPDATE "BaseItems" SET "Data" = ? WHERE rowid = 3', (item_json(rng, "x", 4000),)
        )
        conn.execute('DELETE FROM "BaseItems" WHERE rowid IN (5, 6)')
        conn.execute("COMMIT")

    harness.run(scan)
    harness.run(
        "INSERT INTO ActivityLogs (Name, Type, UserId, DateCreated, LogSeverity, RowVersion)"
        " VALUES ('played', 'VideoPlayback', 'U', '2024-01-01 00:00:00', 1, 0)"
    )
    harness.run("PRAGMA optimize; VACUUM")
    harness.run(scan)


def test_database_reopen_sees_commits(harness: CommitHarness) -> None:
    harness.run("INSERT INTO hidden_rowid (a) VALUES ('persisted')")
    reopened = Database.open(harness.store)
    assert reopened.page_count == harness.database.page_count
    for pgno in range(1, reopened.page_count + 1):
        assert reopened.read(pgno) == harness.database.read(pgno) or pgno > 0


def test_rename_and_change_in_one_transaction(harness: CommitHarness) -> None:
    result = harness.run(
        "BEGIN; ALTER TABLE auto RENAME TO auto2; INSERT INTO auto2 (v) VALUES ('x');"
        "ALTER TABLE hidden_rowid RENAME TO hr; DELETE FROM hr WHERE rowid < 5; COMMIT"
    )
    changeset = harness.database.last_changeset
    assert ("auto", "auto2") in changeset.schema.renamed
    assert ("hidden_rowid", "hr") in changeset.schema.renamed
    assert not changeset.schema.created
    assert not any(rows.replace_all for rows in changeset.rows.values())
    assert result.changed < 16  # the schema, the two tables, an index, the trigger's audit


@pytest.mark.parametrize("mode", ["FULL", "INCREMENTAL"])
def test_drop_and_rename_with_auto_vacuum(store, tmp_path: Path, mode: str) -> None:
    """DROP a; RENAME b TO c in one transaction: auto-vacuum moves b's root into a's
    slot, so c has a's old root number but holds b's rows."""
    source = tmp_path / "src.db"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute(f"PRAGMA auto_vacuum = {mode}")
    conn.execute("PRAGMA page_size = 1024")
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO a (v) VALUES (?)", [(f"a{n}" * 20,) for n in range(100)])
    conn.executemany("INSERT INTO b (v) VALUES (?)", [(f"b{n}" * 20,) for n in range(300)])
    conn.close()
    harness = CommitHarness(store, source, tmp_path)
    (root_a,) = (
        sqlite3.connect(source)
        .execute("SELECT rootpage FROM sqlite_schema WHERE name = 'a'")
        .fetchone()
    )
    harness.run(
        "BEGIN; DROP TABLE a; ALTER TABLE b RENAME TO c; INSERT INTO c (v) VALUES ('x'); COMMIT"
    )
    (root_c,) = (
        sqlite3.connect(harness.local)
        .execute("SELECT rootpage FROM sqlite_schema WHERE name = 'c'")
        .fetchone()
    )
    assert root_c == root_a
