"""Kill the mount or the SQLite client mid-workload, over and over; count what was lost.

For each journal mode (WAL, DELETE) and each victim (the `pgfs mount` process, the
SQLite client process), `--rounds` times: a client commits transactions of `BATCH`
rows, each tagged with its transaction number, and appends the number to a file
(fsync'd) only after COMMIT returned; the victim is sent SIGKILL at a random moment;
then the mount is started again (if it was the victim) and checked:

- acknowledged commits lost: numbers in the file whose rows are not all there;
- half-applied: transactions with some but not all of their rows, in SQLite or in
  PostgreSQL;
- SQLite's PRAGMA integrity_check on the mount, and PostgreSQL's rows equal SQLite's.

Prints one line per mode and victim, and a total; exits 1 if anything was lost, half
applied or not ok. Run: .venv/bin/python scripts/crash_matrix.py --rounds 20
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgfs.fuse.mount import is_mounted, wait_until_mounted
from pgfs.store.cluster import EmbeddedCluster

ROOT = Path(__file__).resolve().parent.parent

BATCH = 20
CLIENT = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    db, acked, mode, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("PRAGMA synchronous=1")
    conn.execute("CREATE TABLE IF NOT EXISTS log (txn INTEGER, i INTEGER, payload TEXT)")
    start = conn.execute("SELECT coalesce(max(txn), 0) FROM log").fetchone()[0] + 1
    fd = os.open(acked, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for txn in range(start, start + 100000):
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO log VALUES (?, ?, ?)",
                [(txn, i, "x" * (50 + (txn * 7 + i) % 900)) for i in range(batch)],
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            time.sleep(0.05)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            continue
        os.write(fd, f"{txn}\\n".encode())
        os.fsync(fd)
    """
)


@dataclass
class Tally:
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    half_applied: int = 0
    integrity: Counter[str] = field(default_factory=Counter)
    pg_mismatch: int = 0

    def add(self, other: Tally) -> None:
        self.kills += other.kills
        self.acknowledged += other.acknowledged
        self.lost += other.lost
        self.half_applied += other.half_applied
        self.integrity.update(other.integrity)
        self.pg_mismatch += other.pg_mismatch

    @property
    def clean(self) -> bool:
        return (
            not self.lost
            and not self.half_applied
            and not self.pg_mismatch
            and set(self.integrity) <= {"ok"}
        )


class Mount:
    def __init__(self, point: Path, dsn: str, log: Path) -> None:
        self.point, self.dsn, self.log = point, dsn, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "pgfs", "mount", str(self.point), "--foreground"]
        argv += ["--dsn", self.dsn, "--cache-dir", str(self.point.parent / "cache")]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, cwd=ROOT)
        try:
            wait_until_mounted(self.point, self.proc, timeout=60)
        except (ChildProcessError, TimeoutError):
            raise SystemExit(f"mount did not start: see {self.log}") from None
        time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if is_mounted(self.point):
            subprocess.run(["fusermount3", "-uz", str(self.point)], check=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.kill()


def check(mount: Mount, acked: Path, tally: Tally) -> None:
    conn = sqlite3.connect(mount.point / "jellyfin.db", timeout=30)
    try:
        tally.integrity[str(conn.execute("PRAGMA integrity_check").fetchone()[0])] += 1
        counts = dict(conn.execute("SELECT txn, count(*) FROM log GROUP BY txn").fetchall())
    finally:
        conn.close()
    with psycopg.connect(mount.dsn) as pg:
        pg_counts = dict(
            pg.execute("SELECT txn, count(*) FROM jellyfin.log GROUP BY txn").fetchall()
        )
    numbers = [int(x) for x in acked.read_text().split()] if acked.exists() else []
    tally.acknowledged = len(numbers)
    tally.lost = sum(1 for n in numbers if counts.get(n, 0) != BATCH)
    tally.half_applied = sum(1 for c in counts.values() if c != BATCH) + sum(
        1 for c in pg_counts.values() if c != BATCH
    )
    tally.pg_mismatch = int(counts != pg_counts)


def round_trip(
    cluster: EmbeddedCluster, mode: str, victim: str, number: int, rng: random.Random
) -> Tally:
    name = f"crash_{mode}_{victim}_{number}"
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="pgfs-crash-"))
    (work / "mnt").mkdir()
    mount = Mount(work / "mnt", cluster.dsn_for(name), work / "mount.log")
    acked = work / "acked"
    tally = Tally()
    mount.start()
    try:
        for _ in range(3):  # three kills per database, each on the state the last one left
            client = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLIENT,
                    str(mount.point / "jellyfin.db"),
                    str(acked),
                    mode,
                    str(BATCH),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, 2.0))
            tally.kills += 1
            if victim == "mount":
                mount.kill()
                client.kill()
                client.wait()
                mount.start()
            else:
                client.send_signal(signal.SIGKILL)
                client.wait()
        check(mount, acked, tally)
    finally:
        mount.stop()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="databases per mode and victim")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total = Tally()
    print(
        f"{'mode':6} {'victim':7} {'kills':>6} {'acked':>7} {'lost':>5} {'half':>5} "
        f"{'pg≠sqlite':>9}  integrity"
    )
    with EmbeddedCluster.temporary() as cluster:
        for mode in ("wal", "delete"):
            for victim in ("mount", "client"):
                tally = Tally()
                for number in range(args.rounds):
                    tally.add(round_trip(cluster, mode, victim, number, rng))
                total.add(tally)
                print(
                    f"{mode:6} {victim:7} {tally.kills:6} {tally.acknowledged:7} {tally.lost:5} "
                    f"{tally.half_applied:5} {tally.pg_mismatch:9}  {dict(tally.integrity)}",
                    flush=True,
                )
    print(
        f"total: {total.kills} kills, {total.acknowledged} acknowledged commits, "
        f"{total.lost} lost, {total.half_applied} half-applied, integrity "
        f"{dict(total.integrity)}, PostgreSQL != SQLite {total.pg_mismatch}"
    )
    sys.exit(0 if total.clean else 1)


if __name__ == "__main__":
    os.environ.setdefault("PGFS_LOG_LEVEL", "INFO")
    main()
