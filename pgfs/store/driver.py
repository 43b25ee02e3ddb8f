"""What the backend-neutral store code needs to know of one server's database driver:
`ServerDriver`.

Each backend's connection module describes its driver once (`DRIVER`): the
server's name in messages, the driver's error class, how a lost connection is
told from an error the server reported, how a block of calls on a connection is
bounded in time, the cheapest round trip, whether an idle connection is still
sound, the number of its session on the server, and how a transaction begins and
commits. `ServerStore` and `LeaseBase` use
it; `translate` turns any error into a StoreError without the password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgfs.sqlite.errors import FormatError
from pgfs.store.deadline import Deadline
from pgfs.store.dsn import describe_target, one_line, scrub
from pgfs.store.errors import StoreError, StoreUnavailableError


@dataclass(frozen=True)
class ServerDriver:
    """One server's database driver, as the backend-neutral code sees it."""

    server: str
    """The server's name in messages ("PostgreSQL", "MariaDB")."""
    error: type[Exception]
    """The base class of every error the driver raises."""
    is_connection_error: Callable[[BaseException], bool]
    """Whether an error means a lost or refused connection (not one the server reported)."""
    deadline: Callable[[Any, float], Deadline]
    """A `Deadline` bounding a block of calls on a connection to so many seconds."""
    ping: Callable[[Any], None]
    """One round trip on a connection (`SELECT 1`)."""
    is_quiet: Callable[[Any], bool]
    """Whether an idle connection is open and the server sent nothing on it (an idle
    connection hears nothing: a server that ends it says so first). No round trip."""
    session_of: Callable[[Any], int]
    """The server's number for a connection's session (what ends it from another)."""
    begin: Callable[[Any], None]
    """Start a transaction on an autocommit connection."""
    commit: Callable[[Any], None]

    def translate(self, exc: BaseException, doing: str, dsn: str) -> StoreError:
        """A StoreError for `exc` (StoreUnavailableError when it means a lost connection),
        never with the password."""
        if isinstance(exc, StoreError):
            return exc
        message = scrub(one_line(str(exc)) or type(exc).__name__, dsn)
        if self.is_connection_error(exc):
            return StoreUnavailableError(
                f"{self.server} unavailable ({describe_target(dsn)}) while {doing}: {message}"
            )
        if isinstance(exc, self.error):
            return StoreError(f"{self.server} failed while {doing}: {message}")
        if isinstance(exc, FormatError):
            return StoreError(f"{doing}: {message}")
        return StoreError(f"{doing} failed: {type(exc).__name__}: {message}")
