"""The README's main job: mount, run a short workload through SQLite, show PostgreSQL.

Without PGFS_DSN the mount starts an embedded PostgreSQL in its default place,
.pgfs/postgres (or, as root when the postgres user cannot enter this clone,
/var/lib/pgfs/...; the mount's log says where). The cluster is kept between
runs, so a second run shows the first run's rows too.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from pgfs.fuse.control import read_status
from pgfs.fuse.mount import wait_until_mounted
from pgfs.store.dsn import resolve_dsn

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".pgfs"
MOUNTPOINT = WORK / "mnt"


def wait_for_mount(process: subprocess.Popen, timeout: float = 60.0) -> None:
    try:
        wait_until_mounted(MOUNTPOINT, process, timeout)
    except ChildProcessError:
        sys.exit(f"demo: pgfs mount exited with status {process.returncode}")
    except TimeoutError:
        sys.exit("demo: the mount did not come up within a minute")


def workload(db_path: Path) -> None:
    """A small Jellyfin-like session: WAL, synchronous=NORMAL, items and user data."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=1")
    conn.execute(
        'CREATE TABLE IF NOT EXISTS "BaseItems" ("Id" TEXT NOT NULL PRIMARY KEY, '
        '"Name" TEXT, "Type" TEXT NOT NULL, "ProductionYear" INTEGER, "Data" TEXT)'
    )
    conn.execute(
        'CREATE TABLE IF NOT EXISTS "UserData" ("ItemId" TEXT NOT NULL, "UserId" TEXT NOT NULL,'
        ' "PlayCount" INTEGER NOT NULL, "PlaybackPositionTicks" INTEGER NOT NULL,'
        ' PRIMARY KEY ("ItemId", "UserId"))'
    )
    user = str(uuid.uuid4()).upper()
    titles = [("Metropolis", 1927), ("Nosferatu", 1922), ("Sunrise", 1927), ("The General", 1926)]
    for title, year in titles:
        item = str(uuid.uuid4()).upper()
        conn.execute("BEGIN")
        conn.execute(
            'INSERT INTO "BaseItems" VALUES (?, ?, ?, ?, ?)',
            (
                item,
                title,
                "MediaBrowser.Controller.Entities.Movies.Movie",
                year,
                '{"Overview": "' + "A silent film. " * 200 + '"}',
            ),
        )
        conn.execute('INSERT INTO "UserData" VALUES (?, ?, 1, 0)', (item, user))
        conn.execute("COMMIT")
        print(f"  committed through SQLite: {title} ({year})")
    conn.execute(
        'UPDATE "UserData" SET "PlaybackPositionTicks" = 36000000000 WHERE "UserId" = ?', (user,)
    )
    count = conn.execute('SELECT count(*) FROM "BaseItems"').fetchone()[0]
    print(
        f"  SQLite sees {count} items; integrity_check:",
        conn.execute("PRAGMA integrity_check").fetchone()[0],
    )
    conn.close()


def show_postgres(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            'SELECT "Name", "ProductionYear", length("Data") FROM jellyfin."BaseItems"'
            ' ORDER BY "ProductionYear", "Name"'
        ).fetchall()
        print('  PostgreSQL jellyfin."BaseItems":')
        for name, year, size in rows:
            print(f"    {name:<12} {year}  Data: {size} characters")
        last = conn.execute("SELECT count(*), max(committed_at) FROM pgfs.commit_log").fetchone()
        print(f"  pgfs.commit_log: {last[0]} commits applied, the last at {last[1]}")


def store_dsn() -> str:
    """The mount's DSN: the configured one, else its embedded cluster's (which carries no
    password, so the mount's status shows it whole)."""
    status = read_status(MOUNTPOINT)
    return status["store"] if status.get("embedded_cluster") else resolve_dsn(None)


def main() -> None:
    MOUNTPOINT.mkdir(parents=True, exist_ok=True)
    argv = [str(ROOT / ".venv/bin/pgfs"), "mount", str(MOUNTPOINT), "--foreground"]
    print(f"demo: {' '.join(argv[1:])}")
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_for_mount(process)
        print(f"demo: mounted; running a Jellyfin-style workload on {MOUNTPOINT}/jellyfin.db")
        workload(MOUNTPOINT / "jellyfin.db")
        show_postgres(store_dsn())
    finally:
        subprocess.run([str(ROOT / ".venv/bin/pgfs"), "unmount", str(MOUNTPOINT)], check=False)
        process.wait(timeout=60)
    print("demo: unmounted; run it again to see the rows survive a remount")


if __name__ == "__main__":
    main()
