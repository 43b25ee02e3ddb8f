"""Whether a server is known to be down, as one read pool saw it: `ReadPoolOutage`.

Both backends' read pools fail fast while the last read found the server gone
(a short wait for a pooled connection, one quick direct try), and go back to
the usual waits once a connection works again.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("pgfs.store")


class ReadPoolOutage:
    """The down/up state a read pool keeps (a base class of each backend's ReadPool)."""

    server = ""
    """The server's name in messages."""

    def __init__(self) -> None:
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()

    def mark_up(self) -> None:
        if self._down_since is not None:
            log.info(
                "%s answers again after %.1f s", self.server, time.monotonic() - self._down_since
            )
        self._down_since = None
