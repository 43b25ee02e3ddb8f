"""Run one program on a local file and through a pgfs mount, side by side, and compare.

After every statement: its rows (with storage classes) or its error, and whether the
connection is left in a transaction. After every statement that may have changed the
database while neither connection holds a transaction open (so after every
transaction): the state a new connection reads (`fingerprint.py`: schema, every
table's content with storage classes, integrity_check, page and freelist counts),
the mount's side read with the kernel's cached pages dropped so pgfs renders them
from PostgreSQL. Every `verify_every` such transactions and at the end: `pgfs
verify` on the store, and the store exported and compared with the local file.
At the end, after both connections closed: once more, and again after an
unmount and a fresh mount.

The local file is the oracle: the first difference ends the run.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol, TypeVar

from .clients import Connection, Outcome
from .fingerprint import Fingerprint, fingerprint
from .mount import (
    DATABASE_NAME,
    CliMount,
    FreshDatabases,
    MountError,
    VerifyResult,
    pgfs_export,
    pgfs_verify,
)
from .program import ClientKind, Conn, JournalMode, Program, Step
from .schema import Schema, read_schema

R = TypeVar("R")
INTEGRITY_PREFIX = "integrity_check: "  # how `pgfs verify` prints integrity_check's lines


class DifferenceKind(Enum):
    OUTCOME = "statement outcome"
    STATE = "database state"
    INTEGRITY = "integrity_check"
    VERIFY = "pgfs verify"
    SERVER = "what the store holds"
    REMOUNT = "state after a remount"
    MOUNT = "mount process"


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    detail: str

    def describe(self) -> str:
        return f"{self.kind.value}: {self.detail}"

    @property
    def signature(self) -> str:
        """What a smaller program must still show to count as the same difference: the
        kind, and for a statement the mount's error (or that rows differ), for verify
        its first line without numbers."""
        if self.kind is DifferenceKind.OUTCOME:
            mount = self.detail.rpartition("\n  mount: ")[2]
            return f"{self.kind.value}: {mount.split(' (')[0] if 'error' in mount else 'rows'}"
        if self.kind is DifferenceKind.VERIFY:
            first = self.detail.strip().splitlines()[0] if self.detail.strip() else ""
            return f"{self.kind.value}: {''.join(c for c in first if not c.isdigit())}"
        return self.kind.value


@dataclass(frozen=True)
class CheckPlan:
    verify_every: int = 10  # transactions between two `pgfs verify` runs; 0: only at the end
    remount: bool = True
    step_timeout: float = 120.0  # a statement on the mount that takes longer is a hang


@dataclass
class RunResult:
    program: Program  # the statements run, up to the one that showed a difference
    difference: Difference | None = None
    statements: int = 0
    transactions: int = 0
    verifies: int = 0
    mount_log: str = ""


class StepSource(Protocol):
    def next_steps(self, schema: Schema, open_conns: frozenset[Conn]) -> list[Step] | None:
        """The next steps for the database as it is now; None when the program is over."""
        ...


@dataclass
class ReplaySource:
    steps: tuple[Step, ...]
    _position: int = 0

    def next_steps(self, schema: Schema, open_conns: frozenset[Conn]) -> list[Step] | None:
        if self._position >= len(self.steps):
            return None
        self._position += 1
        return [self.steps[self._position - 1]]


class Side:
    """One database file (local or on the mount) and the program's two connections."""

    def __init__(self, path: Path, kind: ClientKind) -> None:
        self.path = path
        self.kind = kind
        self.conns = {conn: Connection(kind, path) for conn in Conn}

    def run(self, step: Step) -> Outcome:
        return self.conns[step.conn].run(step.sql)

    @property
    def open_conns(self) -> frozenset[Conn]:
        return frozenset(c for c, conn in self.conns.items() if conn.in_transaction)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        """A new connection of this side's client, closed after use."""
        conn = Connection(self.kind, self.path)
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> str | None:
        """Close both connections (the last one checkpoints a WAL); an error, or None."""
        errors = []
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return "; ".join(errors) or None


def system_sqlite_integrity(path: Path) -> list[str]:
    """PRAGMA integrity_check of `path` by Python's sqlite3, in a process of its own.

    Not in this one: POSIX locks belong to a process, so a second SQLite library
    (apsw's) closing its descriptor of the file would drop the first one's locks,
    believe it is the last connection, checkpoint and delete the WAL under it."""
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "print('\\n'.join(str(r[0]) for r in conn.execute('PRAGMA integrity_check')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


class DifferenceFound(Exception):
    def __init__(self, difference: Difference) -> None:
        super().__init__(difference.describe())
        self.difference = difference


@dataclass
class DifferentialRun:
    """One program (setup + steps from a source) on a fresh local file and a fresh mount."""

    mode: JournalMode
    client: ClientKind
    setup: tuple[Step, ...]
    databases: FreshDatabases
    workdir: Path
    plan: CheckPlan = field(default_factory=CheckPlan)
    seed: int | None = None

    def run(self, source: StepSource) -> RunResult:
        local_dir = self.workdir / "local"
        shutil.rmtree(local_dir, ignore_errors=True)
        local_dir.mkdir(parents=True)
        executed: list[Step] = []
        result = RunResult(self._program(executed))
        with self.databases.fresh() as dsn:
            mount = CliMount(self.workdir / "mnt", dsn, self.workdir / "mount.log")
            self._reset_log(mount)
            try:
                mount.start()
                state = _RunState(self, Side(local_dir / DATABASE_NAME, self.client), mount, dsn)
                try:
                    state.run_all(source, executed, result)
                finally:
                    state.close_quietly()
            except DifferenceFound as found:
                result.difference = found.difference
            except MountError as exc:
                result.difference = Difference(DifferenceKind.MOUNT, str(exc))
            finally:
                mount.stop()
                result.mount_log = mount.log()
        result.program = self._program(executed)
        return result

    def _program(self, executed: list[Step]) -> Program:
        setup = tuple(executed[: len(self.setup)])
        steps = tuple(executed[len(self.setup) :])
        return Program(self.mode, self.client, setup or self.setup, steps, self.seed)

    @staticmethod
    def _reset_log(mount: CliMount) -> None:
        with contextlib.suppress(FileNotFoundError):
            mount.log_path.unlink()


class _RunState:
    """The two sides of one run while it runs."""

    def __init__(self, run: DifferentialRun, local: Side, mount: CliMount, dsn: str) -> None:
        self.run = run
        self.local = local
        self.mount = mount
        self.dsn = dsn
        self.remote: Side | None = None
        self.remote = self._guarded("opening the database", lambda: Side(mount.db, run.client))
        self.schema = Schema()
        self.closed = False

    def run_all(self, source: StepSource, executed: list[Step], result: RunResult) -> None:
        for step in self.run.setup:
            executed.append(step)
            self.step(step)
            result.statements += 1
        while True:
            steps = source.next_steps(self.schema, self.local.open_conns)
            if steps is None:
                break
            for step in steps:
                executed.append(step)
                self.step(step)
                result.statements += 1
                if not step.is_read and not self.local.open_conns:
                    result.transactions += 1
                    self.compare_state(DifferenceKind.STATE)
                    every = self.run.plan.verify_every
                    if every and result.transactions % every == 0:
                        self.verify(result)
        self.finish(result)

    def step(self, step: Step) -> None:
        assert self.remote is not None
        expected = self.local.run(step)
        got = self._guarded(f"running {step.sql[:80]!r}", lambda: self.remote.run(step))
        if got != expected:
            raise DifferenceFound(
                Difference(
                    DifferenceKind.OUTCOME,
                    f"[{step.conn.value}] {step.sql[:300]}\n  local: {expected.describe()}\n"
                    f"  mount: {got.describe()}",
                )
            )

    def compare_state(self, kind: DifferenceKind) -> None:
        with self.local.reader() as reader:
            expected = fingerprint(reader)
            self.schema = read_schema(reader)
        got = self._guarded("reading the state", self._mount_fingerprint, failure=kind)
        differences = got.differences(expected)
        if differences:
            if expected.integrity_ok and not got.integrity_ok:
                kind = DifferenceKind.INTEGRITY
            raise DifferenceFound(Difference(kind, "\n  ".join(differences)))

    def _mount_fingerprint(self) -> Fingerprint:
        assert self.remote is not None
        self.mount.drop_cached_pages()
        with self.remote.reader() as reader:
            return fingerprint(reader)

    def verify(self, result: RunResult) -> None:
        if self.local.path.stat().st_size == 0:
            return  # nothing committed yet: the store holds no database to verify
        result.verifies += 1
        verified = pgfs_verify(self.dsn)
        if not verified.ok and not self._local_file_fails_alike(verified):
            raise DifferenceFound(Difference(DifferenceKind.VERIFY, verified.output[-2000:]))
        self.compare_server()

    def compare_server(self) -> None:
        """What SQLite was told equals what the store holds: the store exported to a
        file reads like the local file (a commit the mount took for something else,
        or never saw, shows here even while the mount's own reads look right)."""
        copy = self.local.path.with_name("store-export.db")
        exported = pgfs_export(self.dsn, copy)
        if not exported.ok:
            raise DifferenceFound(Difference(DifferenceKind.SERVER, exported.output[-2000:]))
        try:
            with self.local.reader() as reader:
                expected = fingerprint(reader)
            server = Connection(self.local.kind, copy)
            try:
                differences = fingerprint(server).differences(expected)
            finally:
                server.close()
        finally:
            for path in (copy, *(copy.with_name(copy.name + s) for s in ("-wal", "-shm"))):
                path.unlink(missing_ok=True)
        if differences:
            raise DifferenceFound(Difference(DifferenceKind.SERVER, "\n  ".join(differences)))

    def _local_file_fails_alike(self, verified: VerifyResult) -> bool:
        """`pgfs verify` runs integrity_check with Python's sqlite3 (the system SQLite).
        A file written by a newer SQLite can fail that check by itself: an expression
        index over a REAL's text (lower(9007199254740992.0)) holds the newer library's
        text, which the older one formats differently. Not a difference of the mount
        when the local file, checked by the same library, reports exactly the same."""
        reported = [
            line.removeprefix(INTEGRITY_PREFIX)
            for line in verified.output.splitlines()
            if line.startswith(INTEGRITY_PREFIX)
        ]
        if not reported or "integrity_check failed, 0 row mismatches" not in verified.output:
            return False
        local = system_sqlite_integrity(self.local.path)
        return local != ["ok"] and local[: len(reported)] == reported

    def finish(self, result: RunResult) -> None:
        """Close both sides (a WAL is checkpointed), compare, verify, remount, compare."""
        expected_error = self.local.close()
        assert self.remote is not None
        got_error = self._guarded("closing", self.remote.close)
        self.closed = True
        if got_error != expected_error:
            raise DifferenceFound(
                Difference(
                    DifferenceKind.OUTCOME,
                    f"closing: local {expected_error!r}, mount {got_error!r}",
                )
            )
        self.compare_state(DifferenceKind.STATE)
        self.verify(result)
        if self.run.plan.remount:
            self.mount.stop()
            self.mount.start()
            self.compare_state(DifferenceKind.REMOUNT)

    def close_quietly(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self.local.close()
        if self.remote is not None:
            with contextlib.suppress(Exception):
                self.remote.close()

    def _guarded(
        self, what: str, call: Callable[[], R], failure: DifferenceKind = DifferenceKind.MOUNT
    ) -> R:
        """`call` (something on the mount) under a watchdog: if it does not return within
        the step timeout the mount process is killed, so the call fails instead of
        hanging. A hang or a dead mount process is a difference, and so is an exception
        (of kind `failure`: reading a malformed database is a state difference)."""
        hung = threading.Event()

        def kill() -> None:
            hung.set()
            self.mount.kill()

        timer = threading.Timer(self.run.plan.step_timeout, kill)
        timer.start()
        try:
            value = call()
        except Exception as exc:
            kind = failure if self.mount.alive else DifferenceKind.MOUNT
            raise DifferenceFound(Difference(kind, f"{what}: {type(exc).__name__}: {exc}")) from exc
        finally:
            timer.cancel()
        if hung.is_set():
            detail = f"{what} did not return within {self.run.plan.step_timeout} s"
            raise DifferenceFound(Difference(DifferenceKind.MOUNT, detail))
        if not self.mount.alive:
            raise DifferenceFound(Difference(DifferenceKind.MOUNT, f"the mount died {what}"))
        return value
