"""DatabaseFile driven by a real SQLite (apsw VFS), over a real Database and PostgreSQL."""

from __future__ import annotations

import apsw
import psycopg
import pytest

from pgfs.emulator.database import Database
from pgfs.sqlite.journal import JOURNAL_MAGIC
from pgfs.sqlite.wal import read_wal
from pgfs.store.interface import LeaseHolder
from pgfs.store.postgres import PostgresStore as Store

from .conftest import Tracked


def pg_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, v FROM jellyfin.t ORDER BY id").fetchall()


def rows(conn: apsw.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute("SELECT id, v FROM t ORDER BY id")]


MODES = [
    ("delete", []),
    ("truncate", []),
    ("persist", []),
    ("delete", ["PRAGMA locking_mode=EXCLUSIVE"]),
    ("wal", ["PRAGMA locking_mode=EXCLUSIVE"]),
]


@pytest.mark.parametrize(
    ("mode", "pragmas"), MODES, ids=["delete", "truncate", "persist", "delete-exclusive", "wal"]
)
def test_every_commit_reaches_postgres(tracked: Tracked, mode: str, pragmas: list[str]) -> None:
    conn = tracked.vfs.connect_in_mode(mode, pragmas)
    for step in range(4):
        conn.execute("BEGIN")
        for i in range(300):
            conn.execute("INSERT INTO t(v) VALUES (?)", (f"{step}-{i}-" + "x" * (i % 50),))
        conn.execute("DELETE FROM t WHERE id % 7 = ?", (step,))
        conn.execute("COMMIT")
        assert pg_rows(tracked.dsn) == rows(conn)
    journal = tracked.dbfile.journal
    if mode == "truncate":
        assert journal is not None and len(journal.data) == 0  # committed by truncation
    elif mode == "persist" or (mode == "delete" and pragmas):
        assert journal is not None and bytes(journal.data[:8]) == bytes(8)  # zeroed header
    elif mode == "delete":
        assert journal is None  # committed by deletion
    # A rolled back transaction after spilling leaves PostgreSQL as it was.
    commits = tracked.dbfile.stats.commits
    conn.execute("BEGIN")
    conn.execute("UPDATE t SET v = v || v")
    conn.execute("ROLLBACK")
    assert tracked.dbfile.stats.commits == commits
    assert pg_rows(tracked.dsn) == rows(conn)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_failed_rollback_commit_keeps_the_journal(tracked: Tracked) -> None:
    """PostgreSQL fails at the journal's unlink: SQLite gets an I/O error, the journal stays
    (hot), PostgreSQL keeps the previous state; the next opener rolls the journal back."""
    conn = tracked.vfs.connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t(v) VALUES ('kept')")
    before = pg_rows(tracked.dsn)
    tracked.store.close()  # every PostgreSQL call of this Database now fails
    with pytest.raises(apsw.IOError):
        conn.execute("INSERT INTO t(v) VALUES ('lost')")
    journal = tracked.dbfile.journal
    assert journal is not None and bytes(journal.data[:8]) == JOURNAL_MAGIC
    assert tracked.dbfile.stats.failed_commits == 1
    conn.close()

    store = Store.connect(tracked.dsn)
    try:
        store.acquire_lease(LeaseHolder.this_process("tests/tracker, again"))
        tracked.dbfile.database = Database.open(store)
        assert pg_rows(tracked.dsn) == before
        again = tracked.vfs.connect()
        assert rows(again) == before  # hot journal played back, nothing to commit
        assert tracked.dbfile.journal is None
        again.execute("INSERT INTO t(v) VALUES ('next')")
        assert pg_rows(tracked.dsn) == rows(again)
        again.close()
    finally:
        store.close()


def test_failed_wal_commit_drops_the_commit_frame(tracked: Tracked) -> None:
    conn = tracked.vfs.connect()
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t(v) VALUES ('kept')")
    wal = tracked.dbfile.wal
    assert wal is not None
    _, _, committed = read_wal(bytes(wal.data))
    tracked.store.close()
    with pytest.raises(apsw.IOError):
        conn.execute("INSERT INTO t(v) VALUES ('lost')")
    # SQLite's own recovery would find no new commit in the WAL.
    assert read_wal(bytes(wal.data))[2] == committed
    assert tracked.dbfile.stats.failed_commits >= 1


def test_journal_mode_memory_is_refused(tracked: Tracked) -> None:
    conn = tracked.vfs.connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("PRAGMA journal_mode=MEMORY")
    with pytest.raises(apsw.IOError):
        conn.execute("INSERT INTO t(v) VALUES ('refused')")
    assert tracked.dbfile.stats.refused_writes >= 1
    assert pg_rows(tracked.dsn) == []
