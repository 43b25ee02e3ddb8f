"""Benchmark: a Jellyfin library of a given size through pgfs, beside native SQLite and
PostgreSQL itself, in one run (issue "pgfs at the size of a real library").

For each size (`--sizes 10,100,1000` MB) a Jellyfin 10.11 library is generated
(tests/support/library.py, from ../shared/jellyfin/schema-10.11.sql), then:

- `pgfs import` and `pgfs export` (MB/s, peak RSS);
- on a fresh mount with an empty local page cache: the cold browse query (count +
  one page of a genre filter ordered by SortName, as the home screen runs it) and a
  cold full read of BaseItems; the browse query again, warm; the cold browse query
  after a restart that keeps the local page cache;
- a library scan (movies added one transaction each), single-row commits (playback
  progress upserts), and the 6-hourly optimize task (wal_checkpoint(TRUNCATE),
  PRAGMA optimize, VACUUM, wal_checkpoint(TRUNCATE));
- the cold browse query again on a fresh mount with an empty local cache, now
  on the file the optimize task left (VACUUM lays each table out in order, as
  Jellyfin's file is after its 6-hourly task);
- a fresh mount with an empty local cache and `--warm-cache`: how fast the
  background warm-up fills it, and the cold browse query once it has;
- the peak RSS of the mount process.

The same steps run on a local copy of the file with SQLite (the OS page cache warm,
as a running Jellyfin has it) and, where they are SQL, straight on PostgreSQL (the
imported tables with SQLite's keys and indexes added, the same statements through
psycopg). Prints one table per size with the ratios pgfs/sqlite and pgfs/pg.

Run from the repository root: .venv/bin/python -m scripts.bench_scale --sizes 10,100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from pgfs.fuse.mount import wait_until_mounted
from pgfs.store.cluster import EmbeddedCluster
from scripts.fuse_floor import measure_floor
from tests.support.library import (
    BROWSE_COUNT,
    BROWSE_PAGE,
    MOVIE,
    Library,
    add_movie,
    build_library,
    play,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "jellyfin" / "schema-10.11.sql"
CACHE = Path(tempfile.gettempdir()) / "pgfs-bench-libraries"
SCAN_ITEMS = 300
PLAYS = 300
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=1", "PRAGMA temp_store=2")


@dataclass
class Row:
    step: str
    pgfs: float
    sqlite: float | None = None
    postgres: float | None = None
    unit: str = "s"
    note: str = ""
    requests: int | None = None
    """FUSE read and write requests the mount served during the pgfs figure."""
    amount: float = 1.0
    """What the pgfs figure divides: operations for s and items/s, MB for MB/s."""

    def at_floor(self, floor: float) -> float | None:
        """The figure if each request cost only `floor` seconds and pgfs nothing."""
        if not self.requests:
            return None
        seconds = self.requests * floor
        return seconds / self.amount if self.unit == "s" else self.amount / seconds


@dataclass
class Report:
    size_mb: float
    file_mb: float = 0.0
    rows: list[Row] = field(default_factory=list)
    rss: dict[str, float] = field(default_factory=dict)
    floor: float = 0.0
    """Seconds per FUSE request of a filesystem that does nothing (scripts/fuse_floor.py)."""

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.step}: {_fmt(row.pgfs, row.unit)}", flush=True)

    def print(self) -> None:
        print(f"\n### {self.file_mb:.0f} MB library\n")
        print(
            "| step | pgfs | native SQLite | PostgreSQL | pgfs/sqlite | pgfs/pg"
            " | FUSE requests | at the floor |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in self.rows:
            print(
                f"| {row.step} | {_fmt(row.pgfs, row.unit)} | {_fmt(row.sqlite, row.unit)} | "
                f"{_fmt(row.postgres, row.unit)} | {_ratio(row.pgfs, row.sqlite, row.unit)} | "
                f"{_ratio(row.pgfs, row.postgres, row.unit)} | "
                f"{'—' if row.requests is None else row.requests} | "
                f"{_fmt(row.at_floor(self.floor), row.unit)} |"
            )
        print("\npeak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in self.rss.items()))
        print(
            f"at the floor: the pgfs figure if each FUSE request cost what it costs a"
            f" filesystem that does nothing ({self.floor * 1e6:.0f} µs, pyfuse3 on trio,"
            " scripts/fuse_floor.py) and pgfs' own work took no time"
        )


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        if value < 0.01:
            return f"{value * 1000:.2f} ms"  # a native commit is a fraction of a ms
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.1f} {unit}"


def _ratio(mine: float, other: float | None, unit: str) -> str:
    if other is None or not other or not mine:
        return "—"
    ratio = mine / other if unit in ("s", "ms") else other / mine  # >1: pgfs is slower
    return f"{ratio:.2f}x"


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# ---------------------------------------------------------------- processes


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a command that must succeed.

    The peak is the child's own VmHWM, read while it runs: wait4's ru_maxrss would
    also count this process's memory, which Linux books to the child when it execs.
    """
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=output, stderr=output, env=env)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, high_water_mb(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            output.seek(0)
            raise SystemExit(f"{' '.join(argv[:4])} failed: {output.read().decode()[-2000:]}")
    return seconds, peak


def high_water_mb(pid: int) -> float:
    """A live process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Mount:
    def __init__(self, work: Path, dsn: str) -> None:
        self.point = work / "mnt"
        self.point.mkdir(exist_ok=True)
        self.cache = work / "cache"
        self.dsn = dsn
        self.log = work / "mount.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0.0
        self.metrics = f"127.0.0.1:{free_port()}"

    @property
    def db(self) -> Path:
        return self.point / "jellyfin.db"

    def start(self, *, empty_cache: bool, warm: bool = False) -> None:
        if empty_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        argv = [sys.executable, "-m", "pgfs", "mount", str(self.point), "--foreground"]
        argv += ["--dsn", self.dsn, "--cache-dir", str(self.cache)]
        argv += ["--metrics-addr", self.metrics]
        argv += ["--warm-cache"] if warm else []
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, cwd=ROOT)
        try:
            wait_until_mounted(self.point, self.proc)
        except ChildProcessError:
            raise SystemExit(f"the mount failed: {self.log.read_text()[-3000:]}") from None

    def wait_warm(self) -> None:
        """Until the local page cache holds every page (`--warm-cache`)."""
        while True:
            status = json.loads((self.point / ".pgfs-status").read_bytes())
            local = status["databases"][self.db.name]["local_cache"]
            if local is not None and local["complete"]:
                return
            time.sleep(0.05)

    def counted(self, work: Callable[[], float]) -> tuple[float, int]:
        """(what `work` measured, the FUSE requests the mount served meanwhile)."""
        before = self.requests()
        figure = work()
        return figure, self.requests() - before

    def requests(self) -> int:
        """Read and write requests the mount has served so far (its metrics)."""
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        found = re.findall(r"^pgfs_fuse_(?:reads|writes)_total (\S+)$", text, re.MULTILINE)
        if len(found) != 2:
            raise SystemExit("the mount's metrics have no FUSE request counters")
        return sum(int(float(value)) for value in found)

    def rss(self) -> float:
        assert self.proc is not None
        return high_water_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.peak_rss = max(self.peak_rss, self.rss())
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(300)
        self.proc = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def drop_kernel_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the steps


@dataclass(frozen=True)
class Browse:
    user: str
    genre: str
    folder: str

    def sqlite(self, conn: sqlite3.Connection) -> None:
        conn.execute(BROWSE_COUNT, (MOVIE, self.genre, self.folder)).fetchone()
        conn.execute(BROWSE_PAGE, (self.user, MOVIE, self.genre, self.folder, 200)).fetchall()

    def postgres(self, conn: psycopg.Connection) -> None:
        conn.execute(BROWSE_COUNT.replace("?", "%s"), (MOVIE, self.genre, self.folder)).fetchone()
        conn.execute(
            BROWSE_PAGE.replace("?", "%s"), (self.user, MOVIE, self.genre, self.folder, 200)
        ).fetchall()


def browse_of(path: Path) -> Browse:
    conn = sqlite3.connect(path)
    library = Library.load(conn)
    conn.close()
    return Browse(library.user_id, "drama", library.folder_id)


def full_read(conn: sqlite3.Connection) -> None:
    for _ in conn.execute('SELECT * FROM "BaseItems"'):
        pass


def scan(conn: sqlite3.Connection, items: int, seed: int) -> float:
    rng = random.Random(seed)
    library = Library.load(conn)
    started = time.perf_counter()
    for _ in range(items):
        conn.execute("BEGIN")
        add_movie(conn, rng, library)
        conn.execute("COMMIT")
    return time.perf_counter() - started


def plays(conn: sqlite3.Connection, count: int, seed: int) -> float:
    rng = random.Random(seed)
    library = Library.load(conn)
    items = [r[0] for r in conn.execute('SELECT "Id" FROM "BaseItems" LIMIT 500')]
    started = time.perf_counter()
    for n in range(count):
        play(conn, rng, library, items[n % len(items)])
    return (time.perf_counter() - started) / count


def optimize(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA optimize")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class PgAdapter:
    """SQLite's sqlite3 calls the steps make, sent straight to PostgreSQL."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, query: str, params: tuple = ()):
        query = query.replace("?", "%s")
        if query in ("BEGIN", "COMMIT"):
            return self.conn.execute(query)
        return self.conn.execute(query, params)


def postgres_direct(cluster: EmbeddedCluster, source: str, target: str, file: Path) -> str:
    """A database holding the imported tables plus SQLite's keys and indexes, for
    the same statements straight on PostgreSQL."""
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(target), sql.Identifier(source)
            )
        )
    dsn = cluster.dsn_for(target)
    lite = sqlite3.connect(file)
    tables = lite.execute("SELECT name, sql FROM sqlite_schema WHERE type='table'").fetchall()
    indexes = lite.execute(
        "SELECT sql FROM sqlite_schema WHERE type='index' AND sql IS NOT NULL"
    ).fetchall()
    lite.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA pgfs CASCADE")
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = jellyfin").format(sql.Identifier(target))
        )
        conn.execute("SET search_path = jellyfin")
        for name, create in tables:
            key = re.search(r"PRIMARY KEY \(([^)]*)\)", create or "")
            inline = re.search(r'"(\w+)" TEXT NOT NULL CONSTRAINT "\w+" PRIMARY KEY', create or "")
            columns = key.group(1) if key else (f'"{inline.group(1)}"' if inline else None)
            if columns and not name.startswith("sqlite_"):
                conn.execute(f'CREATE UNIQUE INDEX ON "{name}" ({columns})')
            hidden = conn.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = 'jellyfin'"
                " AND table_name = %s AND column_name = '_rowid'",
                (name,),
            ).fetchone()
            if hidden:
                conn.execute(f'CREATE SEQUENCE "{name}_rowid_seq" START 100000000')
                conn.execute(
                    f'ALTER TABLE "{name}" ALTER COLUMN _rowid SET DEFAULT'
                    f" nextval('\"{name}_rowid_seq\"')"
                )
        for (create,) in indexes:
            create = re.sub(r"\[(\w+)\]", r'"\1"', create)  # SQLite also quotes with []
            conn.execute(create.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
        conn.execute("ANALYZE")
    return dsn


def measure(size_mb: float, cluster: EmbeddedCluster, work: Path, floor: float) -> Report:
    CACHE.mkdir(exist_ok=True)
    library = CACHE / f"library-{size_mb:g}.db"
    if not library.exists():
        print(f"generating a {size_mb:g} MB library ...", flush=True)
        build_library(library.with_suffix(".tmp"), SCHEMA, megabytes=size_mb)
        library.with_suffix(".tmp").rename(library)
    report = Report(size_mb, library.stat().st_size / 1e6, floor=floor)
    print(f"{report.file_mb:.0f} MB library: {library}", flush=True)
    native = work / "native.db"
    shutil.copyfile(library, native)
    name = f"scale_{int(size_mb)}"
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = cluster.dsn_for(name)
    pgfs = [sys.executable, "-m", "pgfs"]

    seconds, rss = run_measured([*pgfs, "import", str(library), "--dsn", dsn, "--no-progress"])
    report.add(Row("`pgfs import`", report.file_mb / seconds, unit="MB/s"))
    report.rss["import"] = rss
    direct = postgres_direct(cluster, name, f"{name}_direct", library)
    pg = psycopg.connect(direct, autocommit=True)
    browse = browse_of(library)
    lite = connect(native)
    browse.sqlite(lite)  # warm, as a running Jellyfin's file is

    mount = Mount(work, dsn)

    def browse_row(step: str, conn: sqlite3.Connection) -> Row:
        """The browse query through `conn` first (it may be cold), then native and PG."""
        mine, requests = mount.counted(lambda: timed(lambda: browse.sqlite(conn)))
        return Row(
            step,
            mine,
            timed(lambda: browse.sqlite(lite)),
            timed(lambda: browse.postgres(pg)),
            requests=requests,
        )

    mount.start(empty_cache=True)
    conn = connect(mount.db)
    report.add(browse_row("cold browse query, fresh mount, empty local cache", conn))
    conn.close()
    mount.stop()
    mount.start(empty_cache=True)
    conn = connect(mount.db)
    base_mb = (
        lite.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'BaseItems'").fetchone()[0] / 1e6
    )
    read, requests = mount.counted(lambda: timed(lambda: full_read(conn)))
    report.add(
        Row(
            "cold full read of BaseItems",
            base_mb / read,
            base_mb / timed(lambda: full_read(lite)),
            base_mb / timed(lambda: pg.execute('SELECT * FROM "BaseItems"').fetchall()),
            unit="MB/s",
            requests=requests,
            amount=base_mb,
        )
    )
    warm = [mount.counted(lambda: timed(lambda: browse.sqlite(conn))) for _ in range(3)]
    report.add(
        Row(
            "warm browse query",
            min(seconds for seconds, _ in warm),
            min(timed(lambda: browse.sqlite(lite)) for _ in range(3)),
            min(timed(lambda: browse.postgres(pg)) for _ in range(3)),
            requests=min(requests for _, requests in warm),
        )
    )
    conn.close()
    mount.stop()
    mount.start(empty_cache=False)
    drop_kernel_cache(mount.db)
    conn = connect(mount.db)
    seconds, requests = mount.counted(lambda: timed(lambda: browse.sqlite(conn)))
    report.add(
        Row(
            "cold browse query after a restart (local page cache kept)",
            seconds,
            requests=requests,
        )
    )
    seconds, scan_requests = mount.counted(lambda: scan(conn, SCAN_ITEMS, 7))
    per = seconds / SCAN_ITEMS
    native_per = scan(lite, SCAN_ITEMS, 7) / SCAN_ITEMS
    pg_per = scan(PgAdapter(pg), SCAN_ITEMS, 7) / SCAN_ITEMS  # type: ignore[arg-type]
    report.add(
        Row(
            "library scan, one transaction per movie",
            1 / per,
            1 / native_per,
            1 / pg_per,
            unit="items/s",
            requests=scan_requests,
            amount=SCAN_ITEMS,
        )
    )
    per_commit, requests = mount.counted(lambda: plays(conn, PLAYS, 9))
    report.add(
        Row(
            "single-row commit (playback upsert)",
            per_commit,
            plays(lite, PLAYS, 9),
            plays(PgAdapter(pg), PLAYS, 9),  # type: ignore[arg-type]
            requests=requests,
            amount=PLAYS,
        )
    )
    seconds, requests = mount.counted(lambda: timed(lambda: optimize(conn)))
    report.add(
        Row(
            "optimize task (checkpoint, optimize, VACUUM, checkpoint)",
            seconds,
            timed(lambda: optimize(lite)),
            requests=requests,
        )
    )
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    mount.stop()
    mount.start(empty_cache=True)
    conn = connect(mount.db)
    step = "cold browse query, fresh mount, empty local cache, after the optimize task"
    report.add(browse_row(step, conn))
    conn.close()
    mount.stop()
    mount.start(empty_cache=True, warm=True)
    warm_seconds = timed(mount.wait_warm)
    report.add(
        Row(
            "background warm-up of an empty local cache (`--warm-cache`)",
            mount.db.stat().st_size / 1e6 / warm_seconds,
            unit="MB/s",
        )
    )
    conn = connect(mount.db)
    report.add(browse_row("cold browse query after the warm-up (fresh mount)", conn))
    conn.close()
    lite.close()
    pg.close()
    mount.stop()
    report.rss["mount"] = mount.peak_rss
    out = work / "exported.db"
    seconds, rss = run_measured([*pgfs, "export", str(out), "--dsn", dsn, "--no-progress"])
    report.add(Row("`pgfs export`", out.stat().st_size / 1e6 / seconds, unit="MB/s"))
    report.rss["export"] = rss
    report.rows.append(Row(f"integrity_check after the run: {integrity}", 0.0, unit=""))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100", help="library sizes in MB")
    args = parser.parse_args()
    if not SCHEMA.exists():
        raise SystemExit(f"{SCHEMA} is absent: the Jellyfin schema is needed")
    reports = []
    floor = measure_floor()
    print(f"one FUSE request of a filesystem that does nothing: {floor * 1e6:.0f} µs", flush=True)
    with EmbeddedCluster.temporary() as cluster:
        for size in args.sizes.split(","):
            work = Path(tempfile.mkdtemp(prefix="pgfs-scale-"))
            try:
                reports.append(measure(float(size), cluster, work, floor))
            finally:
                subprocess.run(["fusermount3", "-uz", str(work / "mnt")], capture_output=True)
                shutil.rmtree(work, ignore_errors=True)
    for report in reports:
        report.print()


if __name__ == "__main__":
    main()
