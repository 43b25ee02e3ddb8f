"""Commit detection for one virtual database file and its side files.

A `DatabaseFile` is what the FUSE layer talks to for `NAME`, `NAME-journal`,
`NAME-wal` and `NAME-shm`. It keeps the side files as byte buffers, decides
what a read of the database file returns, and turns the commit points SQLite
leaves in the journal and WAL bytes into `Database.commit` calls
(README "Commit detection"; DESIGN layer 4 and "Tricky cases"):

Rollback journal (DELETE, TRUNCATE, PERSIST, and locking_mode=EXCLUSIVE):
database-file writes made while a journal with a valid header exists go to
the *overlay* (served back to SQLite). The commit point is the journal's
end: unlink (DELETE), truncation to 0 bytes (TRUNCATE), or a write that
removes the header's magic (PERSIST, exclusive locking mode); the overlay is
then committed. A hot journal played back is more overlay writes whose
commit changes nothing. (atomiccommit.html §3, fileformat2 §5.)

WAL: the `WalLog` finds commit frames; a commit is applied when the last
byte of its commit frame arrives (synchronous=NORMAL never fsyncs it). Until a
page is checkpointed, reads of the database file return its *pre-image*:
readers holding an older snapshot read it there (wal.html "How WAL Works").
Checkpoint writes replace pre-images; a new WAL header, a WAL truncated
to 0 or an unlinked WAL mean everything was checkpointed and the file equals
PostgreSQL again, so the pre-images go.

The system call that makes a commit visible returns only after
`Database.commit` returned (run in a worker thread so the trio loop that
serves every other request never blocks). If it raises, the call fails and
the bytes that would make the commit visible are not kept: the journal stays
(hot, SQLite rolls it back), the WAL commit frame is dropped.

Database-file writes with neither a journal nor a WAL (journal_mode=OFF or
MEMORY) are refused with EIO: pgfs could never tell where such a
transaction ends. The one change taken without either is SQLite's truncation
of the file to the image just committed, after a commit that shrank it
(`_trims_past_committed_image`).
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import trio

from pgfs.sqlite.header import DatabaseHeader
from pgfs.sqlite.journal import JOURNAL_MAGIC, journal_is_finalized
from pgfs.tracker.blocks import BlockMap, assemble, base_ranges, plan_read
from pgfs.tracker.wal_log import WalLog, WalTransaction

log = logging.getLogger("pgfs.tracker")

# A rollback commit whose pages all equal what PostgreSQL renders (a ROLLBACK
# after spilling, a hot journal played back) is not sent to the store; the
# comparison costs one render per page, so it is skipped for huge commits. A
# commit with any changed page sends every page SQLite wrote, unchanged or not.
COMPARE_LIMIT = 2048


class Backend(Protocol):
    """What the tracker needs from `pgfs.emulator.database.Database`."""

    page_size: int
    page_count: int

    def read(self, pgno: int) -> bytes: ...

    def commit(self, changed: dict[int, bytes], page_count: int, source: str) -> Any: ...


class Role(Enum):
    """The files of one database, by name suffix."""

    DB = ""
    JOURNAL = "-journal"
    WAL = "-wal"
    SHM = "-shm"


class TrackerError(Exception):
    """A file operation pgfs refuses or could not complete; `errno` is what the caller sees."""

    errno = errno.EIO


class CommitFailedError(TrackerError):
    """`Database.commit` raised: the commit is not in PostgreSQL and not visible to SQLite."""


class NoJournalError(TrackerError):
    """A database-file write with neither a rollback journal nor a WAL (journal_mode OFF/MEMORY)."""


class ReadOnlyError(TrackerError):
    errno = errno.EROFS


@dataclass
class SideFile:
    """A `-journal`, `-wal` or `-shm` file: bytes in memory.

    `attached` is False once the file was unlinked: writes still land in its
    buffer (an mmap of `-shm` is written back after SQLite unlinked it) but
    mean nothing to the tracker.
    """

    role: Role
    data: bytearray = field(default_factory=bytearray)
    attached: bool = True


@dataclass
class CommitRecord:
    """One applied commit, for logs and `.pgfs-status`."""

    source: str
    pages: int
    page_count: int
    ms: float
    at: float
    summary: str


@dataclass
class LatencyHistogram:
    """Commit latencies in cumulative buckets, as a Prometheus histogram wants them."""

    bounds: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    counts: list[int] = field(default_factory=lambda: [0] * 12)  # one per bound, then +Inf
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
        self.counts[-1] += 1

    @property
    def count(self) -> int:
        return self.counts[-1]


@dataclass
class TrackerStats:
    """Counters for `.pgfs-status` and the metrics endpoint."""

    commits_by_source: dict[str, int] = field(default_factory=dict)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, op) -> rows
    pages_committed: int = 0
    commit_seconds: float = 0.0
    commit_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    commits: int = 0
    commits_skipped: int = 0
    failed_commits: int = 0
    refused_writes: int = 0
    last_commit: CommitRecord | None = None
    last_error: str | None = None
    last_error_at: float | None = None


def _journal_active(data: bytearray) -> bool:
    return len(data) >= 8 and data[:8] == JOURNAL_MAGIC


def describe_stats(stats: Any) -> str:
    """'T +i ~u -d, ...' from a CommitStats (inserted/updated/deleted per table)."""
    inserted = getattr(stats, "inserted", None) or {}
    updated = getattr(stats, "updated", None) or {}
    deleted = getattr(stats, "deleted", None) or {}
    if not all(isinstance(x, dict) for x in (inserted, updated, deleted)):
        return str(stats)
    tables = sorted(set(inserted) | set(updated) | set(deleted))
    parts = [f"{t} +{inserted.get(t, 0)} ~{updated.get(t, 0)} -{deleted.get(t, 0)}" for t in tables]
    return ", ".join(parts) if parts else "no row changes"


class DatabaseFile:
    """One virtual database (`name`) over a `Database`, with its side files."""

    def __init__(self, name: str, database: Backend, *, read_only: bool = False) -> None:
        self.name = name
        self.database = database
        self.read_only = read_only
        self.size = database.page_count * database.page_size if database.page_count else 0
        self._committed_size = self.size
        self.overlay: BlockMap | None = None
        self.preimages: BlockMap | None = None
        self.journal: SideFile | None = None
        self.wal: SideFile | None = None
        self.wal_log: WalLog | None = None
        self.shm: SideFile | None = None
        self.stats = TrackerStats()
        self._lock = trio.Lock()
        self._refusing = False
        self._last_wal_commit: tuple[dict[int, bytes], int] | None = None
        self.commits_in_flight = 0

    # --- side files -----------------------------------------------------------------

    def side(self, role: Role) -> SideFile | None:
        return {Role.JOURNAL: self.journal, Role.WAL: self.wal, Role.SHM: self.shm}[role]

    def create_side(self, role: Role) -> SideFile:
        """A new empty side file (the caller checked that none exists)."""
        created = SideFile(role)
        if role is Role.JOURNAL:
            self.journal = created
        elif role is Role.WAL:
            self.wal = created
            self.wal_log = WalLog(created.data)
        elif role is Role.SHM:
            self.shm = created
        else:
            raise ValueError(role)
        self._refusing = False
        return created

    def read_side(self, side: SideFile, offset: int, size: int) -> bytes:
        return bytes(side.data[offset : offset + size])

    async def write_side(self, side: SideFile, offset: int, data: bytes) -> None:
        if not side.attached or side.role is Role.SHM:
            _store(side.data, offset, data)
            return
        if self.read_only:
            raise ReadOnlyError(f"{self.name}{side.role.value}: mounted read-only")
        async with self._lock:
            if side.role is Role.JOURNAL:
                await self._write_journal(side, offset, data)
            else:
                await self._write_wal(offset, data)

    async def truncate_side(self, side: SideFile, size: int) -> None:
        if not side.attached or side.role is Role.SHM:
            _truncate(side.data, size)
            return
        if self.read_only and size != len(side.data):
            raise ReadOnlyError(f"{self.name}{side.role.value}: mounted read-only")
        async with self._lock:
            if side.role is Role.JOURNAL:
                if size == 0 and self._overlay_dirty():
                    # journal_mode=TRUNCATE (and PERSIST with journal_size_limit=0).
                    await self._commit_rollback("journal truncated")
                _truncate(side.data, size)
            else:
                assert self.wal_log is not None
                if self.wal_log.truncate(size):
                    self._drop_preimages("WAL truncated")

    async def unlink_side(self, role: Role) -> SideFile | None:
        """Remove a side file from the directory; an active journal's unlink is a commit."""
        async with self._lock:
            side = self.side(role)
            if side is None:
                return None
            if role is Role.JOURNAL and self._overlay_dirty():
                if self.read_only:
                    raise ReadOnlyError(f"{self.name}-journal: mounted read-only")
                await self._commit_rollback("journal deleted")  # journal_mode=DELETE
            side.attached = False
            if role is Role.JOURNAL:
                self.journal = None
            elif role is Role.WAL:
                self.wal = None
                self.wal_log = None
                self._drop_preimages("WAL deleted")
            else:
                self.shm = None
            return side

    # --- the database file ----------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes:
        """What SQLite sees in the database file (overlay, then pre-images, then PostgreSQL)."""
        fetched: dict[tuple[int, int], bytes] = {}
        while True:
            end = min(offset + size, self.size)
            if offset >= end:
                return b""
            segments = plan_read(offset, end - offset, self._layers())
            missing = [r for r in base_ranges(segments) if r not in fetched]
            if not missing:
                return assemble(segments, lambda start, stop: fetched[(start, stop)])
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

    def _overlay_dirty(self) -> bool:
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
        the committed image: every byte it removes lies past the last page
        PostgreSQL holds, and no byte of a committed page changes. Any other write or
        truncation without a journal (journal_mode OFF or MEMORY) is refused by
        `_write_layer`.
        """
        no_journal = self.journal is None or not _journal_active(self.journal.data)
        committed_bytes = self.database.page_count * self.database.page_size
        return (
            no_journal
            and self.wal is None
            and not self.overlay
            and size < self.size
            and size == committed_bytes
        )

    def _write_layer(self) -> BlockMap:
        """Where a database-file write goes: the overlay, the pre-images, or nowhere."""
        if self.journal is not None and _journal_active(self.journal.data):
            if self.overlay is None:
                self.overlay = BlockMap(self._page_size())
            return self.overlay
        if self.wal is not None:
            # A checkpoint copying committed frames into the database file.
            if self.preimages is None:
                self.preimages = BlockMap(self._wal_page_size())
            return self.preimages
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

    def _wal_page_size(self) -> int:
        if self.wal_log is not None and self.wal_log.header is not None:
            return self.wal_log.header.page_size
        return self._page_size()

    def _drop_preimages(self, why: str) -> None:
        if self.preimages:
            log.debug("%s: %s, %d pre-images dropped", self.name, why, len(self.preimages))
        self.preimages = None
        self._last_wal_commit = None

    async def _fetch_blocks(self, layer: BlockMap, indexes: list[int]) -> dict[int, bytes]:
        """Current file bytes of whole blocks of `layer` (from the layers under it)."""
        below = self._layers()
        below = below[below.index(layer) + 1 :] if layer in below else below
        size = layer.block_size
        ranges = [(i * size, (i + 1) * size) for i in indexes]
        return await trio.to_thread.run_sync(self._compose_sync, ranges, below)

    # --- internals: PostgreSQL side (worker threads) ---------------------------------

    def _read_pages_sync(self, pgnos: list[int]) -> dict[int, bytes]:
        """Rendered pages (zeros past the end); one batch when the Database offers
        `read_many` (an addition to the contract's `read`: fewer PostgreSQL round trips)."""
        page_count = self.database.page_count
        inside = [p for p in pgnos if 1 <= p <= page_count]
        read_many = getattr(self.database, "read_many", None)
        if read_many is not None and len(inside) > 1:
            found = dict(read_many(inside))
        else:
            found = {p: self.database.read(p) for p in inside}
        zeros = bytes(self.database.page_size)
        return {p: bytes(found[p]) if p in found else zeros for p in pgnos}

    def _base_bytes_sync(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the file as PostgreSQL renders it (zeros past its end)."""
        page_size = self.database.page_size
        first = start // page_size + 1
        last = (stop - 1) // page_size + 1
        pages = self._read_pages_sync(list(range(first, last + 1)))
        data = b"".join(pages[p] for p in range(first, last + 1))
        skip = start - (first - 1) * page_size
        return data[skip : skip + stop - start]

    def _base_ranges_sync(self, ranges: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {(a, b): self._base_bytes_sync(a, b) for a, b in ranges}

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

    async def _write_journal(self, side: SideFile, offset: int, data: bytes) -> None:
        old = bytes(side.data[offset : offset + len(data)])
        old_length = len(side.data)
        _store(side.data, offset, data)
        if offset < 8 and self._overlay_dirty() and journal_is_finalized(bytes(side.data[:28])):
            # The header lost its magic: PERSIST mode or locking_mode=EXCLUSIVE.
            try:
                await self._commit_rollback("journal header zeroed")
            except TrackerError:
                side.data[offset : offset + len(old)] = old
                del side.data[old_length:]
                raise

    async def _commit_rollback(self, why: str) -> None:
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
        self.overlay = None
        self._committed_size = size
        if result is None:
            self.stats.commits_skipped += 1
            log.info("%s: %s, no page changed (rolled back): nothing to commit", self.name, why)
            return
        stats, pages, page_count = result
        self._succeeded("journal", stats, pages, page_count, started, why)

    def _rollback_commit_sync(
        self, overlay: BlockMap, size: int, lower: list[BlockMap]
    ) -> tuple[Any, int, int] | None:
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
        pgnos: set[int] = set()
        for index in overlay.blocks:
            first = index * overlay.block_size // page_size + 1
            last = ((index + 1) * overlay.block_size - 1) // page_size + 1
            pgnos.update(range(first, last + 1))
        changed = {
            p: view((p - 1) * page_size, p * page_size) for p in sorted(pgnos) if p <= page_count
        }
        same_geometry = (
            page_size == self.database.page_size and page_count == self.database.page_count
        )
        if same_geometry and len(changed) <= COMPARE_LIMIT:
            # All or nothing: a page SQLite wrote may hold the bytes PostgreSQL renders
            # and still have a new role (VACUUM moved another b-tree's overflow page of
            # zeros there), and the diff learns roles only from the pages it is given.
            current = self._read_pages_sync(list(changed))
            if all(current[p] == img for p, img in changed.items()):
                return None
        stats = self.database.commit(changed, page_count, "journal")
        return stats, len(changed), page_count

    # --- WAL ------------------------------------------------------------------------

    async def _write_wal(self, offset: int, data: bytes) -> None:
        wal = self.wal_log
        assert wal is not None
        undo, restarted = wal.apply(offset, data)
        if restarted:
            self._drop_preimages("new WAL header")
        transaction = wal.pending_commit()
        if transaction is None:
            return
        try:
            await self._commit_wal(transaction)
        except TrackerError:
            wal.undo(undo)
            raise
        wal.mark_committed(transaction)

    async def _commit_wal(self, transaction: WalTransaction) -> None:
        page_size = self._wal_page_size()
        if self._last_wal_commit == (transaction.pages, transaction.page_count):
            # A commit frame repeated to pad the WAL to a sector (synchronous=FULL).
            self.stats.commits_skipped += 1
            return
        if self.preimages is None or self.preimages.block_size != page_size:
            self.preimages = BlockMap(page_size)
        # Pre-images of every page this commit changes or removes, as the file holds them
        # now, before PostgreSQL moves on (pages past the file's end are not in it).
        old_count = self.database.page_count
        file_pages = -(-self.size // page_size)
        affected = set(transaction.pages) | set(range(transaction.page_count + 1, old_count + 1))
        need = sorted(p for p in affected if p <= file_pages and (p - 1) not in self.preimages)
        self.commits_in_flight += 1
        started = time.monotonic()
        try:
            if need:
                images = await trio.to_thread.run_sync(self._base_pages_sync, need, page_size)
                for pgno, image in images.items():
                    if (pgno - 1) not in self.preimages:  # a checkpoint write may have won
                        self.preimages.put(pgno - 1, image)
            stats = await trio.to_thread.run_sync(
                self.database.commit, dict(transaction.pages), transaction.page_count, "wal"
            )
        except Exception as exc:
            self._failed("wal", exc)
            raise CommitFailedError(f"{self.name}: commit failed: {exc}") from exc
        finally:
            self.commits_in_flight -= 1
        self._last_wal_commit = (transaction.pages, transaction.page_count)
        self._succeeded("wal", stats, len(transaction.pages), transaction.page_count, started)

    # --- bookkeeping ----------------------------------------------------------------

    def _succeeded(
        self, source: str, stats: Any, pages: int, page_count: int, t0: float, why: str = ""
    ) -> None:
        ms = (time.monotonic() - t0) * 1000
        summary = describe_stats(stats)
        self.stats.commits += 1
        self.stats.commits_by_source[source] = self.stats.commits_by_source.get(source, 0) + 1
        self.stats.pages_committed += pages
        self.stats.commit_seconds += ms / 1000
        self.stats.commit_latency.observe(ms / 1000)
        for op in ("inserted", "updated", "deleted"):
            counts = getattr(stats, op, None)
            if isinstance(counts, dict):
                for table, n in counts.items():
                    key = (table, op)
                    self.stats.rows[key] = self.stats.rows.get(key, 0) + int(n)
        self.stats.last_commit = CommitRecord(source, pages, page_count, ms, time.time(), summary)
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
            "%s: commit via %s failed, the application gets EIO and PostgreSQL keeps the "
            "previous state: %s",
            self.name,
            source,
            self.stats.last_error,
        )

    @property
    def mode(self) -> str:
        if self.wal is not None:
            return "wal"
        if self.journal is not None:
            return "rollback"
        return "idle"

    def status(self) -> dict[str, Any]:
        last = self.stats.last_commit
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


def _store(buffer: bytearray, offset: int, data: bytes | memoryview) -> None:
    if offset > len(buffer):
        buffer.extend(bytes(offset - len(buffer)))
    buffer[offset : offset + len(data)] = data


def _truncate(buffer: bytearray, size: int) -> None:
    if size < len(buffer):
        del buffer[size:]
    else:
        buffer.extend(bytes(size - len(buffer)))


__all__ = [
    "Backend",
    "CommitFailedError",
    "CommitRecord",
    "DatabaseFile",
    "NoJournalError",
    "ReadOnlyError",
    "Role",
    "SideFile",
    "TrackerError",
    "describe_stats",
]
