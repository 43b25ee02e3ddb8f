"""The database as the mount sees it: rendered reads and page-level commits.

`Database` ties the renderer and the diff to one store: `read(pgno)` renders
(and caches) a page, `commit(changed, page_count, source)` turns the pages of
one SQLite commit into a Changeset, applies it in one PostgreSQL transaction,
then moves its own state forward and keeps the committed images in the page
cache (they are valid renders of the new state). One lock serialises reads
and commits, so it may be called from worker threads (trio.to_thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from pgfs.emulator.diff import DiffStats, diff_with_stats
from pgfs.emulator.render import PageRenderer
from pgfs.emulator.source import StorePageSource
from pgfs.sqlite.header import DatabaseHeader
from pgfs.store.store import CommitStats

if TYPE_CHECKING:
    from pgfs.store.changeset import Changeset
    from pgfs.store.store import Store, StoreState


MAX_READAHEAD = 64
"""Most pages a sequential read renders ahead in one batch."""


class Database:
    """One SQLite database kept in a store (see module docstring)."""

    def __init__(self, store: Store, state: StoreState) -> None:
        self.store = store
        self.state = state
        self.renderer = PageRenderer(store, state)
        self.lock = threading.RLock()
        self.last_changeset: Changeset | None = None
        self.last_diff: DiffStats | None = None
        self.last_ms = 0.0
        self._last_miss: int | None = None
        self._window = 1

    @classmethod
    def open(cls, store: Store, *, initialise: bool = True) -> Database:
        """The database the store holds (an empty one if it holds none yet: the
        first commit then creates it). Creates pgfs' tables when `initialise`."""
        if initialise:
            store.initialise()
        return cls(store, store.load_state())

    @property
    def page_size(self) -> int:
        return self.state.page_size

    @property
    def page_count(self) -> int:
        return self.state.page_count

    @property
    def is_empty(self) -> bool:
        """True while the store holds no database (the first commit creates it)."""
        return self.state.header is None

    @property
    def size(self) -> int:
        """The database file size in bytes."""
        return self.state.page_size * self.state.page_count

    def read(self, pgno: int) -> bytes:
        """The image of page `pgno` (1-based), rendered from the store or cached.

        Sequential misses grow a read-ahead window (up to MAX_READAHEAD pages,
        rendered in one batch); a random miss renders just its page.
        """
        with self.lock:
            cached = self.renderer.cached(pgno)
            if cached is not None:
                return cached
            if self._last_miss is not None and 0 < pgno - self._last_miss <= self._window:
                self._window = min(self._window * 2, MAX_READAHEAD)
            else:
                self._window = 1
            self._last_miss = pgno
            last = min(pgno + self._window - 1, self.state.page_count)
            return self.renderer.render_many(range(pgno, max(last, pgno) + 1))[pgno]

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        """Images of several pages in one batch (e.g. a FUSE read of many pages)."""
        with self.lock:
            return self.renderer.render_many(pgnos)

    def commit(self, changed: dict[int, bytes], page_count: int, source: str) -> CommitStats:
        """Apply one SQLite commit: `changed` = new page images, `page_count` = new size.

        Raises (and changes nothing, in PostgreSQL or here) when the diff or
        PostgreSQL fails.
        """
        with self.lock:
            started = time.perf_counter()
            base = StorePageSource(self.store, self.state, self.renderer)
            changeset, diff = diff_with_stats(
                self.state, self.store, base, changed, page_count, source
            )
            self.last_changeset, self.last_diff = changeset, diff
            if (
                changeset.is_empty()
                and changeset.header == self.state.header
                and changeset.page_count == self.state.page_count
            ):  # e.g. a hot journal played back: nothing to write
                self.last_ms = (time.perf_counter() - started) * 1000
                return CommitStats(source=source)
            stats = self.store.apply(changeset)
            self._advance(changeset, changed)
            self.last_ms = (time.perf_counter() - started) * 1000
            return stats

    def _advance(self, changeset: Changeset, changed: dict[int, bytes]) -> None:
        """Move to the state the store now holds and refresh the page cache."""
        if changeset.schema_entries is not None or self.state.header is None:
            self.state = self.store.load_state()
        else:
            header = DatabaseHeader.parse(changeset.header)
            self.state = replace(
                self.state,
                header=changeset.header,
                page_count=changeset.page_count,
                page_size=header.page_size,
            )
        renderer = self.renderer
        if renderer.page_size != self.state.page_size:
            renderer.clear()
        renderer.set_state(self.state)
        for record in changeset.pages:
            if record.pgno not in changed:
                renderer.forget(record.pgno)
        for pgno, image in changed.items():
            if 1 <= pgno <= self.state.page_count and len(image) == self.state.page_size:
                renderer.put(pgno, bytes(image))

    def refresh(self) -> None:
        """Forget everything cached and reload the state (after changes made elsewhere)."""
        with self.lock:
            self.state = self.store.load_state()
            self.renderer.clear()
            self.renderer.set_state(self.state)
