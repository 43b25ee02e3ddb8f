"""The writer lease: one writer per store, fenced (README "One writer per store").

A writer (a mount, an import) holds a session-level advisory lock on a
dedicated connection, and a fencing epoch in `meta.lease_epoch` that it bumped
when it took the lease. Every write checks the epoch inside its own
transaction (`fence`), so:

- a second writer is refused while the holder's session lives, with the
  holder's host, pid, mount point and start time (`meta.lease_holder`);
- `takeover` bumps the epoch first (waiting for a commit in flight, which
  holds a share lock on the epoch row), then ends the holder's lease session
  and takes the lock: from that moment the old holder's writes fail;
- a holder whose lease connection dropped takes the lock again before its
  next write; if another writer took the lease meanwhile (the epoch moved),
  it has lost it for good, and says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import asdict

import psycopg
from psycopg import sql

from pgfs.store.errors import LeaseHeldError, LeaseLostError, StoreError
from pgfs.store.interface import LeaseHolder, LeaseStatus
from pgfs.store.postgres.catalog import Catalog
from pgfs.store.postgres.connection import (
    Deadline,
    connect,
    has_news,
    is_connection_error,
    translate,
)

log = logging.getLogger("pgfs.store")

LEASE_WAIT = 10.0
"""How long a takeover waits for the old holder's lock to go."""
STATEMENT_DEADLINE = 10.0


class Lease:
    """The lease of one store, as one process holds it. Thread-safe."""

    def __init__(self, dsn: str, catalog: Catalog) -> None:
        self.dsn = dsn
        self.catalog = catalog
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._holder: LeaseHolder | None = None
        self._epoch: int | None = None
        self._lost: str | None = None
        self.reacquired = 0

    # ------------------------------------------------------------------ status

    def status(self) -> LeaseStatus:
        return LeaseStatus(
            held=self._epoch is not None and self._lost is None,
            epoch=self._epoch,
            holder=self._holder,
            reacquired=self.reacquired,
            lost_reason=self._lost,
        )

    def holder_of_record(self) -> LeaseHolder | None:
        """Who `meta.lease_holder` says holds the lease (maybe a dead process)."""
        conn = connect(self.dsn)
        try:
            return _read_holder(conn, self.catalog)
        finally:
            conn.close()

    # ------------------------------------------------------------------ taking it

    def acquire(self, holder: LeaseHolder, *, takeover: bool = False) -> LeaseStatus:
        with self._lock:
            if self._epoch is not None and self._lost is None:
                return self.status()
            conn = connect(self.dsn, role="lease")
            try:
                with Deadline(conn, LEASE_WAIT + STATEMENT_DEADLINE):
                    epoch = self._take(conn, holder, takeover)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, Exception):
                    raise translate(exc, "taking the writer lease", self.dsn) from exc
                raise
            self._conn, self._holder, self._epoch, self._lost = conn, holder, epoch, None
            log.info("writer lease taken: epoch %d (%s)", epoch, holder.describe())
            return self.status()

    def _take(self, conn: psycopg.Connection, holder: LeaseHolder, takeover: bool) -> int:
        key = self.catalog.lock_key
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            return self._bump(conn, holder)
        current = _read_holder(conn, self.catalog)
        if not takeover:
            who = current.describe() if current else "another process"
            raise LeaseHeldError(
                f"the store ({self.catalog.meta_schema}) is in use by {who}; a second "
                "writer would corrupt it. Stop that mount first, or use --takeover if it is "
                "gone or cut off (it will then fail its writes)"
            )
        epoch = self._bump(conn, holder, locked=False)
        for pid in _lock_holders(conn, key):
            log.warning("takeover: ending the old writer's lease session (backend %d)", pid)
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false)", (f"{int(LEASE_WAIT * 1000)}ms",)
        )
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            raise LeaseHeldError(
                "takeover: the old writer did not let go of the lease within "
                f"{LEASE_WAIT:.0f} s (another takeover?)"
            ) from None
        finally:
            conn.execute("RESET lock_timeout")
        log.warning(
            "took the writer lease over from %s",
            current.describe() if current else "an unknown writer",
        )
        return epoch

    def _bump(self, conn: psycopg.Connection, holder: LeaseHolder, *, locked: bool = True) -> int:
        """A new epoch and this holder, in one transaction (waits for a fenced commit)."""
        meta = self.catalog.meta("meta")
        with conn.transaction():
            row = conn.execute(
                sql.SQL(
                    "UPDATE {} SET value = (coalesce(value, '0')::bigint + 1)::text"
                    " WHERE key = 'lease_epoch' RETURNING value::bigint"
                ).format(meta)
            ).fetchone()
            if row is None:
                raise StoreError("the store is not initialised (no lease epoch)")
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key, value) VALUES ('lease_holder', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ).format(meta),
                (json.dumps(asdict(holder)),),
            )
        return int(row[0])

    # ------------------------------------------------------------------ keeping it

    def epoch_for_write(self) -> int:
        """The epoch a write must carry; re-takes the lock if its connection dropped.

        LeaseLostError when another writer took over, StoreError when no lease
        was taken, StoreUnavailableError when the server cannot be reached.
        """
        with self._lock:
            if self._lost is not None:
                raise LeaseLostError(self._lost)
            if self._epoch is None or self._holder is None:
                raise StoreError("internal error: writing without the writer lease")
            if self._conn is None or self._conn.closed or self._conn.broken or has_news(self._conn):
                self._probe_or_retake()
            return self._epoch

    def _probe_or_retake(self) -> None:
        """The lease connection has something to say (an idle one never does: a server
        that ends it says so first): see whether it still holds the lock."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            try:
                with Deadline(conn, STATEMENT_DEADLINE):
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                log.warning("the writer lease's connection dropped: %s", exc)
        self._retake()

    def check(self) -> None:
        """Probe the lease connection (called now and then): notice a dropped one."""
        with self._lock:
            conn = self._conn
            if conn is None or self._lost is not None:
                return
            try:
                with Deadline(conn, STATEMENT_DEADLINE):
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                if is_connection_error(exc):
                    log.warning("the writer lease's connection dropped: %s", exc)
                    conn.close()

    def _retake(self) -> None:
        assert self._holder is not None and self._epoch is not None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        conn = connect(self.dsn, role="lease")
        try:
            with Deadline(conn, STATEMENT_DEADLINE):
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self.catalog.lock_key,)
                ).fetchone()
                epoch = _read_epoch(conn, self.catalog)
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc, "taking the writer lease again", self.dsn) from exc
        if not (row and row[0]) or epoch != self._epoch:
            holder = _read_holder(conn, self.catalog)
            conn.close()
            who = holder.describe() if holder else "another writer"
            self._lost = (
                f"this mount lost the writer lease to {who} (epoch {self._epoch} -> {epoch}); "
                "it refuses every write. Remount to serve again"
            )
            log.error("%s", self._lost)
            raise LeaseLostError(self._lost)
        self._conn = conn
        self.reacquired += 1
        log.warning("writer lease taken again after its connection dropped (epoch %d)", epoch)

    def mark_lost(self, reason: str) -> None:
        """A write was refused by the fence: another writer has the lease."""
        with self._lock:
            if self._lost is None:
                self._lost = reason
                log.error("%s", reason)

    def release(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._epoch = None
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock_all()")
                conn.close()


def _read_epoch(conn: psycopg.Connection, catalog: Catalog) -> int | None:
    row = conn.execute(
        sql.SQL("SELECT value FROM {} WHERE key = 'lease_epoch'").format(catalog.meta("meta"))
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _read_holder(conn: psycopg.Connection, catalog: Catalog) -> LeaseHolder | None:
    try:
        row = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'lease_holder'").format(catalog.meta("meta"))
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    if not row or not row[0]:
        return None
    try:
        return LeaseHolder(**json.loads(row[0]))
    except (TypeError, ValueError):
        return None


def _lock_holders(conn: psycopg.Connection, key: int) -> list[int]:
    """Backends holding the lease's advisory lock (bigint keys: classid high, objid low)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1"
        " AND pid <> pg_backend_pid()",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchall()
    return [r[0] for r in rows]
