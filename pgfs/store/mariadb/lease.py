"""The writer lease on MariaDB: `GET_LOCK()` on a dedicated connection, plus the fencing
epoch in `meta.lease_epoch` (`pgfs.store.lease` keeps the logic every backend shares;
README "One writer per store"). A takeover bumps the epoch (its UPDATE waits for a commit
in flight, which holds a share lock on the epoch row), kills the holder's lease
connection and takes the lock.
"""

from __future__ import annotations

import contextlib
import logging

import mariadb

from pgfs.store.errors import StoreError
from pgfs.store.interface import LeaseHolder
from pgfs.store.lease import LEASE_WAIT, STATEMENT_DEADLINE, LeaseBase
from pgfs.store.mariadb.catalog import Catalog
from pgfs.store.mariadb.connection import (
    DRIVER,
    connect,
    errno_of,
)

log = logging.getLogger("pgfs.store")

NO_SUCH_TABLE = 1146


class Lease(LeaseBase):
    """The lease of one store, as one process holds it. Thread-safe."""

    driver = DRIVER
    acquire_bound = LEASE_WAIT * 2 + STATEMENT_DEADLINE
    catalog: Catalog

    def _connect(self) -> mariadb.Connection:
        return connect(self.dsn)

    def _try_lock(self, conn: mariadb.Connection) -> bool:
        cur = conn.cursor()
        cur.execute("SELECT GET_LOCK(?, 0)", (self.catalog.lock_name,))
        row = cur.fetchone()
        return bool(row and row[0] == 1)

    def _unlock(self, conn: mariadb.Connection) -> None:
        conn.cursor().execute("SELECT RELEASE_ALL_LOCKS()")

    def _read_epoch(self, conn: mariadb.Connection) -> int | None:
        cur = conn.cursor()
        cur.execute(f"SELECT value FROM {self.catalog.meta('meta')} WHERE `key` = 'lease_epoch'")
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _read_holder(self, conn: mariadb.Connection) -> LeaseHolder | None:
        cur = conn.cursor()
        try:
            cur.execute(
                f"SELECT value FROM {self.catalog.meta('meta')} WHERE `key` = 'lease_holder'"
            )
        except mariadb.Error as exc:
            if errno_of(exc) == NO_SUCH_TABLE:
                return None
            raise
        row = cur.fetchone()
        return LeaseHolder.from_json(row[0] if row else None)

    def _end_holder_session(self, conn: mariadb.Connection) -> None:
        cur = conn.cursor()
        cur.execute("SELECT IS_USED_LOCK(?)", (self.catalog.lock_name,))
        row = cur.fetchone()
        if row and row[0] is not None:
            log.warning("takeover: ending the old writer's lease connection (%d)", row[0])
            with contextlib.suppress(mariadb.Error):
                cur.execute(f"KILL CONNECTION {int(row[0])}")

    def _wait_for_lock(self, conn: mariadb.Connection) -> bool:
        cur = conn.cursor()
        cur.execute("SELECT GET_LOCK(?, ?)", (self.catalog.lock_name, LEASE_WAIT))
        row = cur.fetchone()
        return bool(row and row[0] == 1)

    def _bump(self, conn: mariadb.Connection, holder: LeaseHolder) -> int:
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
                (holder.to_json(),),
            )
            conn.commit()
        except BaseException:
            with contextlib.suppress(mariadb.Error):
                conn.rollback()
            raise
        return epoch
