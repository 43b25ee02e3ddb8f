"""Benchmark: the same workloads on a local SQLite file, directly on each server, and through
pgfs on each backend.

All run in this one process, side by side, against one embedded PostgreSQL
cluster (or $PGFS_DSN) and one throwaway MariaDB server (or $PGFS_MARIADB_URL;
left out when neither a URL nor the server binaries are there): (a) SQLite on
a file in a temporary folder on local disk, (b) the same statements run with
the server's driver against its tables, (c) SQLite on MOUNT/jellyfin.db through
a pgfs mount on that server (WAL, synchronous=NORMAL, as Jellyfin runs it). It
prints each workload's time per column and the ratio of each pgfs mount to its
server. Nothing here is asserted: it is a measurement.

    .venv/bin/python scripts/bench_mount.py [--rows 10000] [--commits 300] [--lookups 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pgfs.store.cluster import EmbeddedCluster

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = "x" * 300
SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, year INTEGER, body TEXT)"
SERVER_SCHEMA = (
    "CREATE TABLE bench.items (id bigint PRIMARY KEY, name text NOT NULL, year bigint, body text)"
)


class Timer:
    def __init__(self) -> None:
        self.results: dict[str, dict[str, float]] = {}

    def measure(self, workload: str, system: str, run: Callable[[], None]) -> None:
        start = time.perf_counter()
        run()
        self.results.setdefault(workload, {})[system] = time.perf_counter() - start


class SQLiteTarget:
    """Workloads through the SQLite library on a file (local or on the mount)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = self.connect()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=1")
        return conn

    def reopen(self) -> None:
        self.conn.close()
        self.conn = self.connect()

    def create(self) -> None:
        self.conn.execute(SCHEMA)

    def single_commits(self, ids: list[int]) -> None:
        for i in ids:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT INTO items VALUES (?, ?, ?, ?)", (i, f"item {i}", 1900 + i % 120, PAYLOAD)
            )
            self.conn.execute("COMMIT")

    def bulk(self, ids: list[int]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            ((i, f"item {i}", 1900 + i % 120, PAYLOAD) for i in ids),
        )
        self.conn.execute("COMMIT")

    def lookups(self, ids: list[int]) -> None:
        for i in ids:
            self.conn.execute("SELECT name, year FROM items WHERE id = ?", (i,)).fetchone()

    def scans(self, starts: list[int]) -> None:
        for s in starts:
            self.conn.execute(
                "SELECT count(*), max(year) FROM items WHERE id BETWEEN ? AND ?", (s, s + 200)
            ).fetchone()

    def close(self) -> None:
        self.conn.close()


class ServerTarget:
    """The same statements with the server's own driver (psycopg, mariadb), schema `bench`."""

    def __init__(self, connect: Callable[[], Any], drop: str, create: str) -> None:
        self.connect = connect
        self.drop = drop
        self.conn = connect()
        self.execute(drop)
        self.execute(create)

    def execute(self, statement: str, params: tuple = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(statement, params)
        return cur

    def reopen(self) -> None:
        self.conn.close()
        self.conn = self.connect()

    def create(self) -> None:
        self.execute(SERVER_SCHEMA)

    def single_commits(self, ids: list[int]) -> None:
        for i in ids:
            self.execute("BEGIN")
            self.execute(
                "INSERT INTO bench.items VALUES (%s, %s, %s, %s)",
                (i, f"item {i}", 1900 + i % 120, PAYLOAD),
            )
            self.execute("COMMIT")

    def bulk(self, ids: list[int]) -> None:
        self.execute("BEGIN")
        self.conn.cursor().executemany(
            "INSERT INTO bench.items VALUES (%s, %s, %s, %s)",
            [(i, f"item {i}", 1900 + i % 120, PAYLOAD) for i in ids],
        )
        self.execute("COMMIT")

    def lookups(self, ids: list[int]) -> None:
        for i in ids:
            self.execute("SELECT name, year FROM bench.items WHERE id = %s", (i,)).fetchone()

    def scans(self, starts: list[int]) -> None:
        for s in starts:
            self.execute(
                "SELECT count(*), max(year) FROM bench.items WHERE id BETWEEN %s AND %s",
                (s, s + 200),
            ).fetchone()

    def close(self) -> None:
        self.execute(self.drop)
        self.conn.close()


def postgres_target(dsn: str) -> ServerTarget:
    import psycopg

    return ServerTarget(
        lambda: psycopg.connect(dsn, autocommit=True),
        "DROP SCHEMA IF EXISTS bench CASCADE",
        "CREATE SCHEMA bench",
    )


def mariadb_target(url: str) -> ServerTarget:
    import mariadb

    from pgfs.store.mariadb.connection import connect_kwargs

    return ServerTarget(
        lambda: mariadb.connect(**connect_kwargs(url)),
        "DROP DATABASE IF EXISTS bench",
        "CREATE DATABASE bench",
    )


class Mount:
    def __init__(self, mountpoint: Path, dsn: str) -> None:
        self.mountpoint = mountpoint
        self.dsn = dsn
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [str(ROOT / ".venv/bin/pgfs"), "mount", str(self.mountpoint), "--foreground"]
        env = dict(os.environ, PGFS_DSN=self.dsn)
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit("bench: the pgfs mount did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run([str(ROOT / ".venv/bin/pgfs"), "unmount", str(self.mountpoint)], check=False)
        if self.process is not None:
            self.process.wait(timeout=60)


BACKENDS = {"postgres": postgres_target, "mariadb": mariadb_target}


def run(args: argparse.Namespace, urls: dict[str, str]) -> Timer:
    """Every workload on local SQLite, then on each server and its pgfs mount."""
    timer = Timer()
    rng = random.Random(7)
    single = list(range(1, args.commits + 1))
    bulk = list(range(args.commits + 1, args.commits + 1 + args.rows))
    everything = single + bulk
    lookups = [rng.choice(everything) for _ in range(args.lookups)]
    scans = [rng.choice(everything) for _ in range(args.lookups // 10)]

    def warm(name: str, target) -> None:
        timer.measure(
            f"{args.commits} single-row commits", name, lambda: target.single_commits(single)
        )
        timer.measure(f"bulk transaction of {args.rows} rows", name, lambda: target.bulk(bulk))
        timer.measure(f"{args.lookups} point lookups, warm", name, lambda: target.lookups(lookups))
        timer.measure(
            f"{len(scans)} range scans of 200 rows, warm", name, lambda: target.scans(scans)
        )

    def cold(name: str, target) -> None:
        timer.measure(f"{args.lookups} point lookups, cold", name, lambda: target.lookups(lookups))
        timer.measure(
            f"{len(scans)} range scans of 200 rows, cold", name, lambda: target.scans(scans)
        )

    with tempfile.TemporaryDirectory(prefix="pgfs-bench-") as tmp:
        local = SQLiteTarget(Path(tmp) / "local.db")
        local.create()
        warm("sqlite", local)
        local.reopen()
        cold("sqlite", local)
        local.close()
        for backend, url in urls.items():
            server = BACKENDS[backend](url)
            mountpoint = Path(tmp) / f"mnt-{backend}"
            mountpoint.mkdir()
            mount = Mount(mountpoint, url)
            mount.start()
            try:
                mounted = SQLiteTarget(mountpoint / "jellyfin.db")
                for name, target in ((backend, server), (f"pgfs-{backend}", mounted)):
                    target.create()
                    warm(name, target)
                mounted.close()
                mount.stop()
                mount.start()  # cold: a fresh mount renders every page from the server again
                mounted = SQLiteTarget(mountpoint / "jellyfin.db")
                server.reopen()
                for name, target in ((backend, server), (f"pgfs-{backend}", mounted)):
                    cold(name, target)
                mounted.close()
            finally:
                mount.stop()
                server.close()
    return timer


def report(timer: Timer, backends: list[str]) -> None:
    columns = ["sqlite"]
    for backend in backends:
        columns += [backend, f"pgfs-{backend}"]
    ratios = [f"pgfs/{'pg' if b == 'postgres' else b}" for b in backends]
    print(
        f"{'workload':<42}"
        + "".join(f" {c:>14}" for c in columns)
        + "".join(f" {r:>13}" for r in ratios)
    )
    for workload, times in timer.results.items():
        cells = "".join(f" {times[c] * 1000:>12.0f}ms" for c in columns)
        cells += "".join(f" {times[f'pgfs-{b}'] / times[b]:>12.1f}x" for b in backends)
        print(f"{workload:<42}{cells}")


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """The URL of each backend: $PGFS_DSN / $PGFS_MARIADB_URL, else throwaway servers."""
    with contextlib.ExitStack() as stack:
        urls = {}
        dsn = os.environ.get("PGFS_DSN")
        if not dsn:
            dsn = stack.enter_context(EmbeddedCluster.temporary()).dsn
        urls["postgres"] = dsn
        url = os.environ.get("PGFS_MARIADB_URL")
        if not url:
            sys.path.insert(0, str(ROOT))
            from tests.support.mariadb_server import MariaDBServer, missing

            reason = missing()
            if reason:
                print(f"bench: no MariaDB column: {reason}", file=sys.stderr)
            else:
                url = stack.enter_context(MariaDBServer.temporary()).url()
        if url:
            urls["mariadb"] = url
        yield urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=3_000)
    args = parser.parse_args()
    with servers() as urls:
        report(run(args, urls), list(urls))


if __name__ == "__main__":
    main()
