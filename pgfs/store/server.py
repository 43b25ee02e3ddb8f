"""What every server backend's store does the same way: `ServerStore`.

A backend (`pgfs.store.postgres.PostgresStore`, `pgfs.store.mariadb.MariaDBStore`)
supplies its driver (`pgfs.store.driver`), its connections, its reads and reports
modules, its catalog, its lease and its writer; this class keeps the rest: reads
on a pool with one retry, the lease, the write loop (one retry of a small write
on a new connection), the writer's connection, failing fast while the server is
down, and resolving a write whose COMMIT was sent but not answered.

A write whose connection is lost after COMMIT was sent is resolved before the
caller hears anything: the old session is ended (so nothing of the transaction
can still commit), and the commit log is asked for the write's id. Only when
the server cannot be asked within the bound is the outcome unknown
(CommitOutcomeUnknownError); `commit_landed` answers later.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, TypeVar

from pgfs.store.changeset import Changeset, CommitSource, PageRecord
from pgfs.store.commit import WriteContext, WriterFrame
from pgfs.store.driver import ServerDriver
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
from pgfs.store.stored import rowid_layout

log = logging.getLogger("pgfs.store")

ANSWER_BOUND = 22.0
"""A write's outcome is known (committed, failed, or unknown) within this many
seconds of its start: inside Jellyfin's 30 s command timeout."""
MIN_RESOLVE = 3.0
QUICK_TRY = 1.0
"""While the server is known to be down (the last attempt found no answer), a call
tries once, this long, instead of waiting the whole bound again: one bounded wait per
failure, and back within about a second of the server's return."""
HEALTH_DEADLINE = 3.0
SMALL_WRITE_DEADLINE = 15.0
"""Seconds a small write (see `_is_small`) may take before its connection is cut."""
BULK_WRITE_DEADLINE = 3600.0
"""The same for any other write (an import, a VACUUM); keepalives catch partitions."""

T = TypeVar("T")


class NotLanded(Exception):
    """A write whose connection was lost, known not to be in the store."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


class ServerStore:
    """The backend-neutral half of a server store (see module docstring)."""

    driver: ServerDriver
    reads: ModuleType
    """page_records, pages_of, leaf_rows_of, row_payloads, overflow_chains, table_rows."""
    reports: ModuleType
    """inspect(conn, catalog)."""

    def __init__(self, dsn: str, catalog: Any, pool: Any, lease: Any) -> None:
        self.dsn = dsn
        self.catalog = catalog
        self._pool = pool
        self._lease = lease
        self._state: StoreState | None = None
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: Any = None
        self._unresolved: dict[uuid.UUID, int | None] = {}
        self._down_since: float | None = None

    # ------------------------------------------------------------------ the backend's part

    def _connect(self, timeout: float | None = None) -> Any:
        """A new autocommit connection (StoreUnavailableError when it fails)."""
        raise NotImplementedError

    def _is_small(self, part: Changeset) -> bool:
        raise NotImplementedError

    def _connect_writer(self, timeout: float | None) -> Any:
        """A new connection for writes (StoreUnavailableError when it fails)."""
        raise NotImplementedError

    def _new_writer(
        self, conn: Any, context: WriteContext, tables: dict[str, Any], small: bool
    ) -> WriterFrame:
        """The writer of one write on `conn` (`small`: see `_is_small`)."""
        raise NotImplementedError

    def _batch(self, conn: Any, writer: WriterFrame, small: bool) -> AbstractContextManager:
        """What the write's statements are sent inside; one that may deliver the COMMIT
        before its end sets `writer.sent` first."""
        return contextlib.nullcontext()

    def _ask(self, conn: Any, commit_id: uuid.UUID, session: int | None, until: float) -> bool:
        """End session `session` (the one that sent the COMMIT) and wait for it to go, then
        whether the commit log holds `commit_id`."""
        raise NotImplementedError

    def _fence_message(self, exc: BaseException) -> str | None:
        """The fence's message when `exc` says this writer lost the lease, else None."""
        raise NotImplementedError

    def _lost_connection(self, conn: Any, exc: BaseException) -> bool:
        """Whether `exc` (or the state of `conn`) means the writer's connection is gone."""
        raise NotImplementedError

    def _discard_transaction(self, conn: Any) -> None:
        """Roll back a failed write on a connection that is still alive."""
        raise NotImplementedError

    def _before_write(self) -> None:
        """Called under the write lock before each write."""

    def _after_write(self, writer: WriterFrame) -> None:
        """Called under the write lock after a write committed."""

    def _table_rows(self, conn: Any, definition: Any, state: StoreState) -> Iterator:
        yield from self.reads.table_rows(
            conn, self.catalog, definition, state.encoding, state.schema_format
        )

    # ------------------------------------------------------------------ plumbing

    @property
    def server(self) -> str:
        """The server's name in messages."""
        return self.driver.server

    def _translate(self, exc: BaseException, doing: str) -> StoreError:
        return self.driver.translate(exc, doing, self.dsn)

    def close(self) -> None:
        self._lease.release()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self._pool.close()

    def __enter__(self):
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

    def _read(self, doing: str, work: Callable[[Any], T]) -> T:
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
                error = self._translate(exc, doing)
                if isinstance(error, StoreUnavailableError):
                    self._pool.mark_down()
                    if attempt == 0:
                        continue
                raise error from exc
        raise AssertionError("unreachable")

    def _current(self) -> StoreState:
        state = self._state
        return state if state is not None else self.load_state()

    # ------------------------------------------------------------------ state and reads

    def initialise(self) -> None:
        self._read("initialising the store", self.catalog.initialise)

    def load_state(self) -> StoreState:
        state = self._read("loading the store state", self.catalog.load_state)
        with self._state_lock:
            self._state = state
        return state

    def page_records(self, pgnos: Iterable[int]) -> dict[int, PageRecord]:
        wanted = list(pgnos)
        if not wanted:
            return {}
        return self._read(
            "reading page records", lambda conn: self.reads.page_records(conn, self.catalog, wanted)
        )

    def pages_of(self, owner: str) -> list[PageRecord]:
        return self._read(
            f"reading the pages of {owner!r}",
            lambda conn: self.reads.pages_of(conn, self.catalog, owner),
        )

    def leaf_rows(self, table: str, ranges: list[tuple[int, int]]) -> list[LeafRow]:
        return self.leaf_rows_of({table: ranges})[table]

    def leaf_rows_of(
        self, requests: Mapping[str, list[tuple[int, int]]]
    ) -> dict[str, list[LeafRow]]:
        state = self._current()
        wanted = [(rowid_layout(state.tables, t), r) for t, r in requests.items()]
        found = self._read(
            f"reading rows of {', '.join(repr(t) for t in requests)}",
            lambda conn: self.reads.leaf_rows_of(
                conn, self.catalog, wanted, state.encoding, state.schema_format
            ),
        )
        return {table: found.get(table, []) for table in requests}

    def row_payloads(self, table: str, rowids: Iterable[int]) -> dict[int, bytes]:
        wanted = list(rowids)
        if not wanted:
            return {}
        state = self._current()
        layout = rowid_layout(state.tables, table)
        return self._read(
            f"reading rows of {table!r}",
            lambda conn: self.reads.row_payloads(
                conn, self.catalog, layout, wanted, state.encoding, state.schema_format
            ),
        )

    def overflow_chains(self, table: str, rowids: Iterable[int]) -> dict[int, list[int]]:
        wanted = list(rowids)
        if not wanted:
            return {}
        return self._read(
            f"reading overflow chains of {table!r}",
            lambda conn: self.reads.overflow_chains(conn, self.catalog, table, wanted),
        )

    def table_rows(self, table: str) -> Iterator[tuple[int, bytes]]:
        state = self._current()
        definition = state.tables.get(table)
        if definition is None:
            raise StoreError(f"table {table!r} keeps no rows in the store")
        try:
            with self._pool.connection() as conn:
                yield from self._table_rows(conn, definition, state)
        except (self.driver.error, StoreError) as exc:
            raise self._translate(exc, f"reading rows of {table!r}") from exc

    def inspect(self) -> dict[str, object]:
        def work(conn: Any) -> dict[str, object]:
            report: dict[str, object] = {
                "server": describe_target(self.dsn),
                "meta_schema": self.catalog.meta_schema,
                "data_schema": self.catalog.data_schema,
                "initialised": self.catalog.initialised(conn),
            }
            if not report["initialised"]:
                return report
            return report | self.reports.inspect(conn, self.catalog)

        return self._read("inspecting the store", work)

    def health(self) -> Health:
        started = time.monotonic()
        try:
            conn = self._connect(HEALTH_DEADLINE)
            try:
                with self.driver.deadline(conn, HEALTH_DEADLINE):
                    self.driver.ping(conn)
            finally:
                conn.close()
        except (StoreError, self.driver.error) as exc:
            detail = str(self._translate(exc, "checking health"))
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
        small = second is None and not clear and self._is_small(first)
        rest = itertools.chain(() if second is None else (second,), iterator)
        with self._write_lock:
            self._before_write()
            state = self._current()
            context = WriteContext(
                self.catalog, commit_id, epoch, state.commit_seq + 1, str(source), started
            )
            for attempt in (0, 1):
                try:
                    writer = self._attempt(context, state, first, rest, small, clear)
                    break
                except NotLanded as failure:
                    # Nothing of it is in the store and SQLite has no answer yet: a small
                    # write goes again once, on a new connection (the old one was stale,
                    # e.g. the server restarted while it sat idle).
                    if attempt == 1 or not small or self._down_since is not None:
                        raise failure.error from failure
                    log.info("writing commit %s again on a new connection", commit_id)
            self._state = state.advanced_by(
                writer.final_part(), writer.entries, writer.tables, context.seq
            )
            self._after_write(writer)
        stats = writer.stats
        stats.ms = (time.perf_counter() - started) * 1000
        return stats

    def _attempt(
        self,
        context: WriteContext,
        state: StoreState,
        first: Changeset,
        rest: Iterator[Changeset],
        small: bool,
        clear: bool,
    ) -> WriterFrame:
        """One try at one write: its writer once committed, else NotLanded or a StoreError."""
        conn = self._writer_connection()
        session = self.driver.session_of(conn)
        writer = self._new_writer(conn, context, state.tables, small)
        deadline = self.driver.deadline(
            conn, SMALL_WRITE_DEADLINE if small else BULK_WRITE_DEADLINE
        )
        try:
            with deadline, self._batch(conn, writer, small):
                self.driver.begin(conn)
                writer.apply_all(first, rest, clear)
                writer.sent = True
                self.driver.commit(conn)
        except Exception as exc:
            self._after_failure(conn, exc, writer, session, deadline.expired)
        return writer

    def _writer_connection(self) -> Any:
        """The connection writes go through: the one kept while it is quiet, else a new
        one (one quick try while the server is known to be down)."""
        conn = self._writer
        if conn is None or not self.driver.is_quiet(conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._writer = None
            timeout = QUICK_TRY if self._down_since is not None else None
            try:
                conn = self._writer = self._connect_writer(timeout)
            except StoreUnavailableError:
                self._mark_down()
                raise
            self._mark_up()
        return conn

    def _mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s does not answer: failing fast until it does", self.server)

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning(
                "%s answers again after %.1f s", self.server, time.monotonic() - self._down_since
            )
            self._down_since = None

    def _after_failure(
        self, conn: Any, exc: Exception, writer: WriterFrame, session: int, expired: bool
    ) -> None:
        """Raise what the failed write means; return only when it landed after all.

        A refused fence loses the lease; an error on a live connection rolls back; a
        lost connection before COMMIT was sent is NotLanded; after it, the server is
        asked (`_resolve`)."""
        fence = self._fence_message(exc)
        if fence is not None:
            self._discard_transaction(conn)
            self._lease.mark_lost(f"{fence}; this mount refuses every write. Remount to serve")
            raise LeaseLostError(fence) from exc
        error = self._translate(exc, "committing")
        if not (expired or self._lost_connection(conn, exc)):
            self._discard_transaction(conn)
            raise error from exc
        with contextlib.suppress(Exception):
            conn.close()
        self._writer = None
        if not writer.sent:
            raise NotLanded(error) from exc
        commit_id, started = writer.context.commit_id, writer.context.started
        log.warning("the connection was lost after COMMIT was sent: asking the server (%s)", error)
        if self._resolve(commit_id, session, started + ANSWER_BOUND):
            log.warning("commit %s did land: answering success", commit_id)
            return
        raise NotLanded(StoreUnavailableError(f"{error} (the commit did not land)")) from exc

    def _resolve(self, commit_id: uuid.UUID, session: int | None, until: float) -> bool:
        """Whether the write `commit_id` landed, once no transaction of `session` can still
        end; CommitOutcomeUnknownError when the server cannot be asked by `until`."""
        if self._down_since is not None:
            until = time.perf_counter() + QUICK_TRY
        else:
            until = max(until, time.perf_counter() + MIN_RESOLVE)
        last: Exception | None = None
        while time.perf_counter() < until:
            try:
                conn = self._connect(max(0.5, until - time.perf_counter()))
            except StoreUnavailableError as exc:
                last = exc
                time.sleep(0.2)
                continue
            try:
                with self.driver.deadline(conn, max(0.5, until - time.perf_counter())):
                    landed = self._ask(conn, commit_id, session, until)
                self._unresolved.pop(commit_id, None)
                self._mark_up()
                return landed
            except self.driver.error as exc:
                last = exc
                time.sleep(0.2)
            finally:
                conn.close()
        self._unresolved[commit_id] = session
        self._mark_down()
        raise CommitOutcomeUnknownError(
            f"the connection to {self.server} was lost after commit {commit_id} was sent, and "
            f"{self.server} could not be asked whether it landed ({last})",
            commit_id,
        )

    def commit_landed(self, commit_id: uuid.UUID) -> bool:
        session = self._unresolved.get(commit_id)
        return self._resolve(commit_id, session, time.perf_counter() + ANSWER_BOUND)
