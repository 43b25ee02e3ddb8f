"""`--metrics-addr`: after a workload, /metrics shows the commits and rows that were
done, and /healthz follows PostgreSQL's reachability."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from pgfs.store.cluster import EmbeddedCluster

from .helpers import Client, Mount

Sample = tuple[str, frozenset[tuple[str, str]]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def parse_metrics(text: str) -> dict[Sample, float]:
    """Prometheus text format -> {(name, labels): value}; checks every line's shape."""
    samples: dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith(("# HELP ", "# TYPE ")), line
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: set[tuple[str, str]] = set()
        for part in filter(None, rest.rstrip("}").split(",")):
            key, _, quoted = part.partition("=")
            assert quoted.startswith('"') and quoted.endswith('"'), line
            labels.add((key, quoted[1:-1]))
        samples[(name, frozenset(labels))] = float(value)
    return samples


def _by(samples: dict[Sample, float], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """Values of one metric keyed by the given labels."""
    found: dict[tuple[str, ...], float] = {}
    for (metric, labels), value in samples.items():
        if metric == name:
            got = dict(labels)
            found[tuple(got[k] for k in keys)] = value
    return found


def _commit_log(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT source, count(*) FROM pgfs.commit_log WHERE source <> '' GROUP BY 1"
        ).fetchall()
    return {source: int(n) for source, n in rows}


def test_metrics_after_a_workload(pg_dsn: str, mount_factory: Callable[..., Mount]) -> None:
    port = _free_port()
    mount = mount_factory(pg_dsn, extra=["--metrics-addr", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    assert _get(f"{base}/healthz") == (200, "ok\n")

    with Client(mount.db) as client:
        assert client.one("PRAGMA journal_mode=DELETE") == "delete"
        client.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        client.execute("CREATE TABLE b (k TEXT, n INTEGER)")  # hidden _rowid in PostgreSQL
        client.execute("BEGIN")
        client.executemany("INSERT INTO a (v) VALUES (?)", [(f"a{i}",) for i in range(20)])
        client.executemany("INSERT INTO b VALUES (?, ?)", [(f"b{i}", i) for i in range(7)])
        client.execute("COMMIT")
        client.execute("UPDATE a SET v = v || '!' WHERE id <= 5")
        client.execute("DELETE FROM a WHERE id > 17")
        client.execute("BEGIN")
        client.execute("INSERT INTO a (v) VALUES ('rolled back')")
        client.execute("ROLLBACK")
        assert client.one("PRAGMA journal_mode=WAL") == "wal"
        client.execute("PRAGMA synchronous=1")
        client.execute("INSERT INTO b VALUES ('wal', 1), ('wal', 2), ('wal', 3)")
        client.execute("UPDATE b SET n = n + 100 WHERE k = 'b0'")
        client.execute("DELETE FROM b WHERE k = 'b6'")
        client.execute("UPDATE a SET v = 'same' WHERE id = 1")
        client.execute("UPDATE a SET v = 'same' WHERE id = 1")  # no row changes

        status, text = _get(f"{base}/metrics")
    assert status == 200
    samples = parse_metrics(text)

    # Commits by source: exactly the transactions PostgreSQL logged.
    logged = _commit_log(pg_dsn)
    commits = _by(samples, "pgfs_commits_total", "database", "source")
    assert commits == {("jellyfin.db", s): n for s, n in logged.items()}
    # journal: 2 CREATEs, the batch, update, delete, the switch to WAL (header bytes 18/19);
    # wal: insert, update, delete, update. The rollback and the no-op update change nothing.
    assert logged == {"journal": 6, "wal": 4}
    assert _by(samples, "pgfs_commit_failures_total", "database") == {("jellyfin.db",): 0}

    # Rows by table and kind: what the statements did.
    rows = _by(samples, "pgfs_rows_total", "database", "table", "op")
    nonzero = {(t, op): n for (_, t, op), n in rows.items() if n}
    assert nonzero == {
        ("a", "inserted"): 20,
        ("a", "updated"): 6,  # five '!' and one 'same'
        ("a", "deleted"): 3,
        ("b", "inserted"): 10,
        ("b", "updated"): 1,
        ("b", "deleted"): 1,
    }
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jellyfin.a").fetchone() == (17,)
        assert conn.execute("SELECT count(*) FROM jellyfin.b").fetchone() == (9,)

    # Commit latency: one observation per commit; buckets are cumulative up to +Inf.
    latency_count = _by(samples, "pgfs_commit_latency_seconds_count", "database")
    assert latency_count == {("jellyfin.db",): sum(logged.values())}
    buckets = _by(samples, "pgfs_commit_latency_seconds_bucket", "database", "le")
    ordered = [buckets[("jellyfin.db", le)] for le in ("0.005", "0.05", "1.0", "10.0", "+Inf")]
    assert ordered == sorted(ordered) and ordered[-1] == sum(logged.values())
    total = _by(samples, "pgfs_commit_seconds_total", "database")[("jellyfin.db",)]
    latency_sum = _by(samples, "pgfs_commit_latency_seconds_sum", "database")
    assert total > 0 and latency_sum[("jellyfin.db",)] == pytest.approx(total, rel=1e-3)
    assert samples[("pgfs_up", frozenset())] == 1
    rendered = _by(samples, "pgfs_pages_rendered_total", "database")[("jellyfin.db",)]
    hits = _by(samples, "pgfs_page_cache_hits_total", "database")[("jellyfin.db",)]
    assert rendered + hits > 0
    assert samples[("pgfs_fuse_written_bytes_total", frozenset())] > 0
    assert _get(f"{base}/nope")[0] == 404


def test_healthz_follows_postgres(
    pg_dsn: str, pg_cluster: EmbeddedCluster, mount_factory: Callable[..., Mount]
) -> None:
    port = _free_port()
    mount = mount_factory(pg_dsn, extra=["--metrics-addr", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}/healthz"
    assert _get(url) == (200, "ok\n")
    database = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    assert isinstance(database, str)

    def allow(yes: bool) -> None:
        with psycopg.connect(pg_cluster.admin_dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(database), sql.SQL("true" if yes else "false")
                )
            )
            if not yes:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                )

    allow(False)
    try:
        status, body = _get(url)
        assert status == 503, body
        assert "PostgreSQL" in body and "jellyfin.db" in body
        assert "password" not in body.lower()
    finally:
        allow(True)
    deadline = time.monotonic() + 30
    while _get(url)[0] != 200:
        assert time.monotonic() < deadline, "healthz did not recover"
        time.sleep(0.2)
    with Client(mount.db) as client:
        client.execute("CREATE TABLE t (x)")
        client.execute("INSERT INTO t VALUES (1)")
