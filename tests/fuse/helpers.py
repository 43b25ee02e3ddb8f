"""Helpers for the FUSE tests: a mount process, SQLite clients, PostgreSQL comparisons."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from pgfs.fuse.mount import is_mounted
from pgfs.fuse.operations import STATUS_NAME
from tests.support.server_view import view_of

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Mount:
    """A pgfs mount served by its own process: `python -m pgfs mount`, the real CLI."""

    path: Path
    dsn: str
    log_path: Path
    names: list[str] = field(default_factory=lambda: ["jellyfin.db"])
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.path / self.names[0]

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "pgfs", "--log-level", "debug", "mount", str(self.path)]
        argv += ["--foreground", "--dsn", self.dsn]
        for name in self.names:
            argv += ["--name", name]
        return [*argv, *self.extra]

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv(), stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mount process exited {self.proc.returncode}:\n{self.log()}")
            if is_mounted(self.path):
                with contextlib.suppress(OSError, ValueError):
                    self.status()
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"not mounted after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; as a last resort kill and detach. Returns the exit status."""
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
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-uz", str(self.path)], check=False)
        self.proc = None
        return proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def status(self) -> dict[str, Any]:
        return json.loads((self.path / STATUS_NAME).read_bytes())

    def db_status(self, name: str | None = None) -> dict[str, Any]:
        return self.status()["databases"][name or self.names[0]]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Client:
    """The same calls over the sqlite3 module and apsw (two SQLite builds)."""

    def __init__(self, path: Path | str, kind: str = "sqlite3") -> None:
        self.kind = kind
        self.path = str(path)
        if kind == "sqlite3":
            self.conn: Any = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        elif kind == "apsw":
            self.conn = apsw.Connection(self.path)
            self.conn.set_busy_timeout(30000)
        else:
            raise ValueError(kind)

    def execute(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple]:
        cursor = self.conn.execute(statement, params)
        return [tuple(row) for row in cursor]

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.kind == "sqlite3":
            self.conn.executemany(statement, rows)
        else:
            self.conn.cursor().executemany(statement, rows)

    def one(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(statement, params)[0][0]

    def script(self, text: str) -> None:
        if self.kind == "sqlite3":
            self.conn.executescript(text)
        else:
            self.conn.execute(text)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pg_rows(
    dsn: str, table: str, columns: Sequence[str], rowid: str, schema: str = "jellyfin"
) -> list[tuple]:
    """(rowid, columns...) of a data-schema table, in rowid order (either backend)."""
    return view_of(dsn).select(table, [rowid, *columns], schema=schema)


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def sqlite_rows(client: Client, table: str, columns: Sequence[str]) -> list[tuple]:
    names = ", ".join(f'"{c}"' for c in columns)
    return [
        tuple(_plain(v) for v in row)
        for row in client.execute(f'SELECT rowid, {names} FROM "{table}" ORDER BY rowid')
    ]


def pg_tables(dsn: str, schema: str = "jellyfin") -> set[str]:
    return view_of(dsn).tables(schema)


def commit_log_count(dsn: str, meta: str = "pgfs") -> int:
    return view_of(dsn).count("commit_log", meta)


def drop_page_cache(path: Path | str) -> None:
    """Ask the kernel to forget its cached pages of `path` (reads then reach pgfs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Worker:
    """A SQLite client in another process (tests/fuse/sqlite_worker.py)."""

    def __init__(self, path: Path | str, kind: str = "sqlite3") -> None:
        script = Path(__file__).with_name("sqlite_worker.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(path), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.pid = self.request_raw()["ready"]

    def request_raw(self, message: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if message is not None:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[list[Any]]:
        reply = self.request_raw({"sql": statement, "params": list(params)})
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply["rows"]

    def try_execute(self, statement: str, params: Sequence[Any] = ()) -> str | None:
        """None on success, else the error message."""
        reply = self.request_raw({"sql": statement, "params": list(params)})
        return reply.get("error")

    def digest(self, table: str) -> tuple[str, int]:
        reply = self.request_raw({"digest": table})
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply["digest"], reply["count"]

    def send(self, message: dict[str, Any]) -> None:
        """Send without waiting for the answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.send({"exit": 0})
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkerError(Exception):
    pass


def table_digest(client: Client, table: str) -> tuple[str, int]:
    """The digest sqlite_worker.py computes, from a client in this process."""
    from .sqlite_worker import digest_rows

    rows = client.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
    return digest_rows(rows), len(rows)


def rowid_tables(client: Client) -> dict[str, tuple[list[str], str]]:
    """table -> (columns, the PostgreSQL rowid column) for every rowid table of the schema."""
    found: dict[str, tuple[list[str], str]] = {}
    for name, text in client.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ):
        if "WITHOUT ROWID" in (text or "").upper():
            continue
        info = client.execute(f'PRAGMA table_info("{name}")')
        columns = [row[1] for row in info]
        keys = [row for row in info if row[5]]
        alias = len(keys) == 1 and keys[0][2].upper() == "INTEGER" and "DESC" not in text.upper()
        found[name] = (columns, keys[0][1] if alias else "_rowid")
    return found


def _normal(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return _plain(value)


def assert_all_tables_same(client: Client, dsn: str, where: str = "") -> int:
    """Every rowid table: PostgreSQL's typed rows equal SQLite's. Returns the row count."""
    total = 0
    for table, (columns, rowid) in rowid_tables(client).items():
        expected = [tuple(_normal(v) for v in row) for row in sqlite_rows(client, table, columns)]
        got = [tuple(_normal(v) for v in row) for row in pg_rows(dsn, table, columns, rowid)]
        assert got == expected, f"{table} differs from SQLite {where}"
        total += len(expected)
    return total
