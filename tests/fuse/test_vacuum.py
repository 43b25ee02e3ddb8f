"""Commits that shrink the database file, in every journal mode, through a real mount.

In a rollback-journal mode SQLite truncates the database file *after* the journal is
gone (pager.c, pager_end_transaction): pgfs must take that truncation, and still refuse
one that would cut pages PostgreSQL holds (issue 10).
"""

from __future__ import annotations

import errno
import os

import pytest

from .helpers import Client, Mount, assert_all_tables_same, commit_log_count

MODES = ["delete", "truncate", "persist", "wal"]
CLIENTS = ["sqlite3", "apsw"]


def _fill_and_drop(client: Client) -> None:
    """The issue's reproduction: a table of 200 rows and an index, dropped."""
    client.execute("CREATE TABLE t1(a INTEGER, b TEXT)")
    client.executemany("INSERT INTO t1 VALUES (?,?)", [(i, "x" * 50) for i in range(200)])
    client.execute("CREATE INDEX i1 ON t1(a)")
    client.execute("DROP TABLE t1")


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("mode", MODES)
def test_vacuum_that_shrinks_the_file(mount: Mount, pg_dsn: str, mode: str, kind: str) -> None:
    with Client(mount.db, kind) as client:
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        _fill_and_drop(client)
        pages_before = client.one("PRAGMA page_count")
        client.execute("VACUUM")
        assert client.one("PRAGMA page_count") < pages_before
        assert client.one("PRAGMA integrity_check") == "ok"
        assert client.execute("SELECT name FROM sqlite_schema") == []
        client.execute("CREATE TABLE t2(a INTEGER PRIMARY KEY, b TEXT)")
        client.execute("INSERT INTO t2(b) VALUES ('after the vacuum')")
        assert_all_tables_same(client, pg_dsn, "after VACUUM")
    if mode != "wal":
        assert os.path.getsize(mount.db) == client_page_bytes(mount)
    status = mount.db_status()
    assert status["last_error"] is None
    assert status["refused_writes"] == 0
    mount.restart()
    with Client(mount.db, "apsw" if kind == "sqlite3" else "sqlite3") as client:
        assert client.one("PRAGMA integrity_check") == "ok"
        assert client.execute("SELECT b FROM t2") == [("after the vacuum",)]


@pytest.mark.parametrize("mode", MODES)
def test_auto_vacuum_commits_that_shrink_the_file(mount: Mount, pg_dsn: str, mode: str) -> None:
    """auto_vacuum=FULL truncates at every commit that frees pages; INCREMENTAL at
    `PRAGMA incremental_vacuum`."""
    with Client(mount.db) as client:
        client.execute("PRAGMA auto_vacuum=FULL")
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        client.executemany("INSERT INTO t(v) VALUES (?)", [(bytes(3000),) for _ in range(60)])
        pages_before = client.one("PRAGMA page_count")
        client.execute("DELETE FROM t WHERE id > 10")
        assert client.one("PRAGMA page_count") < pages_before
        assert_all_tables_same(client, pg_dsn, "after an auto-vacuum commit")

        client.execute("PRAGMA auto_vacuum=INCREMENTAL")
        client.execute("VACUUM")
        client.executemany("INSERT INTO t(v) VALUES (?)", [(bytes(3000),) for _ in range(60)])
        client.execute("DELETE FROM t WHERE id > 5")
        pages_before = client.one("PRAGMA page_count")
        assert client.one("PRAGMA freelist_count") > 0
        client.execute("PRAGMA incremental_vacuum")
        assert client.one("PRAGMA page_count") < pages_before
        assert client.one("PRAGMA integrity_check") == "ok"
        assert_all_tables_same(client, pg_dsn, "after incremental_vacuum")
    assert mount.db_status()["refused_writes"] == 0


def test_truncation_that_cuts_committed_pages_is_refused(mount: Mount, pg_dsn: str) -> None:
    """With no journal, a truncation is taken only when it removes bytes past the committed
    database image; one that would cut committed pages fails with EIO and changes nothing."""
    with Client(mount.db) as client:
        client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        client.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 500,) for _ in range(100)])
        rows = client.execute("SELECT * FROM t")
    size = os.path.getsize(mount.db)
    commits = commit_log_count(pg_dsn)
    with pytest.raises(OSError) as caught:
        os.truncate(mount.db, 4096)
    assert caught.value.errno == errno.EIO
    with pytest.raises(OSError) as caught:
        os.truncate(mount.db, size + 4096)
    assert caught.value.errno == errno.EIO
    os.truncate(mount.db, size)  # to the size it has: nothing to do
    assert os.path.getsize(mount.db) == size
    assert commit_log_count(pg_dsn) == commits
    with Client(mount.db) as client:
        assert client.one("PRAGMA integrity_check") == "ok"
        assert client.execute("SELECT * FROM t") == rows


def client_page_bytes(mount: Mount) -> int:
    """page_count * page_size of the committed database, as a new connection reads it."""
    with Client(mount.db) as client:
        return int(client.one("PRAGMA page_count")) * int(client.one("PRAGMA page_size"))
