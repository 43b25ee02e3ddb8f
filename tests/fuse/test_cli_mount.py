"""`pgfs mount --daemon`, `pgfs status`, `pgfs unmount`, the embedded PostgreSQL, and
SIGTERM while a commit is in flight."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from pgfs.fuse.control import pid_alive
from pgfs.fuse.mount import is_mounted

from .helpers import REPO, Client, Mount, Worker

PGFS = [sys.executable, "-c", "from pgfs.cli import main; main()"]


def pgfs(*args: str, env: dict[str, str] | None = None, check: bool = True):
    done = subprocess.run(
        [*PGFS, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"pgfs {' '.join(args)} failed: {done.stderr}")
    return done


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return env


def test_daemon_status_and_unmount(tmp_path: Path, pg_dsn: str) -> None:
    point = tmp_path / "mnt"
    point.mkdir()
    log_file = tmp_path / "pgfs.log"
    out = pgfs("mount", str(point), "--daemon", "--dsn", pg_dsn, "--log-file", str(log_file))
    try:
        assert "mounted on" in out.stdout
        assert is_mounted(point)
        with Client(point / "jellyfin.db") as client:
            client.execute("PRAGMA journal_mode=WAL")
            client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            client.execute("INSERT INTO t(v) VALUES ('x')")
            text = pgfs("status", str(point)).stdout
            assert "jellyfin.db: wal" in text and "commits applied" in text
            status = json.loads(pgfs("status", str(point), "--json").stdout)
            assert status["databases"]["jellyfin.db"]["commits"] >= 3
            # A file open in the mount keeps a plain unmount from happening.
            busy = pgfs("unmount", str(point), check=False)
            assert busy.returncode == 1 and "busy" in busy.stderr
        pgfs("unmount", str(point))
        assert not is_mounted(point)
        assert "commit via wal: t +1" in log_file.read_text()
        gone = pgfs("status", str(point), check=False)
        assert gone.returncode == 1 and "not mounted" in gone.stderr
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT v FROM jellyfin.t").fetchall() == [("x",)]
    finally:
        if is_mounted(point):
            subprocess.run(["fusermount3", "-uz", str(point)], check=False)


def test_embedded_postgres_without_a_dsn(tmp_path: Path, open_dir: Path) -> None:
    point = tmp_path / "mnt"
    point.mkdir()
    data_dir = open_dir / "data"  # not under tmp_path: the postgres user cannot enter it
    env = _clean_env()
    args = ["mount", str(point), "--daemon", "--data-dir", str(data_dir)]
    pgfs(*args, "--log-file", str(tmp_path / "log"), env=env)
    try:
        with Client(point / "jellyfin.db") as client:
            client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            client.execute("INSERT INTO t(v) VALUES ('embedded')")
        status = json.loads(pgfs("status", str(point), "--json").stdout)
        assert status["embedded_cluster"] == str(data_dir)
        pid = status["pid"]
        # A file open in the mount: --lazy still unmounts, after the daemon has finished.
        handle = open(point / "jellyfin.db", "rb")  # noqa: SIM115
        pgfs("unmount", str(point), "--lazy")
        with contextlib.suppress(OSError):  # the server is gone: ENOTCONN
            handle.close()
        assert not is_mounted(point)
        assert not pid_alive(pid)  # exited (perhaps not yet reaped by its new parent)
        assert not (data_dir / "postmaster.pid").exists(), "PostgreSQL still running"
        # The data survives: mount again, same answer.
        pgfs(*args, "--log-file", str(tmp_path / "log"), env=env)
        with Client(point / "jellyfin.db") as client:
            assert client.execute("SELECT v FROM t") == [("embedded",)]
        pgfs("unmount", str(point))
    finally:
        if is_mounted(point):
            subprocess.run(["fusermount3", "-uz", str(point)], check=False)
        from pgfs.store.cluster import EmbeddedCluster

        EmbeddedCluster(data_dir=data_dir).stop("immediate")


def _private_dir(folder: Path) -> tuple[Path, str]:
    folder.chmod(0o700)
    return folder / "pg", f"cannot enter {folder} (mode 0700, owner root)"


def _not_a_cluster(folder: Path) -> tuple[Path, str]:
    (folder / "pg").mkdir()
    (folder / "pg" / "notes.txt").write_text("mine\n")
    return folder / "pg", "is neither empty nor a PostgreSQL cluster"


@pytest.mark.parametrize("case", [_private_dir, _not_a_cluster], ids=["private", "not-a-cluster"])
def test_a_data_dir_pgfs_cannot_use_is_refused_before_anything_starts(
    tmp_path: Path, open_dir: Path, case
) -> None:
    if os.geteuid() != 0 and case is _private_dir:
        pytest.skip("the server runs as another user only as root")
    point = tmp_path / "mnt"
    point.mkdir()
    data_dir, reason = case(open_dir)
    before = sorted(open_dir.rglob("*"))
    done = pgfs("mount", str(point), "--data-dir", str(data_dir), env=_clean_env(), check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"pgfs: error: {data_dir}")
    assert reason in done.stderr.splitlines()[-1]
    assert not is_mounted(point)
    assert sorted(open_dir.rglob("*")) == before  # no initdb, no socket folder, no log


@pytest.mark.parametrize("signals", [1, 2], ids=["one-sigterm", "second-sigterm-in-grace"])
def test_sigterm_finishes_the_commit_in_flight(mount: Mount, pg_dsn: str, signals: int) -> None:
    with Client(mount.db) as client:
        client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
    rows = 20000
    with Worker(mount.db) as worker:
        worker.send(
            {
                "sql": "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                "WHERE n < ?) INSERT INTO t(v, b) SELECT 'row ' || n, zeroblob(n % 500) FROM s",
                "params": [rows],
            }
        )
        deadline = time.monotonic() + 30
        while mount.db_status()["commits_in_flight"] == 0:
            assert time.monotonic() < deadline, "the commit never started"
            time.sleep(0.002)
        assert mount.proc is not None
        for _ in range(signals - 1):  # an impatient operator: more SIGTERMs in the grace period
            mount.proc.send_signal(signal.SIGTERM)
        assert mount.stop() == 0
        assert not is_mounted(mount.path)
        worker.kill()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jellyfin.t").fetchone() == (rows,)
    assert "commit via journal (journal deleted): t +20000" in mount.log()


def test_sigint_twice_still_unmounts_cleanly(mount: Mount) -> None:
    with Client(mount.db) as client:
        client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    assert mount.proc is not None
    mount.proc.send_signal(signal.SIGINT)
    mount.proc.send_signal(signal.SIGINT)
    assert mount.proc.wait(30) == 0
    assert not is_mounted(mount.path)
    assert "Traceback" not in mount.log()
