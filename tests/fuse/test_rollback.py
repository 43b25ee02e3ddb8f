"""Transactions that do not commit: application ROLLBACK, a process killed in the middle
(hot journal, spilled WAL frames), and journal modes pgfs cannot follow."""

from __future__ import annotations

import sqlite3
import time

import pytest

from .helpers import Client, Mount, Worker, commit_log_count, table_digest
from .workload import SCHEMA, Tables, assert_same


def _prepare(client: Client, mode: str) -> None:
    assert client.one(f"PRAGMA journal_mode={mode}") == mode
    client.script(SCHEMA)
    client.execute("BEGIN")
    client.executemany(
        "INSERT INTO items(name, score, payload) VALUES (?, ?, ?)",
        [(f"item {i}", i / 4, bytes(i % 5 * 400)) for i in range(800)],
    )
    client.executemany(
        "INSERT INTO tags VALUES (?, ?, ?, ?)",
        [(f"{i:06X}-TAG", i, f"tag {i}", 0.5) for i in range(800)],
    )
    client.execute("COMMIT")


@pytest.mark.parametrize("mode", ["delete", "persist", "wal"])
def test_application_rollback_after_spilling(mount: Mount, pg_dsn: str, mode: str) -> None:
    tables = Tables()
    with Client(mount.db) as client:
        _prepare(client, mode)
        assert_same(client, pg_dsn, tables, "before")
        before = {t: table_digest(client, t) for t in tables.columns}
        commits = commit_log_count(pg_dsn)
        client.execute("PRAGMA cache_size=5")
        client.execute("BEGIN")
        client.execute("UPDATE items SET payload = zeroblob(2000), name = 'x' || name")
        client.execute("DELETE FROM tags WHERE rowid % 2 = 0")
        status = mount.db_status()
        assert status["pending_pages"] > 0 or status["wal_bytes"], "nothing spilled"
        client.execute("ROLLBACK")
        assert {t: table_digest(client, t) for t in tables.columns} == before
        assert_same(client, pg_dsn, tables, "after ROLLBACK")
        assert commit_log_count(pg_dsn) == commits, "a rollback reached PostgreSQL"
        client.execute("UPDATE items SET score = -1 WHERE id = 3")
        assert_same(client, pg_dsn, tables, "after the next commit")
        assert client.one("PRAGMA integrity_check") == "ok"


@pytest.mark.parametrize("mode", ["delete", "truncate", "wal"])
def test_process_killed_mid_transaction(mount: Mount, pg_dsn: str, mode: str) -> None:
    """SIGKILL after pages were spilled: PostgreSQL keeps the last commit, the next opener
    recovers (hot journal played back, or WAL recovery) and goes on committing."""
    tables = Tables()
    with Client(mount.db) as client:
        _prepare(client, mode)
        before = {t: table_digest(client, t) for t in tables.columns}
    with Worker(mount.db) as worker:
        worker.execute("PRAGMA cache_size=5")
        worker.execute("BEGIN")
        worker.execute("UPDATE items SET payload = zeroblob(3000), name = 'killed'")
        status = mount.db_status()
        if mode == "wal":
            assert status["wal_bytes"] > 0
        else:
            assert status["pending_pages"] > 0 and status["journal_bytes"] > 0
        worker.kill()
    with Client(mount.db, "apsw") as client:
        assert {t: table_digest(client, t) for t in tables.columns} == before
        assert client.one("PRAGMA integrity_check") == "ok"
        assert_same(client, pg_dsn, tables, "after recovery")
        if mode != "wal":
            assert mount.db_status()["journal_bytes"] in (None, 0)
        client.execute("INSERT INTO items(name) VALUES ('after the crash')")
        assert_same(client, pg_dsn, tables, "after the next commit")
    mount.restart()
    with Client(mount.db) as client:
        assert client.one("SELECT count(*) FROM items WHERE name = 'after the crash'") == 1


@pytest.mark.parametrize("mode", ["memory", "off"])
def test_journal_modes_without_a_journal_file_are_refused(
    mount: Mount, pg_dsn: str, mode: str
) -> None:
    """With journal_mode MEMORY or OFF no file marks the end of a transaction: pgfs refuses
    the database write with EIO, SQLite reports a disk I/O error, nothing changes."""
    tables = Tables()
    with Client(mount.db) as client:
        _prepare(client, "delete")
        before = {t: table_digest(client, t) for t in tables.columns}
        commits = commit_log_count(pg_dsn)
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            client.execute("UPDATE items SET name = 'lost' WHERE id < 100")
        assert mount.db_status()["refused_writes"] > 0
    time.sleep(0.1)
    assert "journal_mode=OFF or MEMORY" in mount.log()
    with Client(mount.db) as client:
        assert client.one("PRAGMA integrity_check") == "ok"
        assert {t: table_digest(client, t) for t in tables.columns} == before
        assert_same(client, pg_dsn, tables, "after the refused write")
        assert commit_log_count(pg_dsn) == commits
        # Back in a journal mode pgfs follows, commits work again.
        client.execute("UPDATE items SET name = 'kept' WHERE id < 100")
        assert_same(client, pg_dsn, tables, "after the next commit")
