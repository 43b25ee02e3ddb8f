"""The DSN's password never shows: not in argv, the process title, logs, status or metrics.
--dsn-file keeps it off the command line; a password given as --dsn is warned about once."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from pgfs.fuse.control import read_status
from pgfs.fuse.mount import is_mounted
from pgfs.fuse.operations import STATUS_NAME

SECRET = "S3cret-pgfs-never-shown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_password_from_the_environment_never_shows(pg_dsn: str, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    log_path = tmp_path / "mount.log"
    port = _free_port()
    pgfs = Path(sys.executable).with_name("pgfs")
    argv = [str(pgfs), "--log-level", "debug", "mount", str(mountpoint), "--foreground"]
    argv += ["--metrics-addr", f"127.0.0.1:{port}"]
    # The test server trusts local connections, so the password is accepted and ignored.
    env = {"PATH": "/usr/bin:/bin", "PGFS_DSN": f"{pg_dsn} password={SECRET}"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        conn = sqlite3.connect(mountpoint / "jellyfin.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t(v) VALUES ('one')")
        conn.close()

        seen = {
            "argv": Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"),
            "process title": Path(f"/proc/{proc.pid}/comm").read_text(),
            "status file": (mountpoint / STATUS_NAME).read_text(),
        }
        for path in ("/metrics", "/healthz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                seen[path] = answer.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    seen["log"] = log_path.read_text()
    assert "commit via" in seen["log"]  # the log did say what happened
    for where, text in seen.items():
        assert SECRET not in text, f"the password shows in the {where}"
    with psycopg.connect(pg_dsn) as check:
        assert check.execute("SELECT v FROM jellyfin.t").fetchall() == [("one",)]


@pytest.mark.parametrize("option", ["--dsn-file", "--dsn"])
def test_a_daemon_never_carries_the_password_in_its_argv(
    option: str, pg_dsn: str, tmp_path: Path
) -> None:
    dsn = f"{pg_dsn} password={SECRET}"  # the test server trusts local connections
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    point, log_path = tmp_path / "mnt", tmp_path / "daemon.log"
    point.mkdir()
    argv = [str(Path(sys.executable).with_name("pgfs")), "mount", str(point), "--daemon"]
    argv += [option, str(dsn_file) if option == "--dsn-file" else dsn]
    started = subprocess.run(
        [*argv, "--log-file", str(log_path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    try:
        daemon_argv = Path(f"/proc/{read_status(point)['pid']}/cmdline").read_bytes()
        conn = sqlite3.connect(point / "jellyfin.db", isolation_level=None)
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t(v) VALUES ('by file')")
        conn.close()
    finally:
        subprocess.run(["fusermount3", "-u", str(point)], check=False)
    said = started.stdout + started.stderr + log_path.read_text()
    assert SECRET.encode() not in daemon_argv
    assert SECRET not in said
    warnings = said.count("--dsn carries a password")
    assert warnings == (1 if option == "--dsn" else 0), said
    with psycopg.connect(pg_dsn) as check:
        assert check.execute("SELECT v FROM jellyfin.t").fetchall() == [("by file",)]
