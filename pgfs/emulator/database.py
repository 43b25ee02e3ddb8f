"""The database as the mount sees it: rendered reads and page-level commits.

`Database` ties the page map, the page cache, the renderer and the diff to
one store. `read_many` renders (and caches) pages; `commit(changed,
page_count, source)` decodes the pages of one SQLite commit, writes the
Changeset in one server transaction, then moves its own state forward: the
page map and the page cache take the committed images (valid renders of the
new state). It is also the diff's `OldVersion`. One lock serialises reads
and commits, so it may be called from worker threads (trio.to_thread).

A commit whose outcome the store could not learn (the connection was lost
after COMMIT was sent, and the server did not answer within the bound)
leaves the database *unresolved*: SQLite was told it failed. Every later
call first asks the server again; when the commit turns out to have landed,
the database moves to the state the server has and at once writes an undo
commit (the pages as they were before it), so the server holds again exactly
what SQLite was told (README "Failures").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgfs.emulator.diff import DiffStats, diff_commit
from pgfs.emulator.pagecache import CacheStamp, DiskPages, PageCache, Warmth
from pgfs.emulator.pagemap import PageEntries, PageMap
from pgfs.emulator.pageset import DENSE_AFTER, DenseKeys
from pgfs.emulator.readahead import CLIENT_BLOCK, ReadAhead
from pgfs.emulator.render import Renderer
from pgfs.sqlite.header import DatabaseHeader
from pgfs.sqlite.schema import table_definitions
from pgfs.store.changeset import Changeset, CommitSource, PageRecord
from pgfs.store.errors import CommitOutcomeUnknownError
from pgfs.store.interface import (
    CommitStats,
    Health,
    LeaseStatus,
    Store,
    StoreState,
    new_commit_id,
)

if TYPE_CHECKING:
    from pgfs.emulator.diff import Identity

log = logging.getLogger("pgfs.emulator")

WARM_BATCH = 128
"""Pages one step of the background warm-up renders: one round of queries, and the
longest a client read waits for the lock behind it."""

UNDO_LIMIT = 4096
"""Commits of more pages keep no undo images: if their outcome stays unknown and
they landed, the mount reloads instead (logged)."""


@dataclass
class _Forward:
    """What a written commit changes in the page map, collected as its parts go out.

    Records of a small commit are kept in a dict; once they are many and dense
    (`DenseKeys`) they move to `PageEntries` (arrays indexed by page number), so a
    VACUUM does not hold an object per page while a small commit costs nothing per
    database page.
    """

    DENSE_AFTER = DENSE_AFTER

    records: dict[int, PageRecord] | PageEntries = field(default_factory=dict)
    renames: list[tuple[str, str]] = field(default_factory=list)
    removed_from: int | None = None
    last: Changeset | None = None
    _dense: DenseKeys = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._dense = DenseKeys(self.DENSE_AFTER)

    def watch(self, parts: Iterator[Changeset]) -> Iterator[Changeset]:
        for part in parts:
            for record in part.pages:
                self._keep(record)
            self.renames.extend(part.schema.renamed)
            if part.removed_pages_from is not None:
                self.removed_from = part.removed_pages_from
            self.last = part
            yield part

    def _keep(self, record: PageRecord) -> None:
        records = self.records
        if isinstance(records, dict):
            records[record.pgno] = record.without_data()
            if self._dense.due(record.pgno, len(records)):
                entries = PageEntries()
                for kept in records.values():
                    entries.put(kept)
                self.records = entries
        else:
            records.put(record)

    def pgnos(self) -> Iterable[int]:
        return self.records if isinstance(self.records, dict) else self.records.pgnos()

    def apply_to(self, pagemap: PageMap) -> None:
        records = self.records
        written = records.values() if isinstance(records, dict) else records.records()
        pagemap.apply(written, self.renames, self.removed_from)


@dataclass
class _Unresolved:
    """A commit SQLite was told failed, whose outcome the server did not give."""

    commit_id: uuid.UUID
    changed: dict[int, bytes] | None
    """None for a commit too big to keep: the mount reloads instead."""
    state_after: StoreState
    forward: _Forward
    undo: dict[int, bytes] | None
    old_page_count: int


class Database:
    """One SQLite database kept in a store (see module docstring)."""

    def __init__(self, store: Store, state: StoreState, cache: PageCache | None = None) -> None:
        self.store = store
        self.state = state
        self.cache = cache or PageCache()
        self.pagemap = PageMap(store.page_records, on_raw=self._cache_raw)
        self.renderer = Renderer(store, self.pagemap, self.cache, state)
        self.lock = threading.RLock()
        self.last_changeset: Changeset | None = None
        """The first part of the last commit (for tests and logs); `last_parts` all of them
        (empty for a commit too big to keep)."""
        self.last_parts: list[Changeset] = []
        self.last_diff: DiffStats | None = None
        self.last_ms = 0.0
        self.unresolved: _Unresolved | None = None
        self._readahead = ReadAhead()
        self._warm_from = 1

    @classmethod
    def open(
        cls, store: Store, *, initialise: bool = True, cache: PageCache | None = None
    ) -> Database:
        """The database the store holds (an empty one if it holds none yet: the first
        commit then creates it). Creates the store's tables when `initialise`."""
        if initialise:
            store.initialise()
        return cls(store, store.load_state(), cache)

    # ------------------------------------------------------------------ PageSource

    @property
    def page_size(self) -> int:
        return self.state.page_size

    @property
    def usable_size(self) -> int:
        return self.renderer.geometry.usable_size

    @property
    def page_count(self) -> int:
        return self.state.page_count

    @property
    def is_empty(self) -> bool:
        """True while the store holds no database (the first commit creates it)."""
        return self.state.header is None

    @property
    def size(self) -> int:
        return self.state.page_size * self.state.page_count

    def read(self, pgno: int) -> bytes:
        """The image of page `pgno`, rendered or cached (a miss renders a read-ahead
        window when reads are sequential, see `readahead`)."""
        with self.lock:
            self._resolve_pending()
            cached = self.cache.get(pgno)
            if cached is not None:
                return cached
            batch = self._readahead.plan(pgno, pgno, self.state.page_count)
            return self.renderer.render(batch)[pgno]

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        with self.lock:
            self._resolve_pending()
            return self.renderer.render(pgnos)

    def cached_range(self, first: int, last: int) -> dict[int, bytes] | None:
        """Pages [first, last] when every one is cached and nothing else holds the
        database; None otherwise. Never blocks, so the event loop may call it and
        spare a cached read the hop to a worker thread."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            if self.unresolved is not None:
                return None
            out = {}
            for pgno in range(first, last + 1):
                image = self.cache.get(pgno)
                if image is None:
                    return None
                out[pgno] = image
            return out
        finally:
            self.lock.release()

    def read_range(self, first: int, last: int) -> dict[int, bytes]:
        """Pages [first, last] as a client reads them: a miss renders its aligned
        block, or a growing window when reads are sequential (see `readahead`)."""
        with self.lock:
            self._resolve_pending()
            wanted = range(first, last + 1)
            if any(pgno not in self.cache for pgno in wanted):
                batch = self._readahead.plan(first, last, self.state.page_count, block=CLIENT_BLOCK)
                found = self.renderer.render(batch)
                return {pgno: found[pgno] for pgno in wanted}
            return self.renderer.render(wanted)

    def warm_step(self) -> Warmth | None:
        """Render the next pages the local cache file lacks (up to WARM_BATCH), so that it
        becomes a full local copy and later reads never wait on the server. How much it
        holds after the step; None without a cache file (nothing to fill)."""
        with self.lock:
            disk = self.cache.disk
            if disk is None:
                return None
            self._resolve_pending()
            first = self._next_cold(disk)
            if first is not None:
                last = min(first + WARM_BATCH - 1, self.state.page_count)
                # Only what the file lacks: a cached page would be read back for nothing.
                self.renderer.render(p for p in range(first, last + 1) if not disk.has(p))
                self._warm_from = last + 1
            return self.warmth()

    def warmth(self) -> Warmth | None:
        """How much of the database the local cache file holds (None: no file)."""
        disk = self.cache.disk
        if disk is None:
            return None
        count = self.state.page_count
        lock_byte = self.renderer.geometry.lock_byte_page
        total = count - (1 if lock_byte <= count else 0)
        return Warmth(min(disk.count(count), total), total)

    def _next_cold(self, disk: DiskPages) -> int | None:
        """The next page the cache file lacks, from where the warm-up got to, then from
        the start (a commit may have freed slots behind it). The lock-byte page is never
        cached (it renders as zeros)."""
        count = self.state.page_count
        lock_byte = self.renderer.geometry.lock_byte_page
        for start in (self._warm_from, 1):
            pgno = disk.first_missing(start, count)
            if pgno == lock_byte:
                pgno = disk.first_missing(lock_byte + 1, count)
            if pgno is not None:
                return pgno
        return None

    # ------------------------------------------------------------------ OldVersion

    def records(self, pgnos: Iterable[int]) -> Mapping[int, PageRecord | None]:
        if self.state.header is None:
            return {p: None for p in pgnos}
        return self.pagemap.records(pgnos)

    def row(self, table: str, rowid: int) -> tuple[bytes, list[int]] | None:
        payloads = self.store.row_payloads(table, [rowid])
        if rowid not in payloads:
            return None
        chains = self.store.overflow_chains(table, [rowid])
        return payloads[rowid], chains.get(rowid, [])

    def _cache_raw(self, pgno: int, data: bytes) -> None:
        """A raw page's bytes came with its record: that is its image."""
        if 1 <= pgno <= self.state.page_count and pgno not in self.cache:
            self.cache.put(pgno, self.renderer.raw_image(pgno, data))

    # ------------------------------------------------------------------ commits

    def commit(
        self,
        changed: Mapping[int, bytes],
        page_count: int,
        source: CommitSource,
        commit_id: uuid.UUID | None = None,
    ) -> CommitStats:
        """Apply one SQLite commit: `changed` = new page images, `page_count` = new size.

        Raises (and changes nothing, in the store or here) when the diff or the
        store fails; CommitOutcomeUnknownError leaves the database unresolved.
        """
        with self.lock:
            self._resolve_pending()
            return self._commit(changed, page_count, source, commit_id or new_commit_id())

    def _commit(
        self,
        changed: Mapping[int, bytes],
        page_count: int,
        source: CommitSource,
        commit_id: uuid.UUID,
    ) -> CommitStats:
        started = time.perf_counter()
        state = self.state
        fetched = self.pagemap.fetched
        small = len(changed) <= UNDO_LIMIT
        undo = self._undo_images(changed) if small else None
        diff = diff_commit(self, state, changed, page_count, source)
        self.last_diff = diff.stats
        forward = _Forward()
        parts = list(forward.watch(diff.parts)) if small else None
        diff.stats.old_records = self.pagemap.fetched - fetched
        if parts is not None and len(parts) == 1 and _nothing_to_write(parts[0], state):
            self.last_ms = (time.perf_counter() - started) * 1000
            return CommitStats(source=str(source))  # e.g. a hot journal played back
        stream = parts if parts is not None else forward.watch(diff.parts)
        try:
            stats = self.store.write(stream, source=source, commit_id=commit_id)
        except CommitOutcomeUnknownError:
            after = self._state_after(diff.identity, forward, state.commit_seq + 1)
            self.unresolved = _Unresolved(
                commit_id, dict(changed) if small else None, after, forward, undo, state.page_count
            )
            log.error(
                "commit %s: the outcome is unknown; SQLite is told it failed, and the mount "
                "will ask PostgreSQL again before anything else",
                commit_id,
            )
            raise
        self.last_parts = parts or []
        self.last_changeset = parts[0] if parts else None
        self._advance(self._state_after(diff.identity, forward, stats.commit_seq), forward, changed)
        self.last_ms = (time.perf_counter() - started) * 1000
        return stats

    def _undo_images(self, changed: Mapping[int, bytes]) -> dict[int, bytes]:
        """The images the changed pages have now (the undo of the commit about to go)."""
        inside = [p for p in changed if p <= self.state.page_count]
        return self.renderer.render(inside) if inside and self.state.header is not None else {}

    def _state_after(self, identity: Identity, forward: _Forward, commit_seq: int) -> StoreState:
        header = identity.header
        last = forward.last
        assert last is not None
        entries = tuple(identity.entries)
        return StoreState(
            header=bytes(last.header),
            page_size=header.page_size,
            page_count=last.page_count,
            encoding=header.text_encoding,
            schema_format=header.schema_format,
            entries=entries,
            tables=table_definitions(entries) if identity.schema_changed else self.state.tables,
            commit_seq=commit_seq,
            store_id=self.state.store_id,
        )

    def _advance(self, state: StoreState, forward: _Forward, changed: Mapping[int, bytes]) -> None:
        """Move to the state the store now holds and refresh the page map and cache."""
        old = self.state
        if _layout(old) != _layout(state):
            self.cache.clear()
            self.pagemap.clear()
        self.state = state
        self.renderer.set_state(state)
        forward.apply_to(self.pagemap)
        if forward.removed_from is not None or state.page_count < old.page_count:
            self.cache.truncate(state.page_count)
            self.pagemap.forget_beyond(state.page_count)
        for pgno in forward.pgnos():
            if pgno not in changed:
                self.cache.discard(pgno)
        for pgno, image in changed.items():
            if pgno <= state.page_count and len(image) == state.page_size:
                self.cache.put(pgno, image)

    # ------------------------------------------------------------------ unknown outcomes

    def _resolve_pending(self) -> None:
        """Before anything else: learn the outcome of an unresolved commit (module
        docstring). StoreUnavailableError while the server still cannot say."""
        pending = self.unresolved
        if pending is None:
            return
        landed = self.store.commit_landed(pending.commit_id)
        self.unresolved = None
        if not landed:
            log.warning("commit %s did not land: nothing to undo", pending.commit_id)
            return
        log.warning(
            "commit %s landed after SQLite was told it failed: undoing it", pending.commit_id
        )
        if pending.changed is None or pending.undo is None:
            log.error(
                "commit %s was too big to keep its undo images: the mount now serves what "
                "PostgreSQL holds, which SQLite may not expect",
                pending.commit_id,
            )
            self.state = self.store.load_state()
            self.cache.clear()
            self.pagemap.clear()
            self.renderer.set_state(self.state)
            return
        self._advance(pending.state_after, pending.forward, pending.changed)
        self._commit(pending.undo, pending.old_page_count, CommitSource.UNDO, new_commit_id())

    # ------------------------------------------------------------------ housekeeping

    def resolve_pending(self) -> None:
        """Learn the outcome of an unresolved commit now, if there is one (the mount asks
        every second, so the undo does not wait for SQLite's next call)."""
        if self.unresolved is None:
            return
        with self.lock:
            self._resolve_pending()

    def lease_status(self) -> LeaseStatus:
        return self.store.lease_status()

    def health(self) -> Health:
        return self.store.health()

    @property
    def pages_rendered(self) -> int:
        return self.renderer.pages_rendered

    @property
    def cache_hits(self) -> int:
        return self.cache.hits + self.cache.disk_hits

    def check_lease(self) -> None:
        self.store.check_lease()

    def forget(self) -> None:
        """Drop cached images and page-map entries (an export, batch by batch)."""
        with self.lock:
            self.cache.clear()
            self.pagemap.clear()

    def refresh(self) -> None:
        """Forget everything cached and reload the state (after changes made elsewhere)."""
        with self.lock:
            self.state = self.store.load_state()
            self.cache.clear()
            self.pagemap.clear()
            self.renderer.set_state(self.state)

    def cache_stamp(self) -> CacheStamp | None:
        """The stamp the local page cache may be trusted for (None: not at all)."""
        if self.unresolved is not None or not self.state.store_id:
            return None
        return CacheStamp(self.state.store_id, self.state.commit_seq, self.state.page_size)

    def close(self) -> None:
        self.cache.close(self.cache_stamp())


def _layout(state: StoreState) -> tuple[int, int]:
    """Page size and usable size: when they change, no cached page is valid."""
    if state.header is None:
        return state.page_size, state.page_size
    return state.page_size, DatabaseHeader.parse(state.header).usable_size


def _nothing_to_write(part: Changeset, state: StoreState) -> bool:
    return part.is_empty() and part.header == state.header and part.page_count == state.page_count
