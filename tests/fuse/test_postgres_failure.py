"""PostgreSQL fails while the application commits: the application gets an error,
nothing is half-applied, and once PostgreSQL is back the next commit goes through.

Stopping the server costs the store's pool timeout (30 s) per attempt, so that test
is marked slow; a commit PostgreSQL rejects half-way (a trigger raising an error on
one of the tables) covers the same path quickly."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgfs.store.cluster import EmbeddedCluster

from .helpers import Client, Mount, commit_log_count
from .workload import SCHEMA, Tables, assert_same


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[EmbeddedCluster]:
    """A PostgreSQL server of this module's own: the tests stop and restart it."""
    with EmbeddedCluster.temporary() as cluster:
        yield cluster


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_commit_while_postgres_is_down(
    own_cluster: EmbeddedCluster, mount_factory: Callable[..., Mount], mode: str
) -> None:
    from psycopg import sql

    database = f"failure_{mode}"
    with psycopg.connect(own_cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    dsn = own_cluster.dsn_for(database)
    mount = mount_factory(dsn)
    tables = Tables()
    with Client(mount.db) as client:
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        client.script(SCHEMA)
        client.execute("BEGIN")
        client.executemany(
            "INSERT INTO items(name, payload) VALUES (?, ?)",
            [(f"item {i}", bytes(i % 9 * 100)) for i in range(300)],
        )
        client.execute("COMMIT")
        assert_same(client, dsn, tables, "before the outage")
        expected = client.execute("SELECT * FROM items ORDER BY id")
        commits = commit_log_count(dsn)

        own_cluster.stop()
        try:
            with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
                client.execute("UPDATE items SET name = 'outage' WHERE id % 2 = 0")
            status = mount.db_status()
            assert status["failed_commits"] >= 1
            assert status["last_error"]
        finally:
            own_cluster.start()

        # Nothing of the failed transaction reached PostgreSQL.
        assert commit_log_count(dsn) == commits
        assert client.execute("SELECT * FROM items ORDER BY id") == expected
        assert_same(client, dsn, tables, "after the restart")
        client.execute("UPDATE items SET name = 'after' WHERE id % 2 = 0")
        assert_same(client, dsn, tables, "after the next commit")
        assert client.one("PRAGMA integrity_check") == "ok"
    assert "commit via" in mount.log() and "failed" in mount.log()


FAIL_TRIGGER = """
CREATE FUNCTION public.pgfs_test_fail() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'rejected by the test'; END $$;
CREATE TRIGGER pgfs_test_fail BEFORE INSERT ON jellyfin.tags
    FOR EACH ROW EXECUTE FUNCTION public.pgfs_test_fail();
"""


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_commit_rejected_half_way(mount: Mount, pg_dsn: str, mode: str) -> None:
    """The commit's PostgreSQL transaction fails after it changed `items` (a trigger on
    `tags` raises): the application gets an error and `items` is untouched."""
    tables = Tables()
    with Client(mount.db) as client:
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        client.script(SCHEMA)
        client.execute("INSERT INTO items(name) VALUES ('a'), ('b')")
        expected = {t: client.execute(f"SELECT * FROM {t} ORDER BY rowid") for t in tables.columns}
        commits = commit_log_count(pg_dsn)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(FAIL_TRIGGER)
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            client.script(
                "BEGIN; UPDATE items SET name = 'changed'; "
                "INSERT INTO tags VALUES ('G', 1, 'x', 0.5); COMMIT;"
            )
        assert "rejected by the test" in mount.db_status()["last_error"]
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER pgfs_test_fail ON jellyfin.tags")
        assert commit_log_count(pg_dsn) == commits
        assert_same(client, pg_dsn, tables, "after the rejected commit")
        if client.conn.in_transaction:
            client.execute("ROLLBACK")
        for table in tables.columns:
            assert client.execute(f"SELECT * FROM {table} ORDER BY rowid") == expected[table]
        client.execute("INSERT INTO tags VALUES ('G', 1, 'x', 0.5)")
        client.execute("UPDATE items SET name = 'changed'")
        assert_same(client, pg_dsn, tables, "after the next commit")
        assert client.one("PRAGMA integrity_check") == "ok"
