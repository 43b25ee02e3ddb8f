"""The writer lease on PostgreSQL: a session-level advisory lock on a dedicated connection
plus the fencing epoch in `meta.lease_epoch` (`pgfs.store.lease` keeps the logic every
backend shares; README "One writer per store")."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import psycopg
from psycopg import sql

from pgfs.store.errors import LeaseHeldError, StoreError
from pgfs.store.interface import LeaseHolder
from pgfs.store.lease import LEASE_WAIT, LeaseBase, held_by_another
from pgfs.store.postgres.catalog import Catalog
from pgfs.store.postgres.connection import (
    DRIVER,
    connect,
)

log = logging.getLogger("pgfs.store")


class Lease(LeaseBase):
    """The lease of one store, as one process holds it. Thread-safe."""

    driver = DRIVER
    catalog: Catalog

    def _connect(self) -> psycopg.Connection:
        return connect(self.dsn, role="lease")

    def _try_lock(self, conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.catalog.lock_key,)).fetchone()
        return bool(row and row[0])

    def _unlock(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT pg_advisory_unlock_all()")

    def _read_epoch(self, conn: psycopg.Connection) -> int | None:
        return _read_epoch(conn, self.catalog)

    def _read_holder(self, conn: psycopg.Connection) -> LeaseHolder | None:
        return _read_holder(conn, self.catalog)

    def holder_of_record(self) -> LeaseHolder | None:
        """Who `meta.lease_holder` says holds the lease (maybe a dead process)."""
        conn = connect(self.dsn)
        try:
            return _read_holder(conn, self.catalog)
        finally:
            conn.close()

    def _take(self, conn: psycopg.Connection, holder: LeaseHolder, takeover: bool) -> int:
        key = self.catalog.lock_key
        if self._try_lock(conn):
            return self._bump(conn, holder)
        current = _read_holder(conn, self.catalog)
        if not takeover:
            raise held_by_another(self.catalog.meta_schema, current)
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
