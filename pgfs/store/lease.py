"""The writer lease, whatever the backend (README "One writer per store").

A writer (a mount, an import) holds a server lock that lives as long as a
dedicated connection, and a fencing epoch in `meta.lease_epoch` that it bumped
when it took the lease. Every write checks the epoch inside its own
transaction (the fence), so:

- a second writer is refused while the holder's connection lives, with the
  holder's host, pid, mount point and start time (`meta.lease_holder`);
- `takeover` bumps the epoch first (waiting for a commit in flight, which
  holds a share lock on the epoch row), then ends the holder's lease session
  and takes the lock: from that moment the old holder's writes fail;
- a holder whose lease connection dropped takes the lock again before its
  next write; if another writer took the lease meanwhile (the epoch moved),
  it has lost it for good, and says so.

`LeaseBase` keeps that logic; a backend supplies the lock, the epoch bump and
its connections.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from pgfs.store.driver import ServerDriver
from pgfs.store.errors import LeaseHeldError, LeaseLostError, StoreError
from pgfs.store.interface import LeaseHolder, LeaseStatus

log = logging.getLogger("pgfs.store")

LEASE_WAIT = 10
"""Seconds a takeover waits for the old holder's lock (and a commit in flight) to go."""
STATEMENT_DEADLINE = 10.0


def held_by_another(store: str, current: LeaseHolder | None) -> LeaseHeldError:
    who = current.describe() if current else "another process"
    return LeaseHeldError(
        f"the store ({store}) is in use by {who}; a second writer would corrupt it. Stop "
        "that mount first, or use --takeover if it is gone or cut off (it will then fail "
        "its writes)"
    )


class LeaseBase:
    """The lease of one store, as one process holds it. Thread-safe."""

    driver: ServerDriver
    acquire_bound = LEASE_WAIT + STATEMENT_DEADLINE
    """Seconds taking the lease may take (a takeover waits up to LEASE_WAIT)."""

    def __init__(self, dsn: str, catalog: Any) -> None:
        self.dsn = dsn
        self.catalog = catalog
        self._lock = threading.Lock()
        self._conn: Any = None
        self._holder: LeaseHolder | None = None
        self._epoch: int | None = None
        self._lost: str | None = None
        self.reacquired = 0

    # ------------------------------------------------------------------ the backend's part

    def _connect(self) -> Any:
        raise NotImplementedError

    def _bump(self, conn: Any, holder: LeaseHolder) -> int:
        """A new epoch and this holder, in one transaction (it waits for a fenced commit in
        flight); the new epoch."""
        raise NotImplementedError

    def _end_holder_session(self, conn: Any) -> None:
        """End the session that holds the lock (a takeover's)."""
        raise NotImplementedError

    def _wait_for_lock(self, conn: Any) -> bool:
        """Take the lock, waiting up to LEASE_WAIT seconds; whether it was taken."""
        raise NotImplementedError

    def _try_lock(self, conn: Any) -> bool:
        raise NotImplementedError

    def _unlock(self, conn: Any) -> None:
        raise NotImplementedError

    def _read_epoch(self, conn: Any) -> int | None:
        raise NotImplementedError

    def _read_holder(self, conn: Any) -> LeaseHolder | None:
        raise NotImplementedError

    # ------------------------------------------------------------------ status

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
            conn = self._connect()
            try:
                with self.driver.deadline(conn, self.acquire_bound):
                    epoch = self._take(conn, holder, takeover)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, Exception):
                    raise self.driver.translate(exc, "taking the writer lease", self.dsn) from exc
                raise
            self._conn, self._holder, self._epoch, self._lost = conn, holder, epoch, None
            log.info("writer lease taken: epoch %d (%s)", epoch, holder.describe())
            return self.status()

    def _take(self, conn: Any, holder: LeaseHolder, takeover: bool) -> int:
        """Take the lock and bump the epoch. With `takeover`, a lock held elsewhere is
        taken over: the epoch moves first (fencing the holder's writes, after its commit
        in flight), then the holder's session is ended and its lock awaited."""
        if self._try_lock(conn):
            return self._bump(conn, holder)
        current = self._read_holder(conn)
        if not takeover:
            raise held_by_another(self.catalog.meta_schema, current)
        epoch = self._bump(conn, holder)
        self._end_holder_session(conn)
        if not self._wait_for_lock(conn):
            raise LeaseHeldError(
                "takeover: the old writer did not let go of the lease within "
                f"{LEASE_WAIT:.0f} s (another takeover?)"
            )
        log.warning(
            "took the writer lease over from %s",
            current.describe() if current else "an unknown writer",
        )
        return epoch

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
            if self._conn is None or not self.driver.is_quiet(self._conn):
                self._probe_or_retake()
            return self._epoch

    def _probe_or_retake(self) -> None:
        """See whether a lease connection that has something to say still holds the lock."""
        conn = self._conn
        if conn is not None:
            try:
                with self.driver.deadline(conn, STATEMENT_DEADLINE):
                    self.driver.ping(conn)
                return
            except Exception as exc:
                log.warning("the writer lease's connection dropped: %s", exc)
        self._retake()

    def check(self) -> None:
        """Probe the lease connection (called now and then): notice a dropped one."""
        with self._lock:
            conn = self._conn
            if conn is None or self._lost is not None:
                return
            try:
                with self.driver.deadline(conn, STATEMENT_DEADLINE):
                    self.driver.ping(conn)
            except self.driver.error as exc:
                if self.driver.is_connection_error(exc):
                    log.warning("the writer lease's connection dropped: %s", exc)
                    with contextlib.suppress(Exception):
                        conn.close()
                    self._conn = None

    def _retake(self) -> None:
        assert self._holder is not None and self._epoch is not None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        conn = self._connect()
        try:
            with self.driver.deadline(conn, STATEMENT_DEADLINE):
                locked = self._try_lock(conn)
                epoch = self._read_epoch(conn)
                holder = self._read_holder(conn)
        except self.driver.error as exc:
            conn.close()
            raise self.driver.translate(exc, "taking the writer lease again", self.dsn) from exc
        if not locked or epoch != self._epoch:
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
                with contextlib.suppress(Exception):
                    self._unlock(conn)
                conn.close()
