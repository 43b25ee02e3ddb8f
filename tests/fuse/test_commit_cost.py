"""What one small commit costs PostgreSQL, counted where a user would count it: the
round trips on the wire (a real TCP proxy), the statements in the server's log and
their plans (auto_explain). No timings (scripts/bench_scale.py has those)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from pgfs.store.cluster import EmbeddedCluster

from .helpers import Client, Mount
from .proxy import FaultProxy

CATALOG_READS = re.compile(r"pg_class|pg_namespace|information_schema|sqlite_schema|pg_catalog")


@pytest.fixture
def proxy(pg_cluster: EmbeddedCluster) -> Iterator[FaultProxy]:
    with FaultProxy(pg_cluster.port) as running:
        yield running


def _database(dsn: str) -> str:
    return next(p.split("=", 1)[1] for p in dsn.split() if p.startswith("dbname="))


def _writer_log(cluster: EmbeddedCluster, dsn: str, since: int) -> list[str]:
    """Entries the server logged for the mount's writer connection past `since` (an
    entry is its first line and the unprefixed lines after it, such as a plan)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgfs-writer'"
            " AND datname = current_database()"
        ).fetchone()
    assert row is not None, "the mount has no writer connection"
    with open(cluster.log_file, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text)
    return [e for e in entries if f" [{row[0]}] " in e.split("\n", 1)[0]]


def _statements(entries: list[str]) -> list[str]:
    return [e for e in entries if re.search(r"LOG:  (statement|execute [^:]*):", e)]


def _scanned(entries: list[str]) -> list[str]:
    """Tables read whole by a plan, but `pgfs.meta` (a fixed handful of rows, where a
    scan is its cheapest read)."""
    found = re.findall(r"Seq Scan on (\S+)", "\n".join(e for e in entries if "plan:" in e))
    return [name for name in found if name != "meta"]


def test_a_single_row_commit_is_one_round_trip_with_no_catalog_reads(
    mount_factory: Callable[..., Mount],
    pg_dsn: str,
    pg_cluster: EmbeddedCluster,
    proxy: FaultProxy,
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        database = sql.Identifier(_database(pg_dsn))
        for setting in (
            "log_statement = 'all'",
            "session_preload_libraries = 'auto_explain'",
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
        ):
            conn.execute(sql.SQL("ALTER DATABASE {} SET " + setting).format(database))
    mount = mount_factory(proxy.dsn(pg_dsn))
    client = Client(mount.db)
    assert client.one("PRAGMA journal_mode=wal") == "wal"
    client.execute("PRAGMA synchronous=NORMAL")
    client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    client.execute("CREATE INDEX t_v ON t (v)")
    client.execute("BEGIN")
    client.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(5000)])
    client.execute("COMMIT")
    client.execute("INSERT INTO t (v) VALUES ('warm')")  # the pages it changes, cached
    since = pg_cluster.log_file.stat().st_size
    trips = proxy.round_trips()

    client.execute("INSERT INTO t (v) VALUES ('one more')")

    trips = proxy.round_trips() - trips
    entries = _writer_log(pg_cluster, pg_dsn, since)
    statements = _statements(entries)
    assert trips <= 2, f"{trips} round trips for one row"
    assert statements, "the commit's statements are not in the server log"
    assert not [s for s in statements if CATALOG_READS.search(s)], statements
    assert len(statements) <= 10, statements
    # Every statement used an index: no table of the store was read whole.
    assert any("plan:" in e for e in entries), "auto_explain logged no plan"
    assert _scanned(entries) == [], entries
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jellyfin.t").fetchone() == (5002,)
    client.close()
