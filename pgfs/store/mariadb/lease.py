"""The writer lease on MariaDB: `GET_LOCK()` on a dedicated connection, plus the fencing
epoch in `meta.lease_epoch` (README "One writer per store").

- a writer takes the named lock (which lives as long as its connection) and
  bumps the epoch; a second writer is refused while the holder's connection
  lives, with the holder's host, pid, mount point and start time;
- `takeover` bumps the epoch first (its UPDATE waits for a commit in flight,
  which holds a share lock on the epoch row), then kills the holder's lease
  connection and takes the lock: from that moment the old holder's writes fail;
- a holder whose lease connection dropped takes the lock again before its
  next write; if the epoch moved meanwhile, it has lost the lease for good.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import asdict

import mariadb

from pgfs.store.errors import LeaseHeldError, LeaseLostError, StoreError
from pgfs.store.interface import LeaseHolder, LeaseStatus
from pgfs.store.mariadb.catalog import Catalog
from pgfs.store.mariadb.connection import (
    Deadline,
    close_quietly,
    connect,
    errno_of,
    is_connection_error,
    is_usable,
    translate,
)

log = logging.getLogger("pgfs.store")

LEASE_WAIT = 10
"""Seconds a takeover waits for the old holder's lock (and a commit in flight) to go."""
STATEMENT_DEADLINE = 10.0
NO_SUCH_TABLE = 1146


class Lease:
    """The lease of one store, as one process holds it. Thread-safe."""

    def __init__(self, url: str, catalog: Catalog) -> None:
        self.url = url
        self.catalog = catalog
        self._lock = threading.Lock()
        self._conn: mariadb.Connection | None = None
        self._holder: LeaseHolder | None = None
        self._epoch: int | None = None
        self._lost: str | None = None
        self.reacquired = 0

    def status(self) -> LeaseStatus:
        return LeaseStatus(
            held=self._epoch is not None and self._lost is None,
            epoch=self._epoch,
            holder=self._holder,
            reacquired=self.reacquired,
            lost_reason=self._lost,
        )

    # ------------------------------------------------------------------ taking it

    def acquire(self, holder: LeaseHolder, *, takeover: bool = False) -> LeaseStatus:
        with self._lock:
            if self._epoch is not None and self._lost is None:
                return self.status()
            conn = connect(self.url)
            try:
                with Deadline(conn, LEASE_WAIT * 2 + STATEMENT_DEADLINE):
                    epoch = self._take(conn, holder, takeover)
            except BaseException as exc:
                close_quietly(conn)
                if isinstance(exc, Exception):
                    raise translate(exc, "taking the writer lease", self.url) from exc
                raise
            self._conn, self._holder, self._epoch, self._lost = conn, holder, epoch, None
            log.info("writer lease taken: epoch %d (%s)", epoch, holder.describe())
            return self.status()

    def _take(self, conn: mariadb.Connection, holder: LeaseHolder, takeover: bool) -> int:
        cur = conn.cursor()
        name = self.catalog.lock_name
        cur.execute("SELECT GET_LOCK(?, 0)", (name,))
        row = cur.fetchone()
        if row and row[0] == 1:
            return self._bump(conn, holder)
        current = _read_holder(conn, self.catalog)
        if not takeover:
            who = current.describe() if current else "another process"
            raise LeaseHeldError(
                f"the store ({self.catalog.meta_schema}) is in use by {who}; a second "
                "writer would corrupt it. Stop that mount first, or use --takeover if it is "
                "gone or cut off (it will then fail its writes)"
            )
        epoch = self._bump(conn, holder)
        cur.execute("SELECT IS_USED_LOCK(?)", (name,))
        row = cur.fetchone()
        if row and row[0] is not None:
            log.warning("takeover: ending the old writer's lease connection (%d)", row[0])
            with contextlib.suppress(mariadb.Error):
                cur.execute(f"KILL CONNECTION {int(row[0])}")
        cur.execute("SELECT GET_LOCK(?, ?)", (name, LEASE_WAIT))
        row = cur.fetchone()
        if not (row and row[0] == 1):
            raise LeaseHeldError(
                "takeover: the old writer did not let go of the lease within "
                f"{LEASE_WAIT} s (another takeover?)"
            )
        log.warning(
            "took the writer lease over from %s",
            current.describe() if current else "an unknown writer",
        )
        return epoch

    def _bump(self, conn: mariadb.Connection, holder: LeaseHolder) -> int:
        """A new epoch and this holder, in one transaction (waits for a fenced commit)."""
        meta = self.catalog.meta("meta")
        cur = conn.cursor()
        cur.execute(f"SET SESSION innodb_lock_wait_timeout = {LEASE_WAIT}")
        conn.begin()
        try:
            cur.execute(
                f"UPDATE {meta} SET value = CAST(COALESCE(value, '0') AS SIGNED) + 1"
                " WHERE `key` = 'lease_epoch'"
            )
            if cur.rowcount != 1:
                raise StoreError("the store is not initialised (no lease epoch)")
            cur.execute(f"SELECT value FROM {meta} WHERE `key` = 'lease_epoch'")
            epoch = int(cur.fetchone()[0])
            cur.execute(
                f"INSERT INTO {meta} (`key`, value) VALUES ('lease_holder', ?)"
                " ON DUPLICATE KEY UPDATE value = VALUES(value)",
                (json.dumps(asdict(holder)),),
            )
            conn.commit()
        except BaseException:
            with contextlib.suppress(mariadb.Error):
                conn.rollback()
            raise
        return epoch

    # ------------------------------------------------------------------ keeping it

    def epoch_for_write(self) -> int:
        """The epoch a write must carry; re-takes the lock if its connection dropped."""
        with self._lock:
            if self._lost is not None:
                raise LeaseLostError(self._lost)
            if self._epoch is None or self._holder is None:
                raise StoreError("internal error: writing without the writer lease")
            if not is_usable(self._conn):
                self._retake()
            return self._epoch

    def check(self) -> None:
        """Probe the lease connection (called now and then): notice a dropped one."""
        with self._lock:
            conn = self._conn
            if conn is None or self._lost is not None:
                return
            try:
                with Deadline(conn, STATEMENT_DEADLINE):
                    conn.cursor().execute("SELECT 1")
            except mariadb.Error as exc:
                if is_connection_error(exc):
                    log.warning("the writer lease's connection dropped: %s", exc)
                    close_quietly(conn)
                    self._conn = None

    def _retake(self) -> None:
        assert self._holder is not None and self._epoch is not None
        close_quietly(self._conn)
        self._conn = None
        conn = connect(self.url)
        try:
            with Deadline(conn, STATEMENT_DEADLINE):
                cur = conn.cursor()
                cur.execute("SELECT GET_LOCK(?, 0)", (self.catalog.lock_name,))
                row = cur.fetchone()
                epoch = _read_epoch(conn, self.catalog)
                holder = _read_holder(conn, self.catalog)
        except mariadb.Error as exc:
            close_quietly(conn)
            raise translate(exc, "taking the writer lease again", self.url) from exc
        if not (row and row[0] == 1) or epoch != self._epoch:
            close_quietly(conn)
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
                with contextlib.suppress(mariadb.Error):
                    conn.cursor().execute("SELECT RELEASE_ALL_LOCKS()")
                close_quietly(conn)


def _read_epoch(conn: mariadb.Connection, catalog: Catalog) -> int | None:
    cur = conn.cursor()
    cur.execute(f"SELECT value FROM {catalog.meta('meta')} WHERE `key` = 'lease_epoch'")
    row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _read_holder(conn: mariadb.Connection, catalog: Catalog) -> LeaseHolder | None:
    cur = conn.cursor()
    try:
        cur.execute(f"SELECT value FROM {catalog.meta('meta')} WHERE `key` = 'lease_holder'")
    except mariadb.Error as exc:
        if errno_of(exc) == NO_SUCH_TABLE:
            return None
        raise
    row = cur.fetchone()
    if not row or not row[0]:
        return None
    try:
        return LeaseHolder(**json.loads(row[0]))
    except (TypeError, ValueError):
        return None
