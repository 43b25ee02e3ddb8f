#!/usr/bin/env python3
"""Benchmark `pgfs import` and `pgfs export` against an embedded PostgreSQL.

Generates Jellyfin-like databases (the 10.11 schema from ../shared/jellyfin,
rows as in tests/support/dbgen.py: GUID keys, Jellyfin dates, large JSON
`BaseItems.Data`) of about 25 MB and 100 MB, then for each size, in a fresh
child process (so that peak RSS is that run's own):

- imports it into an empty store and exports it back (MB/s, rows/s);
- checks the export with `PRAGMA integrity_check`;
- reports peak memory: the process's max RSS (getrusage) and the peak of
  Python allocations during import and export (tracemalloc, second run).

Peak memory must not grow with the database size: the import streams parts
of a few MB through one transaction, the export renders a bounded batch.

    .venv/bin/python scripts/bench_import.py [--sizes 25,100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCHEMA = ROOT.parent / "shared" / "jellyfin" / "schema-10.11.sql"
MB = 1_000_000
ITEMS_PER_MB = 55  # ~18 MB per 1000 items with dbgen's defaults


def generate(path: Path, megabytes: int) -> None:
    from tests.support.dbgen import build_jellyfin

    if path.exists():
        return
    started = time.perf_counter()
    build_jellyfin(path, SCHEMA, items=megabytes * ITEMS_PER_MB, seed=megabytes)
    print(
        f"generated {path.name}: {path.stat().st_size / MB:.1f} MB in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )


def count_rows(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 0"
            )
        ]
        return sum(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names)
    finally:
        conn.close()


def run_once(database: Path, traced: bool) -> dict:
    """Import and export `database` on a fresh embedded cluster (in this process)."""
    from pgfs.emulator.exporter import export_file
    from pgfs.emulator.importer import import_file
    from pgfs.store.cluster import EmbeddedCluster
    from pgfs.store.postgres import PostgresStore as Store

    result: dict = {"bytes": database.stat().st_size}
    with EmbeddedCluster.temporary() as cluster, Store.connect(cluster.dsn) as store:
        out = Path(tempfile.mkdtemp(prefix="pgfs-bench-")) / "exported.db"
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        report = import_file(store, database, progress=False)
        result["import_s"] = time.perf_counter() - started
        if traced:
            result["import_peak_mb"] = tracemalloc.get_traced_memory()[1] / MB
            tracemalloc.reset_peak()
        result["rows"] = report.total_rows
        result["rss_after_import_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        export_file(store, out, progress=False)
        result["export_s"] = time.perf_counter() - started
        if traced:
            result["export_peak_mb"] = tracemalloc.get_traced_memory()[1] / MB
            tracemalloc.stop()
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn = sqlite3.connect(out)
        result["integrity"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        out.unlink()
        out.parent.rmdir()
    return result


def child(database: Path, traced: bool) -> dict:
    """run_once in a fresh interpreter, so ru_maxrss is this run's alone."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(database)] + (["--traced"] if traced else []),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,100", help="database sizes in MB")
    parser.add_argument("--keep", type=Path, help="folder for the generated databases")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.child, args.traced)))
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pgfs-bench-db-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        database = folder / f"jellyfin-{size}mb.db"
        generate(database, size)
        timed = child(database, traced=False)
        traced = child(database, traced=True)
        megabytes = timed["bytes"] / MB
        rows.append(
            f"{megabytes:7.1f} MB {timed['rows']:>8} rows | "
            f"import {megabytes / timed['import_s']:5.1f} MB/s "
            f"{timed['rows'] / timed['import_s']:>7.0f} rows/s | "
            f"export {megabytes / timed['export_s']:5.1f} MB/s "
            f"{timed['rows'] / timed['export_s']:>7.0f} rows/s | "
            f"peak RSS {timed['rss_mb']:5.0f} MB | "
            f"peak Python heap import {traced['import_peak_mb']:5.1f} MB "
            f"export {traced['export_peak_mb']:5.1f} MB | "
            f"integrity_check {timed['integrity']}"
        )
        print(rows[-1], flush=True)
    if not args.keep:
        for path in folder.glob("*"):
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
