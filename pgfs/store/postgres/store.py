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

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager

import psycopg
from psycopg import sql

from pgfs.sqlite.schema import TableDefinition
from pgfs.store.changeset import Changeset
from pgfs.store.commit import WriteContext, WriterFrame
from pgfs.store.interface import StoreState
from pgfs.store.postgres import reads, reports
from pgfs.store.postgres.catalog import FENCE_SQLSTATE, Catalog
from pgfs.store.postgres.connection import (
    DRIVER,
    ReadPool,
    connect,
    is_connection_error,
)
from pgfs.store.postgres.lease import Lease
from pgfs.store.postgres.writer import (
    DirectStatements,
    PipelinedStatements,
    Writer,
    is_small,
)
from pgfs.store.server import ServerStore

log = logging.getLogger("pgfs.store")


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
        Catalog.check_names(meta_schema, data_schema)
        connect(dsn).close()
        pool = ReadPool(dsn, name=f"pgfs-{meta_schema}")
        pool.open()
        return cls(dsn, Catalog(meta_schema, data_schema), pool)

    # ------------------------------------------------------------------ the backend's part

    def _connect(self, timeout: float | None = None) -> psycopg.Connection:
        return connect(self.dsn, timeout=timeout)

    def _is_small(self, part: Changeset) -> bool:
        return is_small(part)

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

    def _connect_writer(self, timeout: float | None) -> psycopg.Connection:
        conn = connect(self.dsn, role="writer", timeout=timeout)
        _prefer_lz4(conn)
        return conn

    def _new_writer(
        self,
        conn: psycopg.Connection,
        context: WriteContext,
        tables: dict[str, TableDefinition],
        small: bool,
    ) -> Writer:
        """A small write goes out pipelined, any other statement by statement."""
        return Writer(
            conn, PipelinedStatements(conn) if small else DirectStatements(conn), context, tables
        )

    def _batch(
        self, conn: psycopg.Connection, writer: WriterFrame, small: bool
    ) -> AbstractContextManager:
        """A small write goes out in one pipeline, which may deliver the COMMIT at any
        point of it."""
        if not small:
            return contextlib.nullcontext()
        writer.sent = True
        return conn.pipeline()

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
