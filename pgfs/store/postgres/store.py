"""`PostgresStore`: the `Store` protocol on PostgreSQL.

Reads go through a pool; writes through one dedicated connection, one
transaction per write, fenced by the lease (`lease.py`), sent by the writer
(`writer.py`). While this process holds the lease it is the only writer, so
the state it loaded (catalog, table definitions, commit sequence) stays true
and is moved forward by its own writes, never read again.

A write whose connection is lost after COMMIT may have been sent is resolved
before the caller hears anything: the old backend is ended (so nothing of
the transaction can still commit), and the commit log is asked for the
write's id. Only when the server cannot be asked within the bound is the
outcome unknown (CommitOutcomeUnknownError); `commit_landed` answers later.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping

import psycopg
from psycopg import sql

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
from pgfs.store.postgres import reads, reports
from pgfs.store.postgres.catalog import FENCE_SQLSTATE, Catalog, check_schema_names
from pgfs.store.postgres.connection import (
    Deadline,
    ReadPool,
    connect,
    has_news,
    is_connection_error,
    translate,
)
from pgfs.store.postgres.lease import Lease
from pgfs.store.postgres.writer import (
    DirectStatements,
    PipelinedStatements,
    WriteContext,
    Writer,
    is_small,
)

log = logging.getLogger("pgfs.store")

SMALL_WRITE_DEADLINE = 15.0
"""Seconds a pipelined (small) write may take before its connection is cut."""
BULK_WRITE_DEADLINE = 3600.0
"""The same for a streamed write (an import, a VACUUM); keepalives catch partitions."""
ANSWER_BOUND = 22.0
"""A write's outcome is known (committed, failed, or unknown) within this many
seconds of its start: inside Jellyfin's 30 s command timeout."""
MIN_RESOLVE = 3.0
QUICK_TRY = 1.0
"""While the server is known to be down (the last attempt found no answer), a call
tries once, this long, instead of waiting the whole bound again: one bounded wait per
failure, and back within about a second of the server's return."""
HEALTH_DEADLINE = 3.0


def _prefer_lz4(conn: psycopg.Connection) -> None:
    """Compress big values (records, JSON) with lz4 rather than pglz: several times
    faster to write and read, about as small. Servers without it keep pglz."""
    try:
        conn.execute("SET default_toast_compression = 'lz4'")
    except psycopg.Error:
        log.debug("lz4 TOAST compression is not available: keeping pglz")


class _NotLanded(Exception):
    """A write whose connection was lost, known not to be in the store."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


class PostgresStore:
    """A SQLite database kept in PostgreSQL (README Design). Create with `connect`."""

    def __init__(self, dsn: str, catalog: Catalog, pool: ReadPool) -> None:
        self.dsn = dsn
        self.catalog = catalog
        self._pool = pool
        self._lease = Lease(dsn, catalog)
        self._state: StoreState | None = None
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: psycopg.Connection | None = None
        self._unresolved: dict[uuid.UUID, int | None] = {}
        self._down_since: float | None = None

    @classmethod
    def connect(
        cls, dsn: str, *, meta_schema: str = "pgfs", data_schema: str = "jellyfin"
    ) -> PostgresStore:
        """Open the read pool; StoreUnavailableError (no password in it) when PostgreSQL
        cannot be reached."""
        check_schema_names(meta_schema, data_schema)
        connect(dsn).close()
        pool = ReadPool(dsn, name=f"pgfs-{meta_schema}")
        pool.open()
        return cls(dsn, Catalog(meta_schema, data_schema), pool)

    def close(self) -> None:
        self._lease.release()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self._pool.close()

    def __enter__(self) -> PostgresStore:
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
            f"{describe_target(self.dsn)} schemas {self.catalog.meta_schema}/"
            f"{self.catalog.data_schema}"
        )

    # ------------------------------------------------------------------ plumbing

    def _read(self, doing: str, work):
        """Run `work(conn)` on a pooled connection; retry once on a dead connection
        (reads are idempotent; the pool replaces broken connections)."""
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
        def work(conn: psycopg.Connection) -> bool:
            if not self.catalog.initialised(conn):
                return True
            row = conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.catalog.meta("pages"))
            ).fetchone()
            return not (row and row[0])

        return self._read("checking whether the store is empty", work)

    def load_state(self) -> StoreState:
        state = self._read("loading the store state", self.catalog.load_state)
        with self._state_lock:
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
        return self.leaf_rows_of({table: ranges})[table]

    def leaf_rows_of(
        self, requests: Mapping[str, list[tuple[int, int]]]
    ) -> dict[str, list[LeafRow]]:
        state = self._current()
        wanted = [(reads.rowid_layout(state.tables, t), r) for t, r in requests.items()]
        found = self._read(
            f"reading rows of {', '.join(repr(t) for t in requests)}",
            lambda conn: reads.leaf_rows(
                conn, self.catalog, wanted, state.encoding, state.schema_format
            ),
        )
        return {table: found.get(table, []) for table in requests}

    def row_payloads(self, table: str, rowids: Iterable[int]) -> dict[int, bytes]:
        wanted = list(rowids)
        if not wanted:
            return {}
        state = self._current()
        layout = reads.rowid_layout(state.tables, table)
        return self._read(
            f"reading rows of {table!r}",
            lambda conn: reads.row_payloads(
                conn, self.catalog, layout, wanted, state.encoding, state.schema_format
            ),
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
            with self._pool.connection() as conn, conn.transaction():
                yield from reads.table_rows(
                    conn, self.catalog, definition, state.encoding, state.schema_format
                )
        except (psycopg.Error, StoreError) as exc:
            raise translate(exc, f"reading rows of {table!r}", self.dsn) from exc

    def inspect(self) -> dict[str, object]:
        def work(conn: psycopg.Connection) -> dict[str, object]:
            report: dict[str, object] = {
                "server": describe_target(self.dsn),
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
            conn = connect(self.dsn)
            try:
                with Deadline(conn, HEALTH_DEADLINE):
                    conn.execute("SELECT 1")
            finally:
                conn.close()
        except (StoreError, psycopg.Error) as exc:
            detail = str(translate(exc, "checking health", self.dsn))
            return Health(False, detail, time.monotonic() - started)
        return Health(True, "ok", time.monotonic() - started)

    # ------------------------------------------------------------------ the lease

    def acquire_lease(self, holder: LeaseHolder, *, takeover: bool = False) -> LeaseStatus:
        status = self._lease.acquire(holder, takeover=takeover)
        self.load_state()  # what the previous writer left is now ours to keep
        return status

    def release_lease(self) -> None:
        self._lease.release()

    def lease_status(self) -> LeaseStatus:
        return self._lease.status()

    def check_lease(self) -> None:
        """Probe the lease connection (the mount calls this every few seconds)."""
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
        pipelined = second is None and not clear and is_small(first)
        rest = itertools.chain(() if second is None else (second,), iterator)
        with self._write_lock:
            state = self._current()
            context = WriteContext(
                self.catalog, commit_id, epoch, state.commit_seq + 1, str(source), started
            )
            for attempt in (0, 1):
                try:
                    writer = self._attempt(context, state, first, rest, pipelined, clear)
                    break
                except _NotLanded as failure:
                    # Nothing of it is in the store and SQLite has no answer yet: a small
                    # write goes again once, on a new connection (the old one was stale,
                    # e.g. the server restarted while it sat idle).
                    if attempt == 1 or not pipelined or self._down_since is not None:
                        raise failure.error from failure
                    log.info("writing commit %s again on a new connection", commit_id)
            self._state = state.advanced_by(
                writer.final_part(), writer.entries, writer.tables, context.seq
            )
        stats = writer.stats
        stats.ms = (time.perf_counter() - started) * 1000
        return stats

    def _attempt(
        self,
        context: WriteContext,
        state: StoreState,
        first: Changeset,
        rest: Iterator[Changeset],
        pipelined: bool,
        clear: bool,
    ) -> Writer:
        """One try at one write: the writer of a committed write, or an exception."""
        conn = self._writer_connection()
        pid = conn.info.backend_pid
        out = PipelinedStatements(conn) if pipelined else DirectStatements(conn)
        writer = Writer(conn, out, context, state.tables)
        sent = False
        deadline = Deadline(conn, SMALL_WRITE_DEADLINE if pipelined else BULK_WRITE_DEADLINE)
        try:
            with deadline:
                if pipelined:
                    sent = True
                    with conn.pipeline():
                        conn.execute("BEGIN", prepare=False)
                        writer.fence()
                        writer.apply(first)
                        writer.finish()
                        conn.execute("COMMIT", prepare=False)
                else:
                    conn.execute("BEGIN", prepare=False)
                    writer.fence()
                    if clear:
                        writer.clear()
                    for part in itertools.chain((first,), rest):
                        writer.apply(part)
                    writer.finish()
                    sent = True
                    conn.execute("COMMIT", prepare=False)
        except Exception as exc:
            self._after_failure(
                conn, exc, sent, context.commit_id, pid, context.started, deadline.expired
            )
        return writer

    def _writer_connection(self) -> psycopg.Connection:
        conn = self._writer
        if conn is None or conn.closed or conn.broken or has_news(conn):
            if conn is not None:
                conn.close()
            self._writer = None
            timeout = QUICK_TRY if self._down_since is not None else None
            try:
                conn = self._writer = connect(self.dsn, role="writer", timeout=timeout)
            except StoreUnavailableError:
                self._mark_down()
                raise
            self._mark_up()
            _prefer_lz4(conn)
        return conn

    def _mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("PostgreSQL does not answer: failing fast until it does")

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning(
                "PostgreSQL answers again after %.1f s", time.monotonic() - self._down_since
            )
            self._down_since = None

    def _after_failure(
        self,
        conn: psycopg.Connection,
        exc: Exception,
        sent: bool,
        commit_id: uuid.UUID,
        pid: int,
        started: float,
        expired: bool,
    ) -> None:
        """Raise what the failed write means; return only when it landed after all."""
        if isinstance(exc, psycopg.Error) and exc.sqlstate == FENCE_SQLSTATE:
            self._discard_transaction(conn)
            message = str(exc.diag.message_primary or exc)
            self._lease.mark_lost(f"{message}; this mount refuses every write. Remount to serve")
            raise LeaseLostError(message) from exc
        error = translate(exc, "committing", self.dsn)
        lost = expired or is_connection_error(exc) or conn.broken or conn.closed
        if not lost:
            self._discard_transaction(conn)
            raise error from exc
        conn.close()
        self._writer = None
        if not sent:
            raise _NotLanded(error) from exc
        log.warning("the connection was lost after COMMIT was sent: asking the server (%s)", error)
        if self._resolve(commit_id, pid, started + ANSWER_BOUND):
            log.warning("commit %s did land: answering success", commit_id)
            return
        raise _NotLanded(StoreUnavailableError(f"{error} (the commit did not land)")) from exc

    def _discard_transaction(self, conn: psycopg.Connection) -> None:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            conn.close()
            self._writer = None

    def _resolve(self, commit_id: uuid.UUID, pid: int | None, until: float) -> bool:
        """Whether the write `commit_id` landed, once no transaction of backend `pid` can
        still end; CommitOutcomeUnknownError when the server cannot be asked by `until`."""
        if self._down_since is not None:
            until = time.perf_counter() + QUICK_TRY
        else:
            until = max(until, time.perf_counter() + MIN_RESOLVE)
        last: Exception | None = None
        while time.perf_counter() < until:
            try:
                conn = connect(self.dsn, timeout=max(0.5, until - time.perf_counter()))
            except StoreUnavailableError as exc:
                last = exc
                time.sleep(0.2)
                continue
            try:
                with Deadline(conn, max(0.5, until - time.perf_counter())):
                    landed = self._ask(conn, commit_id, pid, until)
                self._unresolved.pop(commit_id, None)
                self._mark_up()
                return landed
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.2)
            finally:
                conn.close()
        self._unresolved[commit_id] = pid
        self._mark_down()
        raise CommitOutcomeUnknownError(
            f"the connection to PostgreSQL was lost after commit {commit_id} was sent, and "
            f"PostgreSQL could not be asked whether it landed ({last})",
            commit_id,
        )

    def _ask(
        self, conn: psycopg.Connection, commit_id: uuid.UUID, pid: int | None, until: float
    ) -> bool:
        if pid is not None:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid = %s AND pid <> pg_backend_pid()",
                (pid,),
            )
            while time.perf_counter() < until:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if not row or not row[0]:
                    break
                time.sleep(0.05)
        row = conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE commit_id = %s").format(
                self.catalog.meta("commit_log")
            ),
            (commit_id,),
        ).fetchone()
        return row is not None

    def commit_landed(self, commit_id: uuid.UUID) -> bool:
        pid = self._unresolved.get(commit_id)
        return self._resolve(commit_id, pid, time.perf_counter() + ANSWER_BOUND)
