"""Connections to PostgreSQL: options, the read pool, errors, deadlines.

Reads go through a `psycopg_pool` pool; the commit path and the lease each
have a dedicated connection (`connect`). Every connection gets a connect
timeout and TCP keepalives, so a silent network partition is noticed; every
statement on the commit path runs under a `Deadline`, which shuts the
socket down when it passes, so no system call of SQLite waits longer than
the bound pgfs promises (README "Failures").
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pgfs.store import deadline
from pgfs.store.driver import ServerDriver
from pgfs.store.dsn import describe_connect_error
from pgfs.store.errors import StoreUnavailableError
from pgfs.store.outage import ReadPoolOutage

log = logging.getLogger("pgfs.store")

CONNECT_TIMEOUT = 5
"""Seconds to establish a connection (libpq connect_timeout)."""
POOL_TIMEOUT = 10.0
"""How long a read waits for a pooled connection while the server answers."""
DOWN_POOL_TIMEOUT = 0.2
"""The same while the server is known to be down: fail fast, one bounded wait."""
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2}
TCP_USER_TIMEOUT_MS = 8000


def connect_kwargs(dsn: str, role: str = "") -> dict[str, Any]:
    """Options pgfs adds to a DSN unless it sets them itself (or the environment does).

    `role` names the connection's job in its application_name (pgfs, pgfs-writer,
    pgfs-lease), so an operator sees in pg_stat_activity what each one does.
    """
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(dsn)
    except psycopg.Error:
        given = {}
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given and not os.environ.get("PGAPPNAME"):
        kwargs["application_name"] = f"pgfs-{role}" if role else "pgfs"
    for key, value in {**KEEPALIVE, "tcp_user_timeout": TCP_USER_TIMEOUT_MS}.items():
        given.setdefault(key, value)
        kwargs.setdefault(key, given[key])
    return kwargs


def is_connection_error(exc: BaseException) -> bool:
    """A lost or refused connection (as opposed to an error the server reported)."""
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def connect(
    dsn: str, *, role: str = "", autocommit: bool = True, timeout: float | None = None
) -> psycopg.Connection:
    """A new connection; StoreUnavailableError (no password in it) when it fails.

    `timeout` (seconds, at least 1: libpq's unit) bounds this attempt instead of the
    DSN's connect_timeout."""
    kwargs = connect_kwargs(dsn, role)
    if timeout is not None:
        kwargs["connect_timeout"] = max(1, int(timeout))
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **kwargs)
    except psycopg.Error as exc:
        raise StoreUnavailableError(describe_connect_error(exc, dsn)) from None


def has_news(conn: psycopg.Connection) -> bool:
    """Whether the server sent anything on an idle connection: an idle connection hears
    nothing, so this means an error, a notice or its end (a restarted server, an ended
    backend). Costs no round trip."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


class Deadline(deadline.Deadline):
    """Bound a block of statements on one PostgreSQL connection in time
    (`pgfs.store.deadline`): when `seconds` pass, its socket is shut down."""

    def __init__(self, conn: psycopg.Connection, seconds: float) -> None:
        super().__init__(lambda: conn.pgconn.socket, seconds, "PostgreSQL")
        self.conn = conn


def ping(conn: psycopg.Connection) -> None:
    conn.execute("SELECT 1")


def is_quiet(conn: psycopg.Connection) -> bool:
    return not (conn.closed or conn.broken or has_news(conn))


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid


def begin(conn: psycopg.Connection) -> None:
    conn.execute("BEGIN", prepare=False)


def commit(conn: psycopg.Connection) -> None:
    conn.execute("COMMIT", prepare=False)


DRIVER = ServerDriver(
    "PostgreSQL",
    psycopg.Error,
    is_connection_error,
    Deadline,
    ping,
    is_quiet,
    backend_pid,
    begin,
    commit,
)
"""The driver as `ServerStore` and `LeaseBase` see it."""


class ReadPool(ReadPoolOutage):
    """Pooled connections for reads, failing fast while the server is known to be down.

    While connections fail, the pool reconnects in the background with a
    growing delay; a read then does not wait for it but tries one direct
    connection (bounded by the connect timeout): when the server is back, that
    succeeds at once, so reads recover as soon as the server does.
    """

    server = "PostgreSQL"

    def __init__(self, dsn: str, name: str, max_size: int = 4) -> None:
        self.dsn = dsn
        super().__init__()
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            kwargs={**connect_kwargs(dsn), "autocommit": True},
            open=False,
            timeout=POOL_TIMEOUT,
            name=name,
        )

    def open(self) -> None:
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailableError(describe_connect_error(exc, self.dsn)) from None

    def close(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        timeout = DOWN_POOL_TIMEOUT if self.down else POOL_TIMEOUT
        try:
            with self._pool.connection(timeout=timeout) as conn:
                yield conn
                return
        except PoolTimeout:
            pass
        conn = connect(self.dsn)
        self.mark_up()
        try:
            yield conn
        finally:
            conn.close()
