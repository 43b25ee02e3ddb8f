"""An iterable made by a thread while its consumer works: `Producer`.

An import walks the file (Python, CPU) and sends parts to the server, which
then works on its own: between parts the client waits for the COPY to end
and the server's statements to run. A `Producer` walks the next part in a
thread during those waits (libpq releases the GIL), so the walk and the
server's ingest overlap instead of taking turns. At most `depth` finished
items wait in the queue, so memory stays bounded by a few parts.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.1
"""How often a producer blocked on a full queue looks whether it was stopped."""


@dataclass(frozen=True)
class _Failed:
    """What the producing thread raised, handed to the consumer to raise."""

    error: BaseException


@dataclass(frozen=True)
class _Finished:
    """The producing iterable is exhausted."""


class Producer(Generic[T]):
    """Iterates over `items` in a thread, `depth` items ahead of the consumer.

    Used as a context manager: leaving it (normally or on an error of the
    consumer) stops the thread and closes `items`, so a failed write leaves no
    walk running. An error raised by `items` is raised by `__next__`, with
    its traceback.
    """

    def __init__(self, items: Iterable[T], *, depth: int = 1, name: str = "pgfs-producer") -> None:
        self._queue: queue.Queue[T | _Failed | _Finished] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, args=(iter(items),), name=name, daemon=True
        )
        self._thread.start()

    def _produce(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._offer(item):
                    return
        except BaseException as exc:  # handed over: the consumer raises it
            self._offer(_Failed(exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        self._offer(_Finished())

    def _offer(self, item: T | _Failed | _Finished) -> bool:
        """Queue `item` once there is room; False when the consumer stopped first."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _Finished | _Failed):
            self._finished = True
            self._thread.join()
            if isinstance(item, _Failed):
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the item it is making) and wait for it."""
        self._stopped.set()
        self._thread.join()

    def __enter__(self) -> Producer[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
