"""`pgfs mount --uid/--gid/--mode` and `--allow-other`, seen through the kernel by real
processes: os.stat of the served files, and a directory listing by an unprivileged user."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Mount

OPTIONS = ["--uid", "1000", "--gid", "1000", "--mode", "0640"]
LIST_AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/ls"]
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def _owner(path: Path) -> tuple[int, int, int]:
    info = os.stat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.fixture
def start(open_dir: Path) -> Iterator:
    mounts: list[Mount] = []

    def make(dsn: str, extra: list[str]) -> Mount:
        point = open_dir / f"mnt{len(mounts)}"
        point.mkdir()
        mount = Mount(path=point, dsn=dsn, log_path=open_dir / f"{point.name}.log", extra=extra)
        mounts.append(mount)
        mount.start()
        return mount

    yield make
    for mount in mounts:
        mount.stop()


@pytest.mark.parametrize("journal_mode", ["WAL", "DELETE"])
def test_uid_gid_mode_on_the_database_and_its_side_files(
    start, pg_dsn: str, journal_mode: str
) -> None:
    mount = start(pg_dsn, OPTIONS)
    assert _owner(mount.db) == (1000, 1000, 0o640)

    conn = sqlite3.connect(mount.db, isolation_level=None)
    try:
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        if journal_mode == "WAL":
            conn.execute("INSERT INTO t(v) VALUES ('one')")
            # SQLite creates -wal and -shm with the database file's mode and, running as
            # root, chowns them to the database file's owner (unix_open: robust_fchown);
            # pgfs keeps what it is told (create, then setattr).
            for suffix in ("-wal", "-shm"):
                side = mount.path / (mount.db.name + suffix)
                assert _owner(side) == (1000, 1000, 0o640), suffix
        else:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t(v) VALUES ('one')")
            # Inside a write transaction that changed a page the rollback journal exists.
            journal = mount.path / (mount.db.name + "-journal")
            assert _owner(journal) == (1000, 1000, 0o640)
            conn.execute("COMMIT")
    finally:
        conn.close()
    assert _owner(mount.db) == (1000, 1000, 0o640)


def test_allow_other_lets_another_user_list_the_mount(start, pg_dsn: str) -> None:
    private = start(pg_dsn, OPTIONS)
    other_store = ["--meta-schema", "pgfs_shared", "--data-schema", "shared"]
    shared = start(pg_dsn, [*OPTIONS, "--allow-other", *other_store])
    denied = subprocess.run(
        [*LIST_AS_NOBODY, str(private.path)], capture_output=True, text=True, timeout=10, env=ENV
    )
    allowed = subprocess.run(
        [*LIST_AS_NOBODY, str(shared.path)], capture_output=True, text=True, timeout=10, env=ENV
    )
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr
    assert allowed.returncode == 0, allowed.stderr
    assert "jellyfin.db" in allowed.stdout.split()
