"""A pgfs mount and its store, reached only through the CLI and the filesystem.

`CliMount` runs `python -m pgfs mount MOUNTPOINT --foreground --dsn DSN` as its own
process, as a user would; `pgfs_verify` runs `python -m pgfs verify --dsn DSN`.
`FreshDatabases` makes an empty PostgreSQL database per mount on a server the caller
started (the test session's throwaway cluster, or the script's embedded cluster).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
DATABASE_NAME = "jellyfin.db"


def fuse_unavailable_reason() -> str | None:
    """Why no FUSE mount can be made here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed"
    if os.geteuid() != 0 and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "no access to /dev/fuse"
    return None


class MountError(RuntimeError):
    pass


@dataclass
class CliMount:
    """One `pgfs mount` process serving `DATABASE_NAME` from the store at `dsn`."""

    mountpoint: Path
    dsn: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def db(self) -> Path:
        return self.mountpoint / DATABASE_NAME

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pgfs",
            "mount",
            str(self.mountpoint),
            "--foreground",
            "--dsn",
            self.dsn,
        ]

    def start(self, timeout: float = 30.0) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv(), stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MountError(f"pgfs mount exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.ismount(self.mountpoint) and self.db.exists():
                return
            time.sleep(0.02)
        self.stop()
        raise MountError(f"not mounted after {timeout} s:\n{self.log()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (pgfs unmounts cleanly), then kill as a last resort; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
        self.proc = None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a hung system call on the mount then fails instead of waiting forever."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def drop_cached_pages(self) -> None:
        """Make the kernel forget what it cached of the database files, so the next reads
        are served by pgfs (rendered from PostgreSQL) and not by the page cache."""
        for name in (DATABASE_NAME, DATABASE_NAME + "-wal", DATABASE_NAME + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.mountpoint / name, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    def __enter__(self) -> CliMount:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    output: str


def pgfs_verify(dsn: str, timeout: float = 300.0) -> VerifyResult:
    """`pgfs verify`: the store rendered whole passes integrity_check, rows match pages."""
    done = subprocess.run(
        [sys.executable, "-m", "pgfs", "verify", "--dsn", dsn],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    return VerifyResult(done.returncode == 0, (done.stdout + done.stderr).strip())


def pgfs_export(dsn: str, out: Path, timeout: float = 300.0) -> VerifyResult:
    """`pgfs export`: the database as the store holds it, written to `out`."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgfs",
            "export",
            "--force",
            "--no-progress",
            "--dsn",
            dsn,
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    return VerifyResult(done.returncode == 0, (done.stdout + done.stderr).strip())


@dataclass
class FreshDatabases:
    """Empty PostgreSQL databases on one server, dropped after use."""

    admin_dsn: str
    socket_dir: str
    user: str
    port: int = 5432
    prefix: str = f"pgfs_diff_{os.getpid()}"
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        name = f"{self.prefix}_{next(self._numbers)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"host={self.socket_dir} port={self.port} dbname={name} user={self.user}"
        finally:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
