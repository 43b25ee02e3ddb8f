"""A connection cut at each step of a commit, through a real TCP proxy, in every journal
mode and on every backend (`store_url`: PostgreSQL, MariaDB): afterwards the server holds
exactly what the application was told, a fresh mount passes integrity_check and
`pgfs verify` is ok."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from pgfs.store import backend_of
from pgfs.store.dsn import parse_url
from tests.support.server_view import view_of

from .helpers import REPO, Client, Mount, assert_all_tables_same
from .proxy import Cut, FaultProxy

MODES = ["delete", "truncate", "persist", "wal"]


@pytest.fixture
def proxy(store_url: str, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A TCP proxy in front of the server `store_url` names."""
    server = "mariadb_server" if backend_of(store_url) == "mariadb" else "pg_cluster"
    with FaultProxy(request.getfixturevalue(server).port) as running:
        yield running


def _through(proxy: FaultProxy, url: str) -> str:
    """`url` pointed at the proxy (TCP, 127.0.0.1)."""
    if backend_of(url) != "mariadb":
        return proxy.dsn(url)
    parts = parse_url(url) or {}
    return f"mariadb://{parts['user']}:{parts['password']}@127.0.0.1:{proxy.port}/"


def _count(dsn: str) -> int:
    return view_of(dsn).count("t")


def _verify(dsn: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgfs", "verify", "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok:")


def _start(mode: str, mount: Mount) -> Client:
    client = Client(mount.db)
    assert client.one(f"PRAGMA journal_mode={mode}") == mode
    client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    client.executemany("INSERT INTO t (v) VALUES (?)", [(f"before {i}",) for i in range(10)])
    return client


def _transaction(client: Client) -> bool:
    """50 rows in one transaction; whether SQLite said it committed."""
    try:
        client.execute("BEGIN")
        client.executemany("INSERT INTO t (v) VALUES (?)", [(f"cut {i}",) for i in range(50)])
        client.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        assert "disk I/O error" in str(exc)
        return False
    return True


def _after(
    told: bool, client: Client, mount: Mount, pg_dsn: str, fresh: Callable[..., Mount]
) -> None:
    """What the application sees, what PostgreSQL holds, and a fresh mount agree."""
    expected = 60 if told else 10
    assert client.one("SELECT count(*) FROM t") == expected
    assert _count(pg_dsn) == expected
    client.execute("INSERT INTO t (v) VALUES ('next')")  # the mount goes on
    assert _count(pg_dsn) == expected + 1
    client.close()
    mount.stop()
    with Client(fresh(pg_dsn).db) as again:
        assert again.one("PRAGMA integrity_check") == "ok"
        assert again.one("SELECT count(*) FROM t") == expected + 1
        assert_all_tables_same(again, pg_dsn)
    _verify(pg_dsn)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", [Cut.BEFORE_BEGIN, Cut.MID_STATEMENTS, Cut.AFTER_COMMIT])
def test_a_cut_connection_never_disagrees(
    mode: str,
    cut: Cut,
    proxy: FaultProxy,
    store_url: str,
    mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory(_through(proxy, store_url))
    client = _start(mode, mount)
    proxy.arm(cut)
    started = time.monotonic()
    told = _transaction(client)
    assert proxy.fired == [cut]
    # The lost answer is found out, not guessed: a COMMIT that reached the server is a
    # success. One that did not fails the system call; SQLite may then write the rest of
    # a short write again (WAL), which commits on a new connection: either way what it
    # is told is what PostgreSQL holds.
    if cut is Cut.AFTER_COMMIT:
        assert told
    assert time.monotonic() - started < 25
    _after(told, client, mount, store_url, mount_factory)


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_short_partition_after_commit_is_waited_for(
    mode: str, proxy: FaultProxy, store_url: str, mount_factory: Callable[..., Mount]
) -> None:
    mount = mount_factory(_through(proxy, store_url))
    client = _start(mode, mount)
    proxy.arm(Cut.PARTITION, seconds=4)
    told = _transaction(client)
    assert told
    _after(told, client, mount, store_url, mount_factory)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_long_partition_fails_the_commit_and_undoes_it_if_it_landed(
    mode: str, proxy: FaultProxy, store_url: str, mount_factory: Callable[..., Mount]
) -> None:
    """The server got COMMIT, then nothing came through for 35 s: past the bound the
    commit fails (EIO); once the server answers, the mount learns the commit landed and
    undoes it, so PostgreSQL holds what the application was told."""
    mount = mount_factory(_through(proxy, store_url))
    client = _start(mode, mount)
    proxy.arm(Cut.PARTITION, seconds=35)
    started = time.monotonic()
    told = _transaction(client)
    waited = time.monotonic() - started
    assert not told
    assert waited < 30, f"the failed commit blocked SQLite for {waited:.0f} s"
    while proxy.partitioned:
        time.sleep(0.5)
    deadline = time.monotonic() + 10  # the mount asks again every second
    while _count(store_url) != 10:
        assert time.monotonic() < deadline, "the landed commit was not undone"
        time.sleep(0.2)
    _after(told, client, mount, store_url, mount_factory)
    assert "undoing it" in mount.log()
