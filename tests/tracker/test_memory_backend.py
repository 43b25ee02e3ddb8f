"""DatabaseFile driven by a real SQLite (apsw VFS) over `MemoryBackend`: the async
shell and both state machines, with neither PostgreSQL nor FUSE."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from pgfs.store.changeset import CommitSource
from pgfs.tracker.database_file import DatabaseFile
from tests.support.memory_backend import MemoryBackend

from .vfs import TrackerVFS, TrioThread

MODES = [
    ("delete", [], CommitSource.JOURNAL),
    ("truncate", [], CommitSource.JOURNAL),
    ("persist", [], CommitSource.JOURNAL),
    ("wal", ["PRAGMA locking_mode=EXCLUSIVE"], CommitSource.WAL),
]


@pytest.fixture
def memory() -> Iterator[tuple[MemoryBackend, DatabaseFile, TrackerVFS]]:
    loop = TrioThread()
    backend = MemoryBackend()
    dbfile = DatabaseFile("memory.db", backend)
    vfs = TrackerVFS(dbfile, loop)
    yield backend, dbfile, vfs
    vfs.unregister()
    loop.close()


def committed_rows(backend: MemoryBackend, tmp_path: Path) -> list[tuple]:
    """The rows of the database the backend holds, read by a separate SQLite."""
    path = tmp_path / "committed.db"
    path.write_bytes(backend.file_bytes())
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def rows(conn: apsw.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute("SELECT id, v FROM t ORDER BY id")]


@pytest.mark.parametrize(("mode", "pragmas", "source"), MODES, ids=[m[0] for m in MODES])
def test_each_commit_reaches_the_backend_once(
    memory, tmp_path: Path, mode: str, pragmas: list[str], source: CommitSource
) -> None:
    backend, dbfile, vfs = memory
    conn = vfs.connect_in_mode(mode, pragmas)
    for step in range(3):
        before = len(backend.commits)
        with conn:
            for i in range(200):
                conn.execute("INSERT INTO t(v) VALUES (?)", (f"{step}-{i}-" + "x" * (i % 40),))
            conn.execute("DELETE FROM t WHERE id % 5 = ?", (step,))
        assert len(backend.commits) == before + 1
        assert backend.commits[-1][0] is source
        assert committed_rows(backend, tmp_path) == rows(conn)
    assert dbfile.stats.commits == len(backend.commits)
    conn.execute("BEGIN")
    conn.execute("UPDATE t SET v = v || v")
    conn.execute("ROLLBACK")
    assert dbfile.stats.commits == len(backend.commits), "a rollback commits nothing"
    assert committed_rows(backend, tmp_path) == rows(conn)
    conn.close()


def test_a_failed_commit_is_not_visible_to_sqlite(memory, tmp_path: Path) -> None:
    backend, dbfile, vfs = memory
    conn = vfs.connect()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t(v) VALUES ('kept')")
    commits = len(backend.commits)
    backend.fail_next = RuntimeError("server gone")
    with pytest.raises(apsw.Error), conn:
        conn.execute("INSERT INTO t(v) VALUES ('lost')")
    assert len(backend.commits) == commits
    assert dbfile.stats.failed_commits == 1
    conn.close()
    conn = vfs.connect()  # the hot journal is rolled back
    assert rows(conn) == [(1, "kept")]
    assert committed_rows(backend, tmp_path) == [(1, "kept")]
    conn.close()
