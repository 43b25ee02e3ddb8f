"""The writer lease on PostgreSQL: a session-level advisory lock on a dedicated connection
plus the fencing epoch in `meta.lease_epoch` (`pgfs.store.lease` keeps the logic every
backend shares; README "One writer per store")."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from pgfs.store.errors import StoreError
from pgfs.store.interface import LeaseHolder
from pgfs.store.lease import LEASE_WAIT, LeaseBase
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
        row = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'lease_epoch'").format(
                self.catalog.meta("meta")
            )
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _read_holder(self, conn: psycopg.Connection) -> LeaseHolder | None:
        try:
            row = conn.execute(
                sql.SQL("SELECT value FROM {} WHERE key = 'lease_holder'").format(
                    self.catalog.meta("meta")
                )
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return LeaseHolder.from_json(row[0] if row else None)

    def _end_holder_session(self, conn: psycopg.Connection) -> None:
        for pid in _lock_holders(conn, self.catalog.lock_key):
            log.warning("takeover: ending the old writer's lease session (backend %d)", pid)
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    def _wait_for_lock(self, conn: psycopg.Connection) -> bool:
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false)", (f"{int(LEASE_WAIT * 1000)}ms",)
        )
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (self.catalog.lock_key,))
        except psycopg.errors.LockNotAvailable:
            return False
        finally:
            conn.execute("RESET lock_timeout")
        return True

    def _bump(self, conn: psycopg.Connection, holder: LeaseHolder) -> int:
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
                (holder.to_json(),),
            )
        return int(row[0])


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
