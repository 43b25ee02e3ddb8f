"""Deadlines for blocking calls on a server connection, whatever the driver.

One watchdog thread serves every `Deadline` of the process. When a deadline
passes, the connection's socket is shut down: whatever call is blocked on it
(a COMMIT whose answer never comes, a partition that drops packets) fails at
once with a connection error, so no system call of SQLite waits longer than
the bound pgfs promises (README "Failures"). The connection is then unusable
and must be discarded.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("pgfs.store")


class _Watchdog:
    """One thread for every `Deadline` of the process: a heap of (when, deadline)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._cond = threading.Condition()
        self._numbers = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline.at, next(self._numbers), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pgfs-deadlines", daemon=True
                )
                self._thread.start()
            if earliest is None or deadline.at < earliest:
                # The thread sleeps until the earliest deadline; a later one can wait
                # (waking it for every statement cost a commit a thread switch).
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, deadline = self._heap[0]
                now = time.monotonic()
                if at > now:
                    self._cond.wait(at - now)
                    continue
                heapq.heappop(self._heap)
            if deadline.active:
                deadline.expire()


_WATCHDOG = _Watchdog()


class Deadline:
    """Bound a block of statements on one connection in time: when `seconds` pass, the
    socket `fileno()` names is shut down (from the one watchdog thread)."""

    def __init__(self, fileno: Callable[[], int], seconds: float, server: str) -> None:
        self.fileno = fileno
        self.server = server
        self.seconds = max(0.0, seconds)
        self.at = 0.0
        self.expired = False
        self.active = False

    def __enter__(self) -> Deadline:
        self.at = time.monotonic() + self.seconds
        self.active = True
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False

    def expire(self) -> None:
        self.expired = True
        with contextlib.suppress(Exception):
            sock = socket.socket(fileno=os.dup(self.fileno()))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        log.warning("a %s call took longer than %.1f s: connection cut", self.server, self.seconds)
