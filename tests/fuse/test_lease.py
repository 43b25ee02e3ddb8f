"""One writer per store: a second mount is refused, --takeover fences the first, and a
mount whose lease connection drops takes it again (or, if another mount took it, fails
its writes) — real mounts, a real PostgreSQL, the real SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from .helpers import REPO, Client, Mount, assert_all_tables_same


def _terminate(dsn: str, application: str) -> int:
    """End the backends of `application` connected to `dsn`'s database; how many.

    The timeout makes `pg_terminate_backend` wait until each backend has exited, so
    the mount's socket already holds the server's goodbye when this returns.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (application,),
        ).fetchall()
    return len(rows)


def _rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, v FROM jellyfin.t ORDER BY id").fetchall()


def _second_mount(dsn: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    point = tmp_path / "second"
    point.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "pgfs", "mount", str(point), "--foreground", "--dsn", dsn]
    return subprocess.run(
        [*argv, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def _make_table(mount: Mount) -> None:
    with Client(mount.db) as client:
        client.execute("PRAGMA journal_mode=WAL")
        client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        client.execute("INSERT INTO t (v) VALUES ('first')")


def test_a_second_mount_is_refused_naming_the_holder(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    first = mount_factory(pg_dsn)
    _make_table(first)
    holder = first.proc.pid if first.proc else 0
    refused = _second_mount(pg_dsn, tmp_path)
    assert refused.returncode == 1
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("pgfs: error")]
    assert f"pid {holder}" in line and str(first.path) in line and "since" in line
    assert "--takeover" in line
    # The first mount never noticed.
    with Client(first.db) as client:
        client.execute("INSERT INTO t (v) VALUES ('still mine')")
    assert [v for _, v in _rows(pg_dsn)] == ["first", "still mine"]
    lease = first.db_status()["lease"]
    assert lease["held"] and lease["epoch"] >= 1 and lease["lost"] is None


def test_takeover_fences_the_old_mount(mount_factory: Callable[..., Mount], pg_dsn: str) -> None:
    old = mount_factory(pg_dsn)
    _make_table(old)
    client = Client(old.db)
    client.execute("INSERT INTO t (v) VALUES ('before takeover')")
    new = mount_factory(pg_dsn, extra=["--takeover"])
    # The old mount can never commit again: its write fails, PostgreSQL keeps the new
    # mount's state, and its log says why.
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        client.execute("INSERT INTO t (v) VALUES ('from the fenced mount')")
    client.close()
    assert "lost the writer lease" in old.log() or "lease lost" in old.log()
    assert old.db_status()["lease"]["lost"] is not None
    with Client(new.db) as fresh:
        fresh.execute("INSERT INTO t (v) VALUES ('after takeover')")
        assert fresh.one("PRAGMA integrity_check") == "ok"
        assert_all_tables_same(fresh, pg_dsn)
    assert [v for _, v in _rows(pg_dsn)] == ["first", "before takeover", "after takeover"]


def test_a_dropped_lease_connection_is_taken_again(
    mount_factory: Callable[..., Mount], pg_dsn: str
) -> None:
    mount = mount_factory(pg_dsn)
    _make_table(mount)
    epoch = mount.db_status()["lease"]["epoch"]
    assert _terminate(pg_dsn, "pgfs-lease") == 1
    with Client(mount.db) as client:
        client.execute("INSERT INTO t (v) VALUES ('after the drop')")
        assert_all_tables_same(client, pg_dsn)
    lease = mount.db_status()["lease"]
    assert lease["held"] and lease["epoch"] == epoch and lease["reacquired"] >= 1
    assert "taken again" in mount.log()


def test_a_mount_that_lost_its_lease_to_another_fails_its_writes(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    first = mount_factory(pg_dsn)
    _make_table(first)
    client = Client(first.db)
    # The lease connection drops (a partition): while it is gone, another mount starts
    # and, finding the lease free, takes it.
    assert _terminate(pg_dsn, "pgfs-lease") == 1
    deadline = time.monotonic() + 10
    second = None
    while second is None:
        try:
            second = mount_factory(pg_dsn)
        except RuntimeError:
            assert time.monotonic() < deadline, "the second mount never got the lease"
    with Client(second.db) as other:
        other.execute("INSERT INTO t (v) VALUES ('second mount')")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        client.execute("INSERT INTO t (v) VALUES ('lost')")
    client.close()
    assert first.db_status()["lease"]["lost"] is not None
    assert [v for _, v in _rows(pg_dsn)] == ["first", "second mount"]


def test_metrics_show_the_lease(mount_factory: Callable[..., Mount], pg_dsn: str) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mount = mount_factory(pg_dsn, extra=["--metrics-addr", f"127.0.0.1:{port}"])
    _make_table(mount)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'pgfs_lease_held{database="jellyfin.db"} 1.0' in text
    epoch = mount.db_status()["lease"]["epoch"]
    assert f'pgfs_lease_epoch{{database="jellyfin.db"}} {float(epoch)}' in text
