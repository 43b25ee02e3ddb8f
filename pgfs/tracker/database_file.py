"""One virtual database file and its side files: the async shell around the trackers.

A `DatabaseFile` is what the FUSE layer talks to for `NAME`, `NAME-journal`,
`NAME-wal` and `NAME-shm` (README "Commit detection"; DESIGN layer 4 and
"Tricky cases"). The decisions are made by I/O-free state machines:
`JournalTracker` (journal.py) for rollback-journal modes and `WalTracker`
(wal.py) for WAL. This shell does what needs I/O: it serialises requests
with a trio lock, runs reads and commits of the `Backend` in worker threads
(so the trio loop that serves every other request never blocks), and keeps
the counters.

The system call that makes a commit visible returns only after the backend
committed. If it raises, the call fails and the bytes that would make the
commit visible are not kept: the journal stays (hot, SQLite rolls it back),
the WAL commit frame is dropped.

Database-file writes with neither a journal nor a WAL (journal_mode=OFF or
MEMORY) are refused with EIO: pgfs could never tell where such a
transaction ends. The one change taken without either is SQLite's truncation
of the file to the image just committed, after a commit that shrank it
(`_trims_past_committed_image`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from pgfs.sqlite.header import DatabaseHeader
from pgfs.store.changeset import CommitSource
from pgfs.store.interface import CommitStats
from pgfs.tracker.blocks import BlockMap, assemble, base_ranges, plan_read
from pgfs.tracker.errors import CommitFailedError, NoJournalError, ReadOnlyError, TrackerError
from pgfs.tracker.interface import Backend, Role, SideFile
from pgfs.tracker.journal import JournalEnd, JournalTracker, OverlayPages
from pgfs.tracker.stats import CommitRecord, TrackerStats
from pgfs.tracker.wal import WalTracker
from pgfs.tracker.wal_log import WalTransaction

log = logging.getLogger("pgfs.tracker")

COMPARE_LIMIT = 2048
"""A rollback commit whose pages all equal what the store renders (a ROLLBACK after
spilling, a hot journal played back) is not sent; the comparison costs one render
per page, so it is skipped for bigger commits. A commit with any changed page sends
every page SQLite wrote, unchanged or not."""


PREIMAGE_CHUNK = 1024
"""Pre-images fetched at once before a WAL commit: a VACUUM changes every page, and
its pre-images go to a spilling store a chunk at a time (memory stays bounded)."""


class RequestLock:
    """A trio lock that a request takes without a pass through the scheduler when it
    is free (`acquire_nowait`); a request that finds it held waits its turn (FIFO).

    `async with trio.Lock()` always yields once, even when free: a scheduling round
    (an epoll_wait) per write request, and SQLite's requests come one at a time.
    """

    def __init__(self) -> None:
        self._lock = trio.Lock()

    async def __aenter__(self) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class DatabaseFile:
    """One virtual database (`name`) over a `Backend`, with its side files."""

    def __init__(self, name: str, database: Backend, *, read_only: bool = False) -> None:
        self.name = name
        self.database = database
        self.read_only = read_only
        self.size = database.page_count * database.page_size if database.page_count else 0
        self._committed_size = self.size
        self.journal_tracker = JournalTracker()
        self.wal_tracker = WalTracker()
        self.journal: SideFile | None = None
        self.wal: SideFile | None = None
        self.shm: SideFile | None = None
        self.stats = TrackerStats()
        self._lock = RequestLock()
        self._refusing = False
        self.commits_in_flight = 0
        self.on_commit: Callable[[str, float], None] | None = None
        """Called with (source, seconds) after each commit (the latency histogram)."""

    @property
    def overlay(self) -> BlockMap | None:
        return self.journal_tracker.overlay

    @property
    def preimages(self) -> BlockMap | None:
        return self.wal_tracker.preimages

    # --- side files -----------------------------------------------------------------

    def side(self, role: Role) -> SideFile | None:
        return {Role.JOURNAL: self.journal, Role.WAL: self.wal, Role.SHM: self.shm}[role]

    def create_side(self, role: Role) -> SideFile:
        """A new empty side file (the caller checked that none exists)."""
        created = SideFile(role)
        if role is Role.JOURNAL:
            self.journal = created
            self.journal_tracker.journal = created.data
        elif role is Role.WAL:
            self.wal = created
            self.wal_tracker.attach(created.data)
        elif role is Role.SHM:
            self.shm = created
        else:
            raise ValueError(role)
        self._refusing = False
        return created

    def read_side(self, side: SideFile, offset: int, size: int) -> bytes:
        return side.data.read(offset, size)

    async def write_side(self, side: SideFile, offset: int, data: bytes) -> None:
        if not side.attached or side.role is Role.SHM:
            side.data.write(offset, data)
            return
        if self.read_only:
            raise ReadOnlyError(f"{self.name}{side.role.value}: mounted read-only")
        async with self._lock:
            if side.role is Role.JOURNAL:
                await self._write_journal(offset, data)
            else:
                await self._write_wal(offset, data)

    async def truncate_side(self, side: SideFile, size: int) -> None:
        if not side.attached or side.role is Role.SHM:
            side.data.truncate(size)
            return
        if self.read_only and size != len(side.data):
            raise ReadOnlyError(f"{self.name}{side.role.value}: mounted read-only")
        async with self._lock:
            if side.role is Role.JOURNAL:
                end = self.journal_tracker.truncating(size, dirty=self._dirty())
                if end is not None:
                    await self._commit_rollback(end)
                side.data.truncate(size)
            else:
                self.wal_tracker.truncate(size)

    async def unlink_side(self, role: Role) -> SideFile | None:
        """Remove a side file from the directory; an active journal's unlink is a commit."""
        async with self._lock:
            side = self.side(role)
            if side is None:
                return None
            if role is Role.JOURNAL:
                end = self.journal_tracker.unlinking(dirty=self._dirty())
                if end is not None:
                    if self.read_only:
                        raise ReadOnlyError(f"{self.name}-journal: mounted read-only")
                    await self._commit_rollback(end)
                self.journal_tracker.detach()
                self.journal = None
            elif role is Role.WAL:
                self.wal_tracker.detach()
                self.wal = None
            else:
                self.shm = None
            side.attached = False
            return side

    # --- the database file ----------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes:
        """What SQLite sees in the database file (overlay, then pre-images, then the store)."""
        fetched: dict[tuple[int, int], bytes] = {}
        while True:
            end = min(offset + size, self.size)
            if offset >= end:
                return b""
            segments = plan_read(offset, end - offset, self._layers())
            missing = [r for r in base_ranges(segments) if r not in fetched]
            if not missing:
                return assemble(segments, lambda start, stop: fetched[(start, stop)])
            cached = self._cached_ranges(missing)
            if cached is not None:
                fetched.update(cached)
                continue
            # While this thread runs a commit may add pre-images or the overlay may be
            # committed: the plan is made again from the state after it returns.
            fetched.update(await trio.to_thread.run_sync(self._base_ranges_sync, missing))

    async def write(self, offset: int, data: bytes) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{self.name}: mounted read-only")
        async with self._lock:
            layer = self._write_layer()
            missing = layer.missing_for_write(offset, len(data))
            fill = await self._fetch_blocks(layer, missing) if missing else {}
            layer.write(offset, data, fill)
            self.size = max(self.size, offset + len(data))

    async def truncate(self, size: int) -> None:
        if size == self.size:
            return
        if self.read_only:
            raise ReadOnlyError(f"{self.name}: mounted read-only")
        async with self._lock:
            if self._trims_past_committed_image(size):
                self.size = self._committed_size = size
                return
            layer = self._write_layer()
            if size > self.size:
                # Bytes between the old end and the new one read as zeros.
                missing = layer.missing_for_write(self.size, size - self.size)
                fill = await self._fetch_blocks(layer, missing) if missing else {}
                layer.write(self.size, bytes(size - self.size), fill)
            layer.truncate(size)
            self.size = size

    # --- internals: layers ----------------------------------------------------------

    def _layers(self) -> list[BlockMap]:
        return [layer for layer in (self.overlay, self.preimages) if layer]

    def _dirty(self) -> bool:
        return bool(self.overlay) or self.size != self._committed_size

    def _trims_past_committed_image(self, size: int) -> bool:
        """Whether a truncation with no journal and no WAL is SQLite's own, after a commit.

        A commit that makes the database smaller (VACUUM, auto_vacuum=FULL,
        `PRAGMA incremental_vacuum`) truncates the file only once the journal is
        finalized: pager.c `pager_end_transaction` deletes, truncates or zeroes the
        journal (the commit point, atomiccommit.html §3.11) and then, still holding
        the EXCLUSIVE lock, calls `pager_truncate(dbSize)` when the file is larger
        than the database image. That truncation is an ftruncate to exactly
        page_count * page_size of the image just committed, whose header records that
        page count as the "in-header database size" (fileformat2.html §1.3.7). So
        pgfs takes a truncation with no active journal and no WAL when, and only
        when, nothing is pending in the overlay and it shrinks the file to exactly
        the committed image: every byte it removes lies past the last page the
        store holds, and no byte of a committed page changes. Any other write or
        truncation without a journal (journal_mode OFF or MEMORY) is refused by
        `_write_layer`.
        """
        committed_bytes = self.database.page_count * self.database.page_size
        return (
            not self.journal_tracker.active()
            and self.wal is None
            and not self.overlay
            and size < self.size
            and size == committed_bytes
        )

    def _write_layer(self) -> BlockMap:
        """Where a database-file write goes: the overlay, the pre-images, or nowhere."""
        if self.journal_tracker.active():
            return self.journal_tracker.overlay_for(self._page_size())
        if self.wal is not None:
            # A checkpoint copying committed frames into the database file.
            return self.wal_tracker.preimages_for(self.wal_tracker.page_size(self._page_size()))
        self.stats.refused_writes += 1
        if not self._refusing:
            self._refusing = True
            log.error(
                "%s: write to the database file with neither a rollback journal nor a WAL "
                "(journal_mode=OFF or MEMORY?) refused with EIO: pgfs sees commits only in "
                "the -journal or -wal file; use journal_mode DELETE, TRUNCATE, PERSIST or WAL",
                self.name,
            )
        raise NoJournalError(f"{self.name}: database write without a journal or WAL")

    def _page_size(self) -> int:
        return self.database.page_size or 4096

    async def _fetch_blocks(self, layer: BlockMap, indexes: list[int]) -> dict[int, bytes]:
        """Current file bytes of whole blocks of `layer` (from the layers under it)."""
        below = self._layers()
        below = below[below.index(layer) + 1 :] if layer in below else below
        size = layer.block_size
        ranges = [(i * size, (i + 1) * size) for i in indexes]
        return await trio.to_thread.run_sync(self._compose_sync, ranges, below)

    # --- internals: the store side (worker threads) ----------------------------------

    def _read_pages_sync(self, pgnos: list[int]) -> dict[int, bytes]:
        """Rendered pages (zeros past the end), in one batch."""
        page_count = self.database.page_count
        inside = [p for p in pgnos if 1 <= p <= page_count]
        found = self.database.read_many(inside) if inside else {}
        zeros = bytes(self.database.page_size)
        return {p: bytes(found[p]) if p in found else zeros for p in pgnos}

    def _cached_ranges(self, ranges: list[tuple[int, int]]) -> dict[tuple[int, int], bytes] | None:
        """The ranges from the page cache alone (None unless all of it is there)."""
        out = {}
        for start, stop in ranges:
            first, last = self._pages_of(start, stop)
            if last > self.database.page_count:
                return None
            pages = self.database.cached_range(first, last)
            if pages is None:
                return None
            out[(start, stop)] = self._slice(pages, start, stop)
        return out

    def _base_bytes_sync(self, start: int, stop: int, *, client: bool = False) -> bytes:
        """Bytes [start, stop) of the file as the store renders it (zeros past its end).
        A `client` read lets the database render ahead (see emulator/readahead.py)."""
        first, last = self._pages_of(start, stop)
        inside = min(last, self.database.page_count)
        if client and first <= inside:
            return self._slice(self.database.read_range(first, inside), start, stop)
        return self._slice(self._read_pages_sync(list(range(first, last + 1))), start, stop)

    def _pages_of(self, start: int, stop: int) -> tuple[int, int]:
        """The first and last page numbers of bytes [start, stop)."""
        page_size = self.database.page_size
        return start // page_size + 1, (stop - 1) // page_size + 1

    def _slice(self, pages: Mapping[int, bytes], start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the file from its pages (absent ones are zeros)."""
        page_size = self.database.page_size
        first, last = self._pages_of(start, stop)
        zeros = bytes(page_size)
        data = b"".join(pages.get(p, zeros) for p in range(first, last + 1))
        skip = start - (first - 1) * page_size
        return data[skip : skip + stop - start]

    def _base_ranges_sync(self, ranges: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """What a client read needs from the store."""
        return {(a, b): self._base_bytes_sync(a, b, client=True) for a, b in ranges}

    def _compose_sync(
        self, ranges: list[tuple[int, int]], layers: list[BlockMap]
    ) -> dict[int, bytes]:
        out = {}
        for start, stop in ranges:
            segments = plan_read(start, stop - start, layers)
            out[start // (stop - start)] = assemble(segments, self._base_bytes_sync)
        return out

    def _base_pages_sync(self, pgnos: list[int], page_size: int) -> dict[int, bytes]:
        if page_size == self.database.page_size:
            return self._read_pages_sync(pgnos)
        return {p: self._base_bytes_sync((p - 1) * page_size, p * page_size) for p in pgnos}

    # --- rollback journal -----------------------------------------------------------

    async def _write_journal(self, offset: int, data: bytes) -> None:
        end, undo = self.journal_tracker.write(offset, data, dirty=self._dirty())
        if end is None:
            return
        try:
            await self._commit_rollback(end)
        except TrackerError:
            self.journal_tracker.undo(undo)
            raise

    async def _commit_rollback(self, end: JournalEnd) -> None:
        overlay = self.overlay or BlockMap(self._page_size())
        size = self.size
        lower = [self.preimages] if self.preimages else []
        self.commits_in_flight += 1
        started = time.monotonic()
        try:
            result = await trio.to_thread.run_sync(self._rollback_commit_sync, overlay, size, lower)
        except Exception as exc:
            self._failed("journal", exc)
            raise CommitFailedError(f"{self.name}: commit failed: {exc}") from exc
        finally:
            self.commits_in_flight -= 1
        self.journal_tracker.committed()
        self._committed_size = size
        if result is None:
            self.stats.commits_skipped += 1
            log.info(
                "%s: %s, no page changed (rolled back): nothing to commit", self.name, end.reason
            )
            return
        stats, pages, page_count = result
        self._succeeded("journal", stats, pages, page_count, started, end.reason)

    def _rollback_commit_sync(
        self, overlay: BlockMap, size: int, lower: list[BlockMap]
    ) -> tuple[CommitStats, int, int] | None:
        layers = [overlay, *lower]

        def view(start: int, stop: int) -> bytes:
            return assemble(plan_read(start, stop - start, layers), self._base_bytes_sync)

        if size == 0:
            if self.database.page_count == 0:
                return None
            raise RuntimeError("the database file was truncated to 0 bytes")
        header = DatabaseHeader.parse(view(0, 100))
        page_size = header.page_size
        if header.database_size_valid and header.database_size:
            page_count = header.database_size
        else:
            page_count = size // page_size
        changed: Mapping[int, bytes]
        if overlay.block_size == page_size and not lower:
            changed = OverlayPages(overlay, page_count)
        else:
            pgnos: set[int] = set()
            for index in overlay.indexes():
                first = index * overlay.block_size // page_size + 1
                last = ((index + 1) * overlay.block_size - 1) // page_size + 1
                pgnos.update(range(first, last + 1))
            changed = {
                p: view((p - 1) * page_size, p * page_size)
                for p in sorted(pgnos)
                if p <= page_count
            }
        same_geometry = (
            page_size == self.database.page_size and page_count == self.database.page_count
        )
        if same_geometry and len(changed) <= COMPARE_LIMIT:
            # All or nothing: a page SQLite wrote may hold the bytes the store renders
            # and still have a new role (VACUUM moved another b-tree's overflow page of
            # zeros there), and the diff learns roles only from the pages it is given.
            current = self._read_pages_sync(list(changed))
            if all(current[p] == changed[p] for p in changed):
                return None
        stats = self.database.commit(changed, page_count, CommitSource.JOURNAL)
        return stats, len(changed), page_count

    # --- WAL ------------------------------------------------------------------------

    async def _write_wal(self, offset: int, data: bytes) -> None:
        transaction, undo = self.wal_tracker.write(offset, data)
        if transaction is None:
            return
        try:
            await self._commit_wal(transaction)
        except TrackerError:
            self.wal_tracker.undo(undo)
            raise
        self.wal_tracker.committed(transaction)

    async def _commit_wal(self, transaction: WalTransaction) -> None:
        page_size = self.wal_tracker.page_size(self._page_size())
        need = self.wal_tracker.missing_preimages(
            transaction, self.database.page_count, -(-self.size // page_size), page_size
        )
        self.commits_in_flight += 1
        started = time.monotonic()
        try:
            for start in range(0, len(need), PREIMAGE_CHUNK):
                chunk = list(need[start : start + PREIMAGE_CHUNK])
                images = await trio.to_thread.run_sync(self._base_pages_sync, chunk, page_size)
                self.wal_tracker.keep_preimages(images, page_size)
            stats = await trio.to_thread.run_sync(self._wal_commit_sync, transaction)
        except Exception as exc:
            self._failed("wal", exc)
            raise CommitFailedError(f"{self.name}: commit failed: {exc}") from exc
        finally:
            self.commits_in_flight -= 1
        if stats is None:
            self.stats.commits_skipped += 1
            return
        self._succeeded("wal", stats, len(transaction.pages), transaction.page_count, started)

    def _wal_commit_sync(self, transaction: WalTransaction) -> CommitStats | None:
        """Commit, unless the transaction repeats what the store holds (a commit frame
        repeated to pad the WAL to a sector under synchronous=FULL)."""
        pages = transaction.pages
        if transaction.page_count == self.database.page_count and len(pages) <= 4:
            current = self._read_pages_sync(list(pages))
            if all(current[p] == pages[p] for p in pages):
                return None
        return self.database.commit(pages, transaction.page_count, CommitSource.WAL)

    # --- bookkeeping ----------------------------------------------------------------

    def _succeeded(
        self, source: str, stats: CommitStats, pages: int, page_count: int, t0: float, why: str = ""
    ) -> None:
        ms = (time.monotonic() - t0) * 1000
        summary = stats.summary()
        self.stats.commits += 1
        self.stats.commits_by_source[source] = self.stats.commits_by_source.get(source, 0) + 1
        self.stats.pages_committed += pages
        self.stats.commit_seconds += ms / 1000
        for op, counts in (
            ("inserted", stats.inserted),
            ("updated", stats.updated),
            ("deleted", stats.deleted),
        ):
            for table, n in counts.items():
                key = (table, op)
                self.stats.rows[key] = self.stats.rows.get(key, 0) + int(n)
        self.stats.last_commit = CommitRecord(source, pages, page_count, ms, time.time(), summary)
        if self.on_commit is not None:
            self.on_commit(source, ms / 1000)
        log.info(
            "%s: commit via %s: %s; %d pages changed, %d pages in all, %.1f ms",
            self.name,
            source if source == "wal" else f"journal ({why})",
            summary,
            pages,
            page_count,
            ms,
        )

    def _failed(self, source: str, exc: BaseException) -> None:
        self.stats.failed_commits += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.stats.last_error_at = time.time()
        log.error(
            "%s: commit via %s failed, the application gets EIO and the store keeps the "
            "previous state: %s",
            self.name,
            source,
            self.stats.last_error,
        )
        log.debug("%s: where the commit failed", self.name, exc_info=exc)

    def memory_bytes(self) -> int:
        """Bytes of side files, overlay and pre-images held in memory (the rest spilled)."""
        held = sum(side.data.memory_bytes for side in (self.journal, self.wal) if side is not None)
        held += sum(layer.blocks.memory_bytes for layer in self._layers())
        return held

    @property
    def mode(self) -> str:
        if self.wal is not None:
            return "wal"
        if self.journal is not None:
            return "rollback"
        return "idle"

    def status(self) -> dict[str, Any]:
        last = self.stats.last_commit
        lease = self.database.lease_status()
        warmth = self.database.warmth()
        return {
            "mode": self.mode,
            "file_size": self.size,
            "page_size": self.database.page_size,
            "page_count": self.database.page_count,
            "commits": self.stats.commits,
            "commits_skipped": self.stats.commits_skipped,
            "commits_in_flight": self.commits_in_flight,
            "failed_commits": self.stats.failed_commits,
            "refused_writes": self.stats.refused_writes,
            "pending_pages": len(self.overlay or ()),
            "preimages": len(self.preimages or ()),
            "wal_bytes": len(self.wal.data) if self.wal is not None else None,
            "journal_bytes": len(self.journal.data) if self.journal is not None else None,
            "buffered_in_memory": self.memory_bytes(),
            "pages_rendered": self.database.pages_rendered,
            "local_cache": None
            if warmth is None
            else {"pages": warmth.cached, "of": warmth.total, "complete": warmth.complete},
            "lease": {
                "held": lease.held,
                "epoch": lease.epoch,
                "holder": lease.holder.describe() if lease.holder else None,
                "reacquired": lease.reacquired,
                "lost": lease.lost_reason,
            },
            "last_commit": None
            if last is None
            else {
                "source": last.source,
                "pages": last.pages,
                "page_count": last.page_count,
                "ms": round(last.ms, 1),
                "at": last.at,
                "rows": last.summary,
            },
            "last_error": self.stats.last_error,
            "last_error_at": self.stats.last_error_at,
        }
