"""One SQLite connection, through Python's sqlite3 module or apsw, as the differential
test drives it: one statement at a time, every row fetched, errors as values."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from .program import ClientKind

# A value with its storage class: ("integer", 3) and ("real", 3.0) differ.
TypedValue = tuple[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What one statement did, as an application sees it."""

    rows: tuple[tuple[TypedValue, ...], ...] = ()
    error: str | None = None
    in_transaction: bool = False

    def describe(self) -> str:
        state = "in a transaction" if self.in_transaction else "autocommit"
        if self.error is not None:
            return f"error {self.error!r} ({state})"
        shown = [tuple(_short(v) for _, v in row) for row in self.rows[:5]]
        more = f" and {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
        return f"{len(self.rows)} rows {shown}{more} ({state})"


# A statement may run this many SQLite VM instructions (in calls of the progress
# handler, every PROGRESS_STEP instructions) before it is interrupted: triggers that
# feed each other can make one DELETE insert millions of rows. The count is the same
# for the same statement on two logically equal files, so both sides stop alike.
PROGRESS_STEP = 10_000
PROGRESS_CALLS = 3_000


class Connection:
    """A connection that never waits for a lock (busy timeout 0): which statement gets
    SQLITE_BUSY is then decided by lock states alone, the same on any two files."""

    def __init__(self, kind: ClientKind, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._progress_calls = 0
        self._budget: int | None = None
        if kind is ClientKind.SQLITE3:
            self._conn: Any = sqlite3.connect(
                path, isolation_level=None, timeout=0, check_same_thread=False
            )
        else:
            self._conn = apsw.Connection(str(path))
            self._conn.set_busy_timeout(0)
        self._conn.set_progress_handler(self._progress, PROGRESS_STEP)

    def _progress(self) -> bool:
        """True (interrupt) once a program statement used up its budget."""
        self._progress_calls += 1
        return self._budget is not None and self._progress_calls > self._budget

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.in_transaction)

    def run(self, statement: str) -> Outcome:
        """One statement of a program, within the instruction budget."""
        self._progress_calls = 0
        self._budget = PROGRESS_CALLS
        try:
            rows = [tuple(row) for row in self._conn.execute(statement)]
        except (sqlite3.Error, apsw.Error, UnicodeDecodeError) as exc:
            return Outcome(error=self._describe(exc), in_transaction=self.in_transaction)
        finally:
            self._budget = None
        typed = tuple(tuple((_storage_class(v), v) for v in row) for row in rows)
        return Outcome(rows=typed, in_transaction=self.in_transaction)

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        """Rows of a statement that must succeed (the state comparison's queries)."""
        return [tuple(row) for row in self._conn.execute(statement)]

    def close(self) -> None:
        self._conn.close()

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(str(self.path.parent), "<dir>")


def _storage_class(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | int):
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "text"
    return "blob"


def _short(value: Any) -> Any:
    if isinstance(value, bytes) and len(value) > 16:
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > 40:
        return value[:20] + f"...<{len(value)} chars>"
    return value
