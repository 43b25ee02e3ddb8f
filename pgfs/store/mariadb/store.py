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
import logging
import time
import uuid

import mariadb

from pgfs.sqlite.schema import TableDefinition
from pgfs.store.changeset import Changeset
from pgfs.store.commit import WriteContext
from pgfs.store.errors import (
    CommitOutcomeUnknownError,
    StoreError,
)
from pgfs.store.interface import LeaseHolder, LeaseStatus
from pgfs.store.mariadb import reads, reports
from pgfs.store.mariadb.catalog import Catalog
from pgfs.store.mariadb.connection import (
    DRIVER,
    WRITE_READ_TIMEOUT,
    Deadline,
    ReadPool,
    close_quietly,
    connect,
    is_connection_error,
    is_usable,
)
from pgfs.store.mariadb.lease import Lease
from pgfs.store.mariadb.writer import FenceError, Writer
from pgfs.store.server import BULK_WRITE_DEADLINE, ServerStore

log = logging.getLogger("pgfs.store")

SMALL_PART_ROWS = 1_000
SIDE_LOCK_WAIT = 5
"""Seconds the DDL connection waits for a table's metadata lock."""


class MariaDBStore(ServerStore):
    """A SQLite database kept in MariaDB (README Design). Create with `connect`."""

    driver = DRIVER
    reads = reads
    reports = reports

    def __init__(self, url: str, catalog: Catalog, pool: ReadPool) -> None:
        super().__init__(url, catalog, pool, Lease(url, catalog))
        self._side: mariadb.Connection | None = None
        self._recover = True
        """Whether DDL may be owed or work tables left over (checked before a write)."""

    @classmethod
    def connect(
        cls, url: str, *, meta_schema: str = "pgfs", data_schema: str = "jellyfin"
    ) -> MariaDBStore:
        """Open the read pool; StoreUnavailableError (no password) when MariaDB cannot be
        reached."""
        Catalog.check_names(meta_schema, data_schema)
        pool = ReadPool(url)
        pool.open()
        return cls(url, Catalog(meta_schema, data_schema), pool)

    def close(self) -> None:
        super().close()
        close_quietly(self._side)
        self._side = None

    @property
    def target(self) -> str:
        return f"MariaDB {super().target}"

    # ------------------------------------------------------------------ the backend's part

    def _connect(self, timeout: float | None = None) -> mariadb.Connection:
        return connect(self.dsn, timeout=timeout)

    def _is_small(self, part: Changeset) -> bool:
        if part.schema_entries is not None or not part.schema.is_empty():
            return False
        rows = sum(len(r.inserted) + len(r.updated) + len(r.deleted) for r in part.rows.values())
        return rows <= SMALL_PART_ROWS and len(part.pages) <= SMALL_PART_ROWS

    def is_empty(self) -> bool:
        def work(conn: mariadb.Connection) -> bool:
            if not self.catalog.initialised(conn):
                return True
            cur = conn.cursor()
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {self.catalog.meta('pages')})")
            return not cur.fetchone()[0]

        return self._read("checking whether the store is empty", work)

    def acquire_lease(self, holder: LeaseHolder, *, takeover: bool = False) -> LeaseStatus:
        status = self._lease.acquire(holder, takeover=takeover)
        with self._write_lock:  # what a previous writer left is now ours to finish
            self._run_recovery()
        self.load_state()
        return status

    def _read(self, doing, work):
        """A read; first, when a committed write still owes renames and this store holds
        the lease, it finishes them (the rows the read wants may be in a work table)."""
        if self._recover and self._lease.status().held:
            with self._write_lock:
                if self._recover:
                    try:
                        self._run_recovery()
                    except StoreError as exc:
                        log.warning("owed table renames still wait: %s", exc)
        return super()._read(doing, work)

    # ------------------------------------------------------------------ writes

    def _before_write(self) -> None:
        if self._recover:
            self._run_recovery()

    def _after_write(self, writer: Writer) -> None:
        self._finish_ddl(writer)

    def _run_recovery(self) -> None:
        try:
            conn = self._writer_connection()
            with Deadline(conn, BULK_WRITE_DEADLINE):
                self.catalog.recover(conn)
        except mariadb.Error as exc:
            raise self._translate(exc, "finishing the DDL of an earlier write") from exc
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
                self._translate(exc, "renaming tables"),
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

    def _new_writer(
        self,
        conn: mariadb.Connection,
        context: WriteContext,
        tables: dict[str, TableDefinition],
        small: bool,
    ) -> Writer:
        return Writer(conn, self._side_connection, context, tables)

    def _after_failure(
        self, conn: mariadb.Connection, exc: Exception, writer: Writer, session: int, expired: bool
    ) -> None:
        try:
            super()._after_failure(conn, exc, writer, session, expired)
        except CommitOutcomeUnknownError:
            self._recover = True  # its work tables may be owed a rename
            raise
        except BaseException:
            # Rolled back (or its connection is gone): the tables it made are nobody's.
            self._drop_work_tables(writer.created)
            raise

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

    def _connect_writer(self, timeout: float | None) -> mariadb.Connection:
        return connect(self.dsn, timeout=timeout, read_timeout=WRITE_READ_TIMEOUT)

    def _fence_message(self, exc: BaseException) -> str | None:
        return str(exc) if isinstance(exc, FenceError) else None

    def _lost_connection(self, conn: mariadb.Connection, exc: BaseException) -> bool:
        return is_connection_error(exc)

    def _discard_transaction(self, conn: mariadb.Connection) -> None:
        try:
            conn.rollback()
        except mariadb.Error:
            close_quietly(conn)
            self._writer = None

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
