"""Benchmark: one row holding a blob of 1, 10 and 100 MB, side by side in one run.

For each size: write the row, read it back cold (a fresh mount whose page cache was
emptied, so every overflow page is rendered from PostgreSQL), delete it. The same
three steps run (a) on a local SQLite file, (b) straight on PostgreSQL (a bytea
column, psycopg), (c) through a pgfs mount (WAL, synchronous=NORMAL). Prints the
times, the ratios pgfs/sqlite and pgfs/pg, and the mount process's peak RSS.

Run: .venv/bin/python scripts/bench_big_rows.py [--sizes 1,10,100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from pgfs.fuse.mount import wait_until_mounted
from pgfs.store.cluster import EmbeddedCluster

MB = 1024 * 1024


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Mount:
    def __init__(self, work: Path, dsn: str) -> None:
        self.point = work / "mnt"
        self.cache = work / "cache"
        self.point.mkdir(exist_ok=True)
        self.dsn = dsn
        self.log = work / "mount.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "pgfs", "mount", str(self.point), "--foreground"]
        argv += ["--dsn", self.dsn, "--cache-dir", str(self.cache)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out)
        try:
            wait_until_mounted(self.point, self.proc)
        except ChildProcessError:
            raise SystemExit(f"the mount failed: {self.log.read_text()[-2000:]}") from None

    def stop(self) -> float:
        """Unmount; the peak RSS of the mount process in MB."""
        assert self.proc is not None
        peak = peak_rss_mb(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return peak

    def restart_cold(self) -> float:
        peak = self.stop()
        shutil.rmtree(self.cache, ignore_errors=True)
        self.start()
        return peak


def sqlite_steps(path: Path, size: int) -> tuple[float, float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=1")
    conn.execute("CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, b BLOB)")
    blob = os.urandom(size)
    write = timed(lambda: conn.execute("INSERT INTO big (id, b) VALUES (1, ?)", (blob,)))
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    read = timed(lambda: conn.execute("SELECT b FROM big WHERE id = 1").fetchone())
    delete = timed(lambda: conn.execute("DELETE FROM big WHERE id = 1"))
    conn.close()
    return write, read, delete


def postgres_steps(dsn: str, size: int) -> tuple[float, float, float]:
    blob = os.urandom(size)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS big (id bigint PRIMARY KEY, b bytea)")
        write = timed(lambda: conn.execute("INSERT INTO big VALUES (1, %s)", (blob,)))
        read = timed(lambda: conn.execute("SELECT b FROM big WHERE id = 1").fetchone())
        delete = timed(lambda: conn.execute("DELETE FROM big WHERE id = 1"))
    return write, read, delete


def pgfs_steps(work: Path, dsn: str, size: int) -> tuple[float, float, float, float]:
    mount = Mount(work, dsn)
    mount.start()
    db = mount.point / "jellyfin.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=1")
    conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)")
    blob = os.urandom(size)
    write = timed(lambda: conn.execute("INSERT INTO big (id, b) VALUES (1, ?)", (blob,)))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    peak = mount.restart_cold()
    conn = sqlite3.connect(db, isolation_level=None)
    read = timed(lambda: conn.execute("SELECT b FROM big WHERE id = 1").fetchone())
    delete = timed(lambda: conn.execute("DELETE FROM big WHERE id = 1"))
    conn.close()
    peak = max(peak, mount.stop())
    return write, read, delete, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100", help="blob sizes in MB")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'blob':>6} {'step':7} {'sqlite':>9} {'postgres':>9} {'pgfs':>9} "
        f"{'pgfs/sqlite':>11} {'pgfs/pg':>8}  mount peak RSS"
    )
    with EmbeddedCluster.temporary() as cluster:
        for size_mb in sizes:
            work = Path(tempfile.mkdtemp(prefix="pgfs-bigrows-"))
            name = f"big_{size_mb}"
            with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
                conn.execute(f'CREATE DATABASE "{name}_pg"')
            native = sqlite_steps(work / "native.db", size_mb * MB)
            direct = postgres_steps(cluster.dsn_for(f"{name}_pg"), size_mb * MB)
            *mine, peak = pgfs_steps(work, cluster.dsn_for(name), size_mb * MB)
            for step, a, b, c in zip(
                ("write", "read", "delete"), native, direct, mine, strict=True
            ):
                print(
                    f"{size_mb:4} MB {step:7} {a * 1000:7.0f}ms {b * 1000:7.0f}ms "
                    f"{c * 1000:7.0f}ms {c / a:10.1f}x {c / b:7.1f}x"
                    + (f"  {peak:.0f} MB" if step == "delete" else ""),
                    flush=True,
                )
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
