"""`MariaDBStore`: the `Store` protocol on MariaDB (InnoDB).

Reads go through a small pool; writes through one dedicated connection, one
InnoDB transaction per write, fenced by the lease (`lease.py`), sent by the
writer (`writer.py`), with a second connection for the DDL a write does before
its transaction. While this process holds the lease it is the only writer, so
the state it loaded stays true and is moved forward by its own writes.

A write whose connection is lost after COMMIT was sent is resolved before the
caller hears anything: the old connection is killed and waited for (so
nothing of the transaction can still commit), and the commit log is asked for
the write's id. Only when the server cannot be asked within the bound is the
outcome unknown (CommitOutcomeUnknownError); `commit_landed` answers later.
DDL a committed write still owes is finished right after it, or by the next
write or read (`catalog.recover`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

import mariadb

from pgfs.store.changeset import Changeset, CommitSource, PageRecord
from pgfs.store.dsn import describe_target
from pgfs.store.errors import (
    CommitOutcomeUnknownError,
    LeaseLostError,
    StoreError,
    StoreUnavailableError,
)
from pgfs.store.interface import (
    CommitStats,
    Health,
    LeafRow,
    LeaseHolder,
    LeaseStatus,
    StoreState,
    new_commit_id,
)
from pgfs.store.mariadb import reads, reports
from pgfs.store.mariadb.catalog import Catalog, check_schema_names
from pgfs.store.mariadb.connection import (
    WRITE_READ_TIMEOUT,
    Deadline,
    ReadPool,
    close_quietly,
    connect,
    is_connection_error,
    is_usable,
    translate,
)
from pgfs.store.mariadb.lease import Lease
from pgfs.store.mariadb.writer import FenceError, WriteContext, Writer
from pgfs.store.stored import rowid_layout

log = logging.getLogger("pgfs.store")

SMALL_WRITE_DEADLINE = 15.0
"""Seconds a write of one small part may take before its connection is cut."""
BULK_WRITE_DEADLINE = 3600.0
ANSWER_BOUND = 22.0
"""A write's outcome is known (committed, failed, or unknown) within this many seconds of
its start: inside Jellyfin's 30 s command timeout."""
MIN_RESOLVE = 3.0
QUICK_TRY = 1.0
HEALTH_DEADLINE = 3.0
SMALL_PART_ROWS = 1_000
SIDE_LOCK_WAIT = 5
"""Seconds the DDL connection waits for a table's metadata lock."""


class _NotLanded(Exception):
    """A write whose connection was lost, known not to be in the store."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


def _is_small(part: Changeset) -> bool:
    if part.schema_entries is not None or not part.schema.is_empty():
        return False
    rows = sum(len(r.inserted) + len(r.updated) + len(r.deleted) for r in part.rows.values())
    return rows <= SMALL_PART_ROWS and len(part.pages) <= SMALL_PART_ROWS


class MariaDBStore:
    """A SQLite database kept in MariaDB (README Design). Create with `connect`."""

    def __init__(self, url: str, catalog: Catalog, pool: ReadPool) -> None:
        self.dsn = url
        self.catalog = catalog
        self._pool = pool
        self._lease = Lease(url, catalog)
        self._state: StoreState | None = None
        self._write_lock = threading.Lock()
        self._writer: mariadb.Connection | None = None
        self._side: mariadb.Connection | None = None
        self._unresolved: dict[uuid.UUID, int | None] = {}
        self._down_since: float | None = None
        self._recover = True
        """Whether DDL may be owed or work tables left over (checked before a write)."""

    @classmethod
    def connect(
        cls, url: str, *, meta_schema: str = "pgfs", data_schema: str = "jellyfin"
    ) -> MariaDBStore:
        """Open the read pool; StoreUnavailableError (no password) when MariaDB cannot be
        reached."""
        check_schema_names(meta_schema, data_schema)
        pool = ReadPool(url)
        pool.open()
        return cls(url, Catalog(meta_schema, data_schema), pool)

    def close(self) -> None:
        self._lease.release()
        with self._write_lock:
            close_quietly(self._writer)
            close_quietly(self._side)
            self._writer = self._side = None
        self._pool.close()

    def __enter__(self) -> MariaDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def meta_schema(self) -> str:
        return self.catalog.meta_schema

    @property
    def data_schema(self) -> str:
        return self.catalog.data_schema

    @property
    def target(self) -> str:
        return (
            f"MariaDB {describe_target(self.dsn)} databases {self.catalog.meta_schema}/"
            f"{self.catalog.data_schema}"
        )

    # ------------------------------------------------------------------ plumbing

    def _read(self, doing: str, work):
        """Run `work(conn)` on a pooled connection; retry once on a dead connection."""
        for attempt in (0, 1):
            try:
                with self._pool.connection() as conn:
                    result = work(conn)
                self._pool.mark_up()
                return result
            except StoreError as exc:
                if isinstance(exc, StoreUnavailableError):
                    self._pool.mark_down()
                raise
            except Exception as exc:
                error = translate(exc, doing, self.dsn)
                if isinstance(error, StoreUnavailableError):
                    self._pool.mark_down()
                    if attempt == 0:
                        continue
                raise error from exc
        raise AssertionError("unreachable")

    def _current(self) -> StoreState:
        state = self._state
        return state if state is not None else self.load_state()

    # ------------------------------------------------------------------ state

    def initialise(self) -> None:
        self._read("initialising the store", self.catalog.initialise)

    def is_empty(self) -> bool:
        def work(conn: mariadb.Connection) -> bool:
            if not self.catalog.initialised(conn):
                return True
            cur = conn.cursor()
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {self.catalog.meta('pages')})")
            return not cur.fetchone()[0]

        return self._read("checking whether the store is empty", work)

    def load_state(self) -> StoreState:
        state = self._read("loading the store state", self.catalog.load_state)
        self._state = state
        return state

    # ------------------------------------------------------------------ reads

    def page_records(self, pgnos: Iterable[int]) -> dict[int, PageRecord]:
        wanted = list(pgnos)
        if not wanted:
            return {}
        return self._read(
            "reading page records", lambda conn: reads.page_records(conn, self.catalog, wanted)
        )

    def pages_of(self, owner: str) -> list[PageRecord]:
        return self._read(
            f"reading the pages of {owner!r}",
            lambda conn: reads.pages_of(conn, self.catalog, owner),
        )

    def leaf_rows(self, table: str, ranges: list[tuple[int, int]]) -> list[LeafRow]:
        layout = rowid_layout(self._current().tables, table)
        return self._read(
            f"reading rows of {table!r}",
            lambda conn: reads.leaf_rows(conn, self.catalog, layout, ranges),
        )

    def row_payloads(self, table: str, rowids: Iterable[int]) -> dict[int, bytes]:
        wanted = list(rowids)
        if not wanted:
            return {}
        layout = rowid_layout(self._current().tables, table)
        return self._read(
            f"reading rows of {table!r}",
            lambda conn: reads.row_payloads(conn, self.catalog, layout, wanted),
        )

    def overflow_chains(self, table: str, rowids: Iterable[int]) -> dict[int, list[int]]:
        wanted = list(rowids)
        if not wanted:
            return {}
        return self._read(
            f"reading overflow chains of {table!r}",
            lambda conn: reads.overflow_chains(conn, self.catalog, table, wanted),
        )

    def table_rows(self, table: str) -> Iterator[tuple[int, bytes]]:
        state = self._current()
        definition = state.tables.get(table)
        if definition is None:
            raise StoreError(f"table {table!r} keeps no rows in the store")
        try:
            with self._pool.connection() as conn:
                yield from reads.table_rows(
                    conn, self.catalog, definition, state.encoding, state.schema_format
                )
        except (mariadb.Error, StoreError) as exc:
            raise translate(exc, f"reading rows of {table!r}", self.dsn) from exc

    def inspect(self) -> dict[str, object]:
        def work(conn: mariadb.Connection) -> dict[str, object]:
            report: dict[str, object] = {
                "server": "MariaDB " + describe_target(self.dsn),
                "meta_schema": self.catalog.meta_schema,
                "data_schema": self.catalog.data_schema,
                "initialised": self.catalog.initialised(conn),
            }
            if not report["initialised"]:
                return report
            return report | reports.inspect(conn, self.catalog)

        return self._read("inspecting the store", work)

    def health(self) -> Health:
        started = time.monotonic()
        try:
            conn = connect(self.dsn, timeout=HEALTH_DEADLINE)
            try:
                with Deadline(conn, HEALTH_DEADLINE):
                    conn.cursor().execute("SELECT 1")
            finally:
                close_quietly(conn)
        except (StoreError, mariadb.Error) as exc:
            detail = str(translate(exc, "checking health", self.dsn))
            return Health(False, detail, time.monotonic() - started)
        return Health(True, "ok", time.monotonic() - started)

    # ------------------------------------------------------------------ the lease

    def acquire_lease(self, holder: LeaseHolder, *, takeover: bool = False) -> LeaseStatus:
        status = self._lease.acquire(holder, takeover=takeover)
        with self._write_lock:  # what a previous writer left is now ours to finish
            self._run_recovery()
        self.load_state()
        return status

    def release_lease(self) -> None:
        self._lease.release()

    def lease_status(self) -> LeaseStatus:
        return self._lease.status()

    def check_lease(self) -> None:
        self._lease.check()

    # ------------------------------------------------------------------ writes

    def write(
        self,
        parts: Iterable[Changeset],
        *,
        source: CommitSource,
        commit_id: uuid.UUID | None = None,
        clear: bool = False,
    ) -> CommitStats:
        started = time.perf_counter()
        epoch = self._lease.epoch_for_write()
        commit_id = commit_id or new_commit_id()
        iterator = iter(parts)
        first = next(iterator, None)
        if first is None:
            raise StoreError("internal error: a write with no parts")
        second = next(iterator, None)
        small = second is None and not clear and _is_small(first)
        rest = itertools.chain(() if second is None else (second,), iterator)
        with self._write_lock:
            if self._recover:
                self._run_recovery()
            state = self._current()
            context = WriteContext(
                self.catalog, commit_id, epoch, state.commit_seq + 1, str(source), started
            )
            for attempt in (0, 1):
                try:
                    writer = self._attempt(context, state, first, rest, small, clear)
                    break
                except _NotLanded as failure:
                    # Nothing of it is in the store: a small write goes again once, on a
                    # new connection (the old one was stale, e.g. the server restarted).
                    if attempt == 1 or not small or self._down_since is not None:
                        raise failure.error from failure
                    log.info("writing commit %s again on a new connection", commit_id)
            self._state = state.advanced_by(
                writer.final_part(), writer.entries, writer.tables, context.seq
            )
            self._finish_ddl(writer)
        stats = writer.stats
        stats.ms = (time.perf_counter() - started) * 1000
        return stats

    def _run_recovery(self) -> None:
        try:
            conn = self._writer_connection()
            with Deadline(conn, BULK_WRITE_DEADLINE):
                self.catalog.recover(conn)
        except mariadb.Error as exc:
            raise translate(exc, "finishing the DDL of an earlier write", self.dsn) from exc
        self._recover = False

    def _finish_ddl(self, writer: Writer) -> None:
        """The renames and drops the committed write owes. The write has landed: a failure
        here is logged, and the next write (or `_run_recovery`) finishes the job."""
        if writer.steps.is_empty():
            return
        try:
            conn = self._writer_connection()
            with Deadline(conn, BULK_WRITE_DEADLINE):
                self.catalog.finish_ddl(conn, writer.context.seq, writer.steps)
        except (mariadb.Error, StoreError) as exc:
            self._recover = True
            log.warning(
                "commit %s landed; its table renames wait for the next write: %s",
                writer.context.commit_id,
                translate(exc, "renaming tables", self.dsn),
            )

    def _side_connection(self) -> mariadb.Connection:
        """The connection for the DDL a write does before its transaction needs it."""
        if not is_usable(self._side):
            close_quietly(self._side)
            self._side = connect(self.dsn, read_timeout=WRITE_READ_TIMEOUT)
            # A table a lost connection still holds is left to the next write.
            self._side.cursor().execute(f"SET SESSION lock_wait_timeout = {SIDE_LOCK_WAIT}")
        assert self._side is not None
        return self._side

    def _attempt(
        self,
        context: WriteContext,
        state: StoreState,
        first: Changeset,
        rest: Iterator[Changeset],
        small: bool,
        clear: bool,
    ) -> Writer:
        """One try at one write: the writer of a committed write, or an exception."""
        conn = self._writer_connection()
        thread = conn.thread_id
        writer = Writer(conn, self._side_connection, context, state.tables)
        sent = False
        deadline = Deadline(conn, SMALL_WRITE_DEADLINE if small else BULK_WRITE_DEADLINE)
        try:
            with deadline:
                conn.begin()
                writer.fence()
                if clear:
                    writer.clear()
                for part in itertools.chain((first,), rest):
                    writer.apply(part)
                writer.finish()
                sent = True
                conn.commit()
        except Exception as exc:
            try:
                self._after_failure(
                    conn, exc, sent, context.commit_id, thread, context.started, deadline.expired
                )
            except CommitOutcomeUnknownError:
                self._recover = True  # its work tables may be owed a rename
                raise
            except BaseException:
                # Rolled back (or its connection is gone): the tables it made are nobody's.
                self._drop_work_tables(writer.created)
                raise
        return writer

    def _drop_work_tables(self, names: list[str]) -> None:
        """The tables a failed write created for itself (best effort: else the next write
        drops them)."""
        if not names:
            return
        try:
            cur = self._side_connection().cursor()
            for name in names:
                cur.execute(f"DROP TABLE IF EXISTS {self.catalog.data(name)}")
        except (mariadb.Error, StoreError) as exc:
            self._recover = True
            log.info("work tables of a failed write stay until the next write: %s", exc)

    def _writer_connection(self) -> mariadb.Connection:
        conn = self._writer
        if not is_usable(conn):
            close_quietly(conn)
            self._writer = None
            timeout = QUICK_TRY if self._down_since is not None else None
            try:
                conn = self._writer = connect(
                    self.dsn, timeout=timeout, read_timeout=WRITE_READ_TIMEOUT
                )
            except StoreUnavailableError:
                self._mark_down()
                raise
            self._mark_up()
        assert conn is not None
        return conn

    def _mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("MariaDB does not answer: failing fast until it does")

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning("MariaDB answers again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    def _after_failure(
        self,
        conn: mariadb.Connection,
        exc: Exception,
        sent: bool,
        commit_id: uuid.UUID,
        thread: int,
        started: float,
        expired: bool,
    ) -> None:
        """Raise what the failed write means; return only when it landed after all."""
        if isinstance(exc, FenceError):
            self._discard_transaction(conn)
            self._lease.mark_lost(f"{exc}; this mount refuses every write. Remount to serve")
            raise LeaseLostError(str(exc)) from exc
        error = translate(exc, "committing", self.dsn)
        lost = expired or is_connection_error(exc)
        if not lost:
            self._discard_transaction(conn)
            raise error from exc
        close_quietly(conn)
        self._writer = None
        if not sent:
            raise _NotLanded(error) from exc
        log.warning("the connection was lost after COMMIT was sent: asking the server (%s)", error)
        if self._resolve(commit_id, thread, started + ANSWER_BOUND):
            log.warning("commit %s did land: answering success", commit_id)
            return
        raise _NotLanded(StoreUnavailableError(f"{error} (the commit did not land)")) from exc

    def _discard_transaction(self, conn: mariadb.Connection) -> None:
        try:
            conn.rollback()
        except mariadb.Error:
            close_quietly(conn)
            self._writer = None

    def _resolve(self, commit_id: uuid.UUID, thread: int | None, until: float) -> bool:
        """Whether the write `commit_id` landed, once the connection `thread` that sent it is
        gone; CommitOutcomeUnknownError when the server cannot be asked by `until`."""
        if self._down_since is not None:
            until = time.perf_counter() + QUICK_TRY
        else:
            until = max(until, time.perf_counter() + MIN_RESOLVE)
        last: Exception | None = None
        while time.perf_counter() < until:
            try:
                conn = connect(self.dsn, timeout=max(1.0, until - time.perf_counter()))
            except StoreUnavailableError as exc:
                last = exc
                time.sleep(0.2)
                continue
            try:
                with Deadline(conn, max(0.5, until - time.perf_counter())):
                    landed = self._ask(conn, commit_id, thread, until)
                self._unresolved.pop(commit_id, None)
                self._mark_up()
                return landed
            except mariadb.Error as exc:
                last = exc
                time.sleep(0.2)
            finally:
                close_quietly(conn)
        self._unresolved[commit_id] = thread
        self._mark_down()
        raise CommitOutcomeUnknownError(
            f"the connection to MariaDB was lost after commit {commit_id} was sent, and "
            f"MariaDB could not be asked whether it landed ({last})",
            commit_id,
        )

    def _ask(
        self, conn: mariadb.Connection, commit_id: uuid.UUID, thread: int | None, until: float
    ) -> bool:
        cur = conn.cursor()
        if thread is not None and thread != conn.thread_id:
            with contextlib.suppress(mariadb.Error):
                cur.execute(f"KILL CONNECTION {int(thread)}")
            while time.perf_counter() < until:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ?", (thread,)
                )
                if not cur.fetchone()[0]:
                    break
                time.sleep(0.05)
        cur.execute(
            f"SELECT 1 FROM {self.catalog.meta('commit_log')} WHERE commit_id = ?",
            (str(commit_id),),
        )
        return cur.fetchone() is not None

    def commit_landed(self, commit_id: uuid.UUID) -> bool:
        thread = self._unresolved.get(commit_id)
        return self._resolve(commit_id, thread, time.perf_counter() + ANSWER_BOUND)
