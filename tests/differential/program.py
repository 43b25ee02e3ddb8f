"""What the differential test runs: SQL statements on two connections to one database file.

A `Program` is a setup (pragmas every connection runs first) and a list of
`Step`s, each one statement on connection A or B. It prints as a SQL script
that the `sqlite3` shell runs as it is (the connection markers are comments)
and that `scripts/fuzz_mount.py --replay FILE` runs on a local file and
through a pgfs mount side by side:

    -- pgfs differential program
    -- journal_mode: delete
    -- client: apsw
    -- seed: 17
    -- connection A
    PRAGMA journal_mode=delete;
    CREATE TABLE "t1"("a" INTEGER);
    -- connection B
    SELECT count(*) FROM "t1";

Every statement sits on one line. The setup is the statements before the
line `-- steps`; a shrinker never removes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum


class Conn(Enum):
    """The two connections every program interleaves."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Conn:
        return Conn.B if self is Conn.A else Conn.A


class JournalMode(Enum):
    """The journal modes pgfs follows (MEMORY and OFF are refused by design)."""

    DELETE = "delete"
    TRUNCATE = "truncate"
    PERSIST = "persist"
    WAL = "wal"

    @property
    def rollback(self) -> bool:
        return self is not JournalMode.WAL


class ClientKind(Enum):
    """Two SQLite builds: Python's sqlite3 module (the system SQLite) and apsw (its own)."""

    SQLITE3 = "sqlite3"
    APSW = "apsw"


@dataclass(frozen=True)
class Step:
    conn: Conn
    sql: str

    @property
    def is_read(self) -> bool:
        """A plain query: it changes nothing, so no state comparison follows it."""
        return self.sql.lstrip().upper().startswith("SELECT")


@dataclass(frozen=True)
class Program:
    mode: JournalMode
    client: ClientKind
    setup: tuple[Step, ...]
    steps: tuple[Step, ...]
    seed: int | None = None
    notes: tuple[str, ...] = field(default=())

    def with_steps(self, steps: Iterable[Step]) -> Program:
        return replace(self, steps=tuple(steps))

    def in_mode(self, mode: JournalMode, client: ClientKind) -> Program:
        """The same program in another journal mode, through another client."""
        setup = tuple(
            Step(s.conn, f"PRAGMA journal_mode={mode.value}")
            if s.sql.startswith("PRAGMA journal_mode=")
            else s
            for s in self.setup
        )
        return replace(self, mode=mode, client=client, setup=setup)

    def script(self) -> str:
        """The program as a runnable SQL script (see the module docstring)."""
        lines = [
            "-- pgfs differential program",
            f"-- journal_mode: {self.mode.value}",
            f"-- client: {self.client.value}",
        ]
        if self.seed is not None:
            lines.append(f"-- seed: {self.seed}")
        lines += [f"-- note: {note}" for note in self.notes]
        lines += _statements(self.setup, None)
        lines.append("-- steps")
        last = self.setup[-1].conn if self.setup else None
        lines += _statements(self.steps, last)
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Program:
        """The inverse of `script()`."""
        headers: dict[str, str] = {}
        notes: list[str] = []
        setup: list[Step] = []
        steps: list[Step] = []
        target = setup
        conn = Conn.A
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if line.startswith("--"):
                comment = line[2:].strip()
                if comment == "steps":
                    target = steps
                elif comment.startswith("connection "):
                    conn = Conn(comment.removeprefix("connection ").strip())
                elif comment.startswith("note:"):
                    notes.append(comment.removeprefix("note:").strip())
                elif ":" in comment:
                    key, value = comment.split(":", 1)
                    headers[key.strip()] = value.strip()
                continue
            target.append(Step(conn, line.removesuffix(";")))
        return cls(
            mode=JournalMode(headers.get("journal_mode", "delete")),
            client=ClientKind(headers.get("client", "sqlite3")),
            setup=tuple(setup),
            steps=tuple(steps),
            seed=int(headers["seed"]) if "seed" in headers else None,
            notes=tuple(notes),
        )


def setup_steps(
    mode: JournalMode, *, database: Iterable[str] = (), connection: Iterable[str] = ()
) -> tuple[Step, ...]:
    """What a program runs first: `database` pragmas on A while the file is still
    empty (page_size, auto_vacuum), then on each connection its journal mode (per
    connection in the rollback modes) and the `connection` pragmas."""
    steps = [Step(Conn.A, pragma) for pragma in database]
    for conn in Conn:
        steps.append(Step(conn, f"PRAGMA journal_mode={mode.value}"))
        steps += [Step(conn, pragma) for pragma in connection]
    return tuple(steps)


def _statements(steps: Iterable[Step], conn: Conn | None) -> list[str]:
    lines = []
    for step in steps:
        if step.conn is not conn:
            lines.append(f"-- connection {step.conn.value}")
            conn = step.conn
        lines.append(step.sql + ";")
    return lines
