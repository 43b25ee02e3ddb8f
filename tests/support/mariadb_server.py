"""A throwaway MariaDB server for the tests: `mariadb-install-db` + `mariadbd` in a
temporary directory, on a unix socket and 127.0.0.1 (a free port), with a `pgfs` user
that logs in with a password (so the tests exercise secrets handling).

Like the PostgreSQL cluster of tests/conftest.py, it is started once per session and
torn down at its end; `missing()` names the absent binaries so tests skip with a reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

BINARIES = ("mariadb-install-db", "mariadbd")
SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
USER = "pgfs"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    return None


def missing() -> str | None:
    """Why no MariaDB server can be started here (None when it can)."""
    absent = [name for name in BINARIES if _binary(name) is None]
    if absent:
        names = ", ".join(absent)
        return f"MariaDB server binaries absent ({names}): apt-get install mariadb-server"
    try:
        import mariadb  # noqa: F401
    except ImportError:
        return "the mariadb Python driver is not installed (pip install mariadb)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MariaDBServer:
    """A MariaDB server of its own in `base` (data, socket, log)."""

    base: Path
    port: int = field(default_factory=_free_port)
    password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(12))
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def temporary(cls) -> MariaDBServer:
        base = Path(tempfile.mkdtemp(prefix="pgfs-mariadb-"))
        return cls(base)

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def log_file(self) -> Path:
        return self.base / "mariadb.log"

    def url(self, *, tcp: bool = False, password: str | None = None) -> str:
        """The pgfs store URL of the `pgfs` user: unix socket, or 127.0.0.1 (`tcp`)."""
        secret = quote(self.password if password is None else password, safe="")
        if tcp:
            return f"mariadb://{USER}:{secret}@127.0.0.1:{self.port}/"
        return f"mariadb://{USER}:{secret}@localhost/?unix_socket={quote(str(self.socket))}"

    def _owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        user = pwd.getpwnam("mysql")
        return user.pw_uid, user.pw_gid

    def _run_kwargs(self) -> dict:
        owner = self._owner()
        return {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}

    def start(self) -> None:
        data = self.base / "data"
        owner = self._owner()
        if not data.exists():
            data.mkdir(parents=True)
            if owner:
                os.chown(self.base, *owner)
                os.chown(data, *owner)
            subprocess.run(
                [
                    str(_binary("mariadb-install-db")),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *(["--user=mysql"] if owner else []),
                ],
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                cwd="/",
            )
        argv = [
            str(_binary("mariadbd")),
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadbd.pid'}",
            f"--log-error={self.log_file}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_bin",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-allowed-packet=256M",
            "--skip-name-resolve",
            *(["--user=mysql"] if owner else []),
        ]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}: {self._log_tail()}")
            try:
                self._setup_user()
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not start within 60 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-2000:]
        return ""

    def admin(self):
        """A root connection over the unix socket (autocommit)."""
        import mariadb

        return mariadb.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def _setup_user(self) -> None:
        conn = self.admin()
        try:
            cur = conn.cursor()
            for host in ("localhost", "127.0.0.1"):
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{self.password}'"
                )
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}'")
        finally:
            conn.close()

    def reset(self) -> None:
        """Drop every database the tests made and end the `pgfs` user's sessions."""
        conn = self.admin()
        try:
            cur = conn.cursor()
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (USER,))
            for (pid,) in cur.fetchall():
                with contextlib.suppress(Exception):
                    cur.execute(f"KILL CONNECTION {int(pid)}")
            cur.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN"
                " ('mysql', 'information_schema', 'performance_schema', 'sys')"
            )
            for (name,) in cur.fetchall():
                cur.execute("DROP DATABASE `" + name.replace("`", "``") + "`")
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (keeps the data: `start` again brings it back)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> MariaDBServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
