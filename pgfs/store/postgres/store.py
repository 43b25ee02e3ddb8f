"""`PostgresStore`: the `Store` protocol on PostgreSQL (`pgfs.store.server.ServerStore`
keeps what every backend does the same way).

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

import logging
import time
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

from pgfs.store.changeset import Changeset
from pgfs.store.errors import StoreUnavailableError
from pgfs.store.interface import StoreState
from pgfs.store.postgres import reads, reports
from pgfs.store.postgres.catalog import FENCE_SQLSTATE, Catalog, check_schema_names
from pgfs.store.postgres.connection import (
    DRIVER,
    Deadline,
    ReadPool,
    connect,
    has_news,
    is_connection_error,
)
from pgfs.store.postgres.lease import Lease
from pgfs.store.postgres.writer import (
    DirectStatements,
    PipelinedStatements,
    WriteContext,
    Writer,
    is_small,
)
from pgfs.store.server import QUICK_TRY, ServerStore

log = logging.getLogger("pgfs.store")

SMALL_WRITE_DEADLINE = 15.0
"""Seconds a pipelined (small) write may take before its connection is cut."""
BULK_WRITE_DEADLINE = 3600.0
"""The same for a streamed write (an import, a VACUUM); keepalives catch partitions."""


def _prefer_lz4(conn: psycopg.Connection) -> None:
    """Compress big values (records, JSON) with lz4 rather than pglz: several times
    faster to write and read, about as small. Servers without it keep pglz."""
    try:
        conn.execute("SET default_toast_compression = 'lz4'")
    except psycopg.Error:
        log.debug("lz4 TOAST compression is not available: keeping pglz")


class PostgresStore(ServerStore):
    """A SQLite database kept in PostgreSQL (README Design). Create with `connect`."""

    driver = DRIVER
    reads = reads
    reports = reports

    def __init__(self, dsn: str, catalog: Catalog, pool: ReadPool) -> None:
        super().__init__(dsn, catalog, pool, Lease(dsn, catalog))

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

    # ------------------------------------------------------------------ the backend's part

    def _connect(self, timeout: float | None = None) -> psycopg.Connection:
        return connect(self.dsn, timeout=timeout)

    def _is_small(self, part: Changeset) -> bool:
        return is_small(part)

    def _context(self, commit_id: uuid.UUID, epoch: int, seq: int, source: str, started: float):
        return WriteContext(self.catalog, commit_id, epoch, seq, source, started)

    def _table_rows(self, conn: psycopg.Connection, definition, state: StoreState) -> Iterator:
        with conn.transaction():
            yield from super()._table_rows(conn, definition, state)

    def is_empty(self) -> bool:
        def work(conn: psycopg.Connection) -> bool:
            if not self.catalog.initialised(conn):
                return True
            row = conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.catalog.meta("pages"))
            ).fetchone()
            return not (row and row[0])

        return self._read("checking whether the store is empty", work)

    # ------------------------------------------------------------------ writes

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
        pid = conn.info.backend_pid
        pipelined = small
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
                    writer.apply_all(first, rest, clear)
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

    def _fence_message(self, exc: BaseException) -> str | None:
        if isinstance(exc, psycopg.Error) and exc.sqlstate == FENCE_SQLSTATE:
            return str(exc.diag.message_primary or exc)
        return None

    def _lost_connection(self, conn: psycopg.Connection, exc: BaseException) -> bool:
        return is_connection_error(exc) or conn.broken or conn.closed

    def _discard_transaction(self, conn: psycopg.Connection) -> None:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            conn.close()
            self._writer = None

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
