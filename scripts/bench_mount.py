"""Benchmark: the same workloads on a local SQLite file, directly on PostgreSQL, and through pgfs.

All three run in this one process, side by side, against one embedded
PostgreSQL cluster (or $PGFS_DSN): (a) SQLite on a file in a temporary folder
on local disk, (b) the same statements run with psycopg against PostgreSQL
tables, (c) SQLite on MOUNT/jellyfin.db through a pgfs mount (WAL,
synchronous=NORMAL, as Jellyfin runs it). It prints each workload's time and
the ratios c/a and c/b. Nothing here is asserted: it is a measurement.

    .venv/bin/python scripts/bench_mount.py [--rows 10000] [--commits 300] [--lookups 3000]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from pgfs.store.cluster import EmbeddedCluster

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = "x" * 300
SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, year INTEGER, body TEXT)"
PG_SCHEMA = (
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


class PostgresTarget:
    """The same statements with psycopg on PostgreSQL itself."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        self.conn.execute("CREATE SCHEMA bench")

    def reopen(self) -> None:
        info = self.conn.info.dsn
        self.conn.close()
        self.conn = psycopg.connect(info, autocommit=True)

    def create(self) -> None:
        self.conn.execute(PG_SCHEMA)

    def single_commits(self, ids: list[int]) -> None:
        for i in ids:
            with self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO bench.items VALUES (%s, %s, %s, %s)",
                    (i, f"item {i}", 1900 + i % 120, PAYLOAD),
                )

    def bulk(self, ids: list[int]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench.items VALUES (%s, %s, %s, %s)",
                [(i, f"item {i}", 1900 + i % 120, PAYLOAD) for i in ids],
            )

    def lookups(self, ids: list[int]) -> None:
        for i in ids:
            self.conn.execute("SELECT name, year FROM bench.items WHERE id = %s", (i,)).fetchone()

    def scans(self, starts: list[int]) -> None:
        for s in starts:
            self.conn.execute(
                "SELECT count(*), max(year) FROM bench.items WHERE id BETWEEN %s AND %s",
                (s, s + 200),
            ).fetchone()

    def close(self) -> None:
        self.conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        self.conn.close()


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


def run(args: argparse.Namespace, dsn: str) -> Timer:
    timer = Timer()
    rng = random.Random(7)
    single = list(range(1, args.commits + 1))
    bulk = list(range(args.commits + 1, args.commits + 1 + args.rows))
    everything = single + bulk
    lookups = [rng.choice(everything) for _ in range(args.lookups)]
    scans = [rng.choice(everything) for _ in range(args.lookups // 10)]

    with tempfile.TemporaryDirectory(prefix="pgfs-bench-") as tmp:
        mountpoint = Path(tmp) / "mnt"
        mountpoint.mkdir()
        local = SQLiteTarget(Path(tmp) / "local.db")
        postgres = PostgresTarget(dsn)
        mount = Mount(mountpoint, dsn)
        mount.start()
        try:
            mounted = SQLiteTarget(mountpoint / "jellyfin.db")
            targets = {"sqlite": local, "postgres": postgres, "pgfs": mounted}
            for target in targets.values():
                target.create()
            for name, target in targets.items():
                timer.measure(
                    f"{args.commits} single-row commits",
                    name,
                    lambda t=target: t.single_commits(single),
                )
                timer.measure(
                    f"bulk transaction of {args.rows} rows", name, lambda t=target: t.bulk(bulk)
                )
                timer.measure(
                    f"{args.lookups} point lookups, warm", name, lambda t=target: t.lookups(lookups)
                )
                timer.measure(
                    f"{len(scans)} range scans of 200 rows, warm",
                    name,
                    lambda t=target: t.scans(scans),
                )
            mounted.close()
            mount.stop()
            mount.start()  # cold: a fresh mount renders every page from PostgreSQL again
            mounted = SQLiteTarget(mountpoint / "jellyfin.db")
            targets["pgfs"] = mounted
            local.reopen()
            postgres.reopen()
            for name, target in targets.items():
                timer.measure(
                    f"{args.lookups} point lookups, cold", name, lambda t=target: t.lookups(lookups)
                )
                timer.measure(
                    f"{len(scans)} range scans of 200 rows, cold",
                    name,
                    lambda t=target: t.scans(scans),
                )
            mounted.close()
        finally:
            mount.stop()
            local.close()
            postgres.close()
    return timer


def report(timer: Timer) -> None:
    print(
        f"{'workload':<42} {'sqlite':>9} {'postgres':>9} {'pgfs':>9}"
        f" {'pgfs/sqlite':>12} {'pgfs/pg':>8}"
    )
    for workload, times in timer.results.items():
        a, b, c = times["sqlite"], times["postgres"], times["pgfs"]
        print(
            f"{workload:<42} {a * 1000:>7.0f}ms {b * 1000:>7.0f}ms {c * 1000:>7.0f}ms"
            f" {c / a:>11.1f}x {c / b:>7.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=3_000)
    args = parser.parse_args()
    dsn = os.environ.get("PGFS_DSN")
    if dsn:
        report(run(args, dsn))
        return
    with EmbeddedCluster.temporary() as cluster:
        report(run(args, cluster.dsn))


if __name__ == "__main__":
    main()
