"""The server fails while the application commits, on every backend (PostgreSQL,
MariaDB): the application gets an error, nothing is half-applied, and once the server
is back the next commit goes through.

Stopping the server costs the store's pool timeout (30 s) per attempt, so that test
is marked slow; a commit the server rejects half-way (a trigger raising an error on
one of the tables) covers the same path quickly."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from pgfs.store.cluster import EmbeddedCluster
from tests.support.mariadb_server import MariaDBServer, missing
from tests.support.server_view import view_of

from .helpers import Client, Mount, commit_log_count
from .workload import SCHEMA, Tables, assert_same


@dataclass
class OwnServer:
    """A server of this module's own (the tests stop and restart it) and a store URL."""

    server: EmbeddedCluster | MariaDBServer
    url: str

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def own_server(request: pytest.FixtureRequest) -> Iterator[OwnServer]:
    if request.param == "mariadb":
        reason = missing()
        if reason:
            pytest.skip(reason)
        with MariaDBServer.temporary() as server:
            yield OwnServer(server, server.url())
        return
    with EmbeddedCluster.temporary() as cluster:
        with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE failure")
        yield OwnServer(cluster, cluster.dsn_for("failure"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_commit_while_the_server_is_down(
    own_server: OwnServer, mount_factory: Callable[..., Mount], mode: str
) -> None:
    dsn = own_server.url
    meta, data = f"pgfs_{mode}", f"jellyfin_{mode}"
    mount = mount_factory(dsn, extra=["--meta-schema", meta, "--data-schema", data])
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
        assert_same(client, dsn, tables, "before the outage", schema=data)
        expected = client.execute("SELECT * FROM items ORDER BY id")
        commits = commit_log_count(dsn, meta)

        own_server.stop()
        try:
            with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
                client.execute("UPDATE items SET name = 'outage' WHERE id % 2 = 0")
            status = mount.db_status()
            assert status["failed_commits"] >= 1
            assert status["last_error"]
        finally:
            own_server.start()

        # Nothing of the failed transaction reached the server.
        assert commit_log_count(dsn, meta) == commits
        assert client.execute("SELECT * FROM items ORDER BY id") == expected
        assert_same(client, dsn, tables, "after the restart", schema=data)
        client.execute("UPDATE items SET name = 'after' WHERE id % 2 = 0")
        assert_same(client, dsn, tables, "after the next commit", schema=data)
        assert client.one("PRAGMA integrity_check") == "ok"
    assert "commit via" in mount.log() and "failed" in mount.log()


FAIL_TRIGGER = {
    "postgres": [
        "CREATE FUNCTION public.pgfs_test_fail() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'rejected by the test'; END $$",
        "CREATE TRIGGER pgfs_test_fail BEFORE INSERT ON jellyfin.tags"
        " FOR EACH ROW EXECUTE FUNCTION public.pgfs_test_fail()",
    ],
    "mariadb": [
        "CREATE TRIGGER jellyfin.pgfs_test_fail BEFORE INSERT ON jellyfin.tags FOR EACH ROW"
        " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rejected by the test'"
    ],
}
DROP_TRIGGER = {
    "postgres": "DROP TRIGGER pgfs_test_fail ON jellyfin.tags",
    "mariadb": "DROP TRIGGER jellyfin.pgfs_test_fail",
}


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_commit_rejected_half_way(
    mount_factory: Callable[..., Mount], store_url: str, mode: str
) -> None:
    """The commit's transaction fails after it changed `items` (a trigger on `tags`
    raises): the application gets an error and `items` is untouched."""
    mount = mount_factory(store_url)
    server = view_of(store_url)
    tables = Tables()
    with Client(mount.db) as client:
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        client.script(SCHEMA)
        client.execute("INSERT INTO items(name) VALUES ('a'), ('b')")
        expected = {t: client.execute(f"SELECT * FROM {t} ORDER BY rowid") for t in tables.columns}
        commits = commit_log_count(store_url)
        for statement in FAIL_TRIGGER[server.backend]:
            server.query(statement)
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            client.script(
                "BEGIN; UPDATE items SET name = 'changed'; "
                "INSERT INTO tags VALUES ('G', 1, 'x', 0.5); COMMIT;"
            )
        assert "rejected by the test" in mount.db_status()["last_error"]
        server.query(DROP_TRIGGER[server.backend])
        assert commit_log_count(store_url) == commits
        assert_same(client, store_url, tables, "after the rejected commit")
        if client.conn.in_transaction:
            client.execute("ROLLBACK")
        for table in tables.columns:
            assert client.execute(f"SELECT * FROM {table} ORDER BY rowid") == expected[table]
        client.execute("INSERT INTO tags VALUES ('G', 1, 'x', 0.5)")
        client.execute("UPDATE items SET name = 'changed'")
        assert_same(client, store_url, tables, "after the next commit")
        assert client.one("PRAGMA integrity_check") == "ok"
