"""The chart's pgfs sidecar, run for real: its rendered command line, environment and
probes, against a real PostgreSQL and a real FUSE mount, with a SQLite client that
behaves as Jellyfin does (WAL, synchronous=NORMAL) beside ordinary files.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgfs.fuse.mount import is_mounted

from .chart import SidecarCommand, localize, render_chart, run_probe, sidecar_command

SECRET = "jellyfin-pgfs-dsn"


def _fuse_problem() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed"
    if os.geteuid() != 0:
        return "the sidecar mounts with --allow-other, which needs root here"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sidecar(tmp_path: Path, dsn: str) -> tuple[SidecarCommand, Path, Path]:
    """The sidecar of the default chart (DSN from an existing Secret), made local."""
    port = _free_port()
    manifests = render_chart(
        [],
        {
            "postgresql.existingSecret": SECRET,
            "postgresql.sslmode": "disable",
            "pgfs.metrics.port": port,
            "pgfs.metrics.bindAddress": "127.0.0.1",
            "pgfs.logLevel": "DEBUG",
        },
    )
    config, mnt, secret = tmp_path / "config", tmp_path / "mnt", tmp_path / "secret"
    for folder in (config / "data", mnt, secret):
        folder.mkdir(parents=True)
    # The Secret volume: one file, key `dsn`, mode 0400 as the chart mounts it.
    (secret / "dsn").write_text(dsn + "\n")
    (secret / "dsn").chmod(0o400)
    command = localize(
        sidecar_command(manifests),
        paths={"/config": str(config), "/mnt/pgfs": str(mnt), "/etc/pgfs/dsn": str(secret)},
    )
    return command, mnt, config / "data"


class Sidecar:
    def __init__(self, command: SidecarCommand, mountpoint: Path, log: Path) -> None:
        self.command, self.mountpoint, self.log_path = command, mountpoint, log
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGFS_"))}
        self.env = {**env, **{k: str(v) for k, v in command.env.items()}}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                command.argv, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )

    def probe(self, kind: str) -> bool:
        return run_probe(self.command.probes[kind], env=self.command.env)

    def wait_started(self, timeout: float = 30.0) -> None:
        """The kubelet's startup probe, every period, until it passes."""
        probe = self.command.probes["startupProbe"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"sidecar exited:\n{self.log()}"
            if run_probe(probe, env=self.command.env):
                return
            time.sleep(0.1)
        raise AssertionError(f"startup probe never passed:\n{self.log()}")

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def sidecars() -> Iterator[list[Sidecar]]:
    problem = _fuse_problem()
    if problem:
        pytest.skip(problem)
    started: list[Sidecar] = []
    yield started
    for sidecar in started:
        sidecar.cleanup()


def _jellyfin(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.execute("PRAGMA synchronous=1")
    return conn


def _answers(conn: sqlite3.Connection) -> list[tuple]:
    return [
        *conn.execute("SELECT Id, Name, length(Data) FROM Items ORDER BY Id"),
        *conn.execute("SELECT Key, Value FROM Settings ORDER BY Key"),
        *conn.execute("PRAGMA integrity_check"),
    ]


def test_sidecar_from_the_chart_serves_jellyfin(
    tmp_path: Path, pg_dsn: str, sidecars: list[Sidecar]
) -> None:
    command, mnt, backing = _sidecar(tmp_path, pg_dsn)
    assert "--allow-other" in command.argv and "--backing-dir" in command.argv
    assert "PGFS_DSN_FILE" in command.env and "PGFS_DSN" not in command.env
    sidecar = Sidecar(command, mnt, tmp_path / "sidecar.log")
    sidecars.append(sidecar)
    sidecar.wait_started()
    assert sidecar.probe("readinessProbe") and sidecar.probe("livenessProbe")

    conn = _jellyfin(mnt / "jellyfin.db")
    conn.execute("CREATE TABLE Items (Id INTEGER PRIMARY KEY, Name TEXT, Data BLOB)")
    conn.execute("CREATE TABLE Settings (Key TEXT PRIMARY KEY, Value TEXT)")
    conn.execute("CREATE INDEX ItemsByName ON Items (Name)")
    for batch in range(5):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO Items (Name, Data) VALUES (?, ?)",
            [(f"item {batch}-{i}", os.urandom(50 + 40 * i)) for i in range(40)],
        )
        conn.execute("COMMIT")
    conn.execute("INSERT INTO Settings VALUES ('theme', 'dark'), ('lang', 'en')")
    conn.execute("UPDATE Items SET Name = Name || ' (seen)' WHERE Id % 7 = 0")
    conn.execute("DELETE FROM Items WHERE Id % 11 = 0")
    # Ordinary files Jellyfin keeps beside its database land in the backing folder.
    (mnt / "collections").mkdir()
    (mnt / "collections" / "box.xml").write_text("<collection/>")
    (mnt / "backup.tmp").write_bytes(b"x" * 10000)
    os.rename(mnt / "backup.tmp", mnt / "backup.bak")
    assert sidecar.probe("readinessProbe") and sidecar.probe("livenessProbe")
    expected = _answers(conn)
    assert expected[-1] == ("ok",)
    conn.close()

    assert sidecar.terminate() == 0, sidecar.log()
    assert not is_mounted(mnt)
    assert (backing / "collections" / "box.xml").read_text() == "<collection/>"
    assert (backing / "backup.bak").stat().st_size == 10000
    assert not (backing / "jellyfin.db").exists()
    with psycopg.connect(pg_dsn) as pg:
        items = pg.execute('SELECT "Id", "Name" FROM jellyfin."Items" ORDER BY 1').fetchall()
        settings = pg.execute('SELECT count(*) FROM jellyfin."Settings"').fetchone()
    assert [(i, n) for i, n, _ in expected[: len(items)]] == items
    assert len(items) == 200 - 200 // 11 and settings == (2,)

    # Remount from the same command line: the same answers, from PostgreSQL alone.
    again = Sidecar(command, mnt, tmp_path / "sidecar2.log")
    sidecars.append(again)
    again.wait_started()
    conn = _jellyfin(mnt / "jellyfin.db")
    assert _answers(conn) == expected
    conn.close()
    assert again.terminate() == 0, again.log()
    assert not is_mounted(mnt)
