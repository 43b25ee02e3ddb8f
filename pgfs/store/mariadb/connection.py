"""Connections to MariaDB: the URL, options, the read pool, errors, deadlines.

A store URL is `mariadb://user:password@host:port/database?option=value`
(`mysql://` too). Options: `unix_socket=PATH` (connect through the socket;
the host is then ignored), `connect_timeout`, `read_timeout`,
`write_timeout` (seconds), `ssl=1`, `ssl_ca=PATH`. The password may also come
from `$MARIADB_PASSWORD`. The database in the path is only the connection's
default: pgfs keeps its tables in the meta and data databases ("schemas").

Reads go through a small pool; the commit path and the lease each have a
dedicated connection. Every connection gets a connect timeout and the driver's
read/write timeouts, so a silent partition is noticed; the commit path also
runs under a `Deadline` (its socket is shut down when the bound passes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Iterator
from typing import Any

import mariadb

from pgfs.store import deadline
from pgfs.store.driver import ServerDriver
from pgfs.store.dsn import describe_connect_error, parse_url
from pgfs.store.errors import StoreError, StoreUnavailableError
from pgfs.store.outage import ReadPoolOutage

log = logging.getLogger("pgfs.store")

CONNECT_TIMEOUT = 5
"""Seconds to establish a connection."""
READ_TIMEOUT = 30
"""Seconds a read or the lease waits for an answer (the driver's read_timeout)."""
WRITE_READ_TIMEOUT = 3600
"""The same for the commit path, which has its own `Deadline` (a VACUUM may take long)."""
POOL_SIZE = 4
ENV_PASSWORD = "MARIADB_PASSWORD"

CONNECTION_ERRNOS = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1077,  # normal shutdown
        1078,  # got signal
        1152,  # aborted connection
        1158,
        1159,
        1160,
        1161,  # network read/write errors and timeouts
        1184,  # aborted new connection
        1927,  # connection was killed
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2005,  # unknown host
        2006,  # server has gone away
        2013,  # lost connection during query
        2026,  # TLS error
        2055,  # lost connection at reading ...
        4031,  # disconnected for inactivity
        5014,  # not connected (connector/python)
    }
)


def connect_kwargs(url: str, *, read_timeout: int = READ_TIMEOUT) -> dict[str, Any]:
    """The driver's keyword arguments for a store URL (StoreError for a bad one)."""
    parsed = parse_url(url)
    if parsed is None:
        raise StoreError("not a MariaDB URL: use mariadb://user:password@host:port/")
    kwargs: dict[str, Any] = {
        "user": parsed.get("user") or os.environ.get("USER") or "root",
        "connect_timeout": int(parsed.get("connect_timeout", CONNECT_TIMEOUT)),
        "read_timeout": int(parsed.get("read_timeout", read_timeout)),
        "write_timeout": int(parsed.get("write_timeout", read_timeout)),
        "autocommit": True,
    }
    password = parsed.get("password") or os.environ.get(ENV_PASSWORD)
    if password:
        kwargs["password"] = password
    if parsed.get("unix_socket"):
        kwargs["unix_socket"] = parsed["unix_socket"]
    else:
        kwargs["host"] = parsed.get("host") or "localhost"
        kwargs["port"] = int(parsed.get("port") or 3306)
    if parsed.get("dbname"):
        kwargs["database"] = parsed["dbname"]
    if parsed.get("ssl") in ("1", "true", "yes") or parsed.get("ssl_ca"):
        kwargs["ssl"] = True
        if parsed.get("ssl_ca"):
            kwargs["ssl_ca"] = parsed["ssl_ca"]
    return kwargs


def is_connection_error(exc: BaseException) -> bool:
    """A lost or refused connection (as opposed to an error the server reported)."""
    if isinstance(exc, mariadb.InterfaceError):
        return True
    if not isinstance(exc, mariadb.Error):
        return False
    errno = getattr(exc, "errno", None)
    if errno in CONNECTION_ERRNOS:
        return True
    return isinstance(exc, mariadb.OperationalError) and errno in (None, 0)


def errno_of(exc: BaseException) -> int | None:
    return getattr(exc, "errno", None) if isinstance(exc, mariadb.Error) else None


def connect(
    url: str, *, timeout: float | None = None, read_timeout: int = READ_TIMEOUT
) -> mariadb.Connection:
    """A new autocommit connection in utf8mb4; StoreUnavailableError (no password) when
    it fails. `timeout` (seconds, at least 1) bounds this attempt."""
    kwargs = connect_kwargs(url, read_timeout=read_timeout)
    if timeout is not None:
        kwargs["connect_timeout"] = max(1, int(timeout))
    try:
        conn = mariadb.connect(**kwargs)
    except mariadb.Error as exc:
        raise StoreUnavailableError(describe_connect_error(exc, url)) from None
    try:
        cur = conn.cursor()
        cur.execute("SET NAMES utf8mb4 COLLATE utf8mb4_bin")
        # Strict: a value that does not fit is an error, never silently changed.
        cur.execute(
            "SET SESSION sql_mode ="
            " 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'"
        )
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.close()
    except mariadb.Error as exc:
        conn.close()
        raise DRIVER.translate(exc, "setting up the connection", url) from None
    return conn


def is_usable(conn: mariadb.Connection | None) -> bool:
    """Whether an idle connection looks alive: open, and the server sent nothing (an idle
    connection hears nothing; a killed or restarted one gets its end). No round trip."""
    if conn is None:
        return False
    try:
        fd = conn._get_socket()
        readable, _, _ = select.select([fd], [], [], 0)
    except Exception:
        return False
    return not readable


def close_quietly(conn: mariadb.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


class Deadline(deadline.Deadline):
    """Bound a block of statements on one MariaDB connection in time
    (`pgfs.store.deadline`): when `seconds` pass, its socket is shut down."""

    def __init__(self, conn: mariadb.Connection, seconds: float) -> None:
        super().__init__(conn._get_socket, seconds, "MariaDB")
        self.conn = conn


def ping(conn: mariadb.Connection) -> None:
    conn.cursor().execute("SELECT 1")


def thread_id(conn: mariadb.Connection) -> int:
    return conn.thread_id


def begin(conn: mariadb.Connection) -> None:
    conn.begin()


def commit(conn: mariadb.Connection) -> None:
    conn.commit()


DRIVER = ServerDriver(
    "MariaDB",
    mariadb.Error,
    is_connection_error,
    Deadline,
    ping,
    is_usable,
    thread_id,
    begin,
    commit,
)
"""The driver as `ServerStore` and `LeaseBase` see it."""


class ReadPool(ReadPoolOutage):
    """Up to `size` idle connections for reads. A connection that failed is dropped, not
    returned; while the server is known to be down, a read makes one quick attempt."""

    server = "MariaDB"

    def __init__(self, url: str, size: int = POOL_SIZE) -> None:
        self.url = url
        self.size = size
        self._idle: list[mariadb.Connection] = []
        self._lock = threading.Lock()
        super().__init__()
        self._closed = False

    def open(self) -> None:
        conn = connect(self.url)
        self._release(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)

    def _take(self) -> mariadb.Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return connect(self.url, timeout=1 if self.down else None)
            if is_usable(conn):
                return conn
            close_quietly(conn)

    def _release(self, conn: mariadb.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.size:
                self._idle.append(conn)
                return
        close_quietly(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[mariadb.Connection]:
        conn = self._take()
        try:
            yield conn
        except BaseException:
            close_quietly(conn)  # its state is unknown (an open result, a lost link)
            raise
        self._release(conn)


def quote(name: str) -> str:
    """A MariaDB identifier in backticks (a backtick doubled)."""
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, name: str) -> str:
    return f"{quote(database)}.{quote(name)}"


PLACEHOLDER_TROUBLE = frozenset("'\"?\\#-/%")
"""Characters that the driver's placeholder parser mistakes for quotes or comments even
inside backticks: a statement naming such an identifier carries its values as literals."""


def plain_identifier(name: str) -> bool:
    """Whether a statement naming `name` may use `?` placeholders."""
    return not (PLACEHOLDER_TROUBLE & set(name))


def literal(value: object) -> str:
    """A value as a MariaDB literal (utf8mb4 connection, backslash escapes on)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value else "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return "X'" + data.hex() + "'" if data else "''"
    text = str(value)
    for old, new in (("\\", "\\\\"), ("'", "\\'"), ("\x00", "\\0"), ("\x1a", "\\Z")):
        text = text.replace(old, new)
    return "'" + text + "'"
