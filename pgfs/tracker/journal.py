"""Rollback-journal modes: when SQLite's transaction ends (I/O-free).

DELETE, TRUNCATE, PERSIST and locking_mode=EXCLUSIVE (atomiccommit.html §3,
fileformat2 §5). While a journal with a valid header exists, database-file
writes go to the *overlay* (served back to SQLite). The commit point is the
journal's end: its unlink (DELETE), its truncation to 0 bytes (TRUNCATE), or
a write that removes the header's magic (PERSIST, exclusive locking mode).
A hot journal played back is more overlay writes whose commit changes
nothing. `JournalTracker` decides; the shell (`database_file.py`) commits and
tells it how that went.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pgfs.sqlite.journal import JOURNAL_MAGIC, journal_is_finalized
from pgfs.tracker.blocks import BlockMap
from pgfs.tracker.buffers import SpillBuffer


@dataclass(frozen=True)
class JournalEnd:
    """The journal says the transaction ended: commit the overlay."""

    reason: str


@dataclass(frozen=True)
class JournalUndo:
    """How to take back a journal write whose commit failed (the journal stays hot)."""

    offset: int
    old_bytes: bytes
    old_length: int


class OverlayPages(Mapping[int, bytes]):
    """The pages a rollback transaction wrote, read from the overlay when asked for
    (block size = page size: each page is one block)."""

    def __init__(self, overlay: BlockMap, page_count: int) -> None:
        self._overlay = overlay
        self._pgnos = [i + 1 for i in overlay.indexes() if i + 1 <= page_count]

    def __getitem__(self, pgno: int) -> bytes:
        block = self._overlay.get(pgno - 1)
        if block is None:
            raise KeyError(pgno)
        return block

    def __iter__(self) -> Iterator[int]:
        return iter(self._pgnos)

    def __len__(self) -> int:
        return len(self._pgnos)


class JournalTracker:
    """The journal's bytes and the overlay of one database file."""

    def __init__(self) -> None:
        self.journal: SpillBuffer | None = None
        self.overlay: BlockMap | None = None

    def active(self) -> bool:
        """A journal with its magic: the transaction it describes is in force."""
        journal = self.journal
        return journal is not None and journal.read(0, 8) == JOURNAL_MAGIC

    def overlay_for(self, page_size: int) -> BlockMap:
        if self.overlay is None:
            self.overlay = BlockMap(page_size)
        return self.overlay

    # ------------------------------------------------------------------ events

    def write(
        self, offset: int, data: bytes, *, dirty: bool
    ) -> tuple[JournalEnd | None, JournalUndo]:
        """A write to the journal: store it; the header losing its magic ends a
        transaction that wrote the database (PERSIST, exclusive locking mode)."""
        assert self.journal is not None
        undo = JournalUndo(offset, self.journal.read(offset, len(data)), len(self.journal))
        self.journal.write(offset, data)
        if offset < 8 and dirty and journal_is_finalized(self.journal.read(0, 28)):
            return JournalEnd("journal header zeroed"), undo
        return None, undo

    def undo(self, undo: JournalUndo) -> None:
        assert self.journal is not None
        self.journal.write(undo.offset, undo.old_bytes)
        self.journal.truncate(undo.old_length)

    @staticmethod
    def truncating(size: int, *, dirty: bool) -> JournalEnd | None:
        """journal_mode=TRUNCATE (and PERSIST with journal_size_limit=0)."""
        return JournalEnd("journal truncated") if size == 0 and dirty else None

    @staticmethod
    def unlinking(*, dirty: bool) -> JournalEnd | None:
        """journal_mode=DELETE."""
        return JournalEnd("journal deleted") if dirty else None

    def committed(self) -> None:
        if self.overlay is not None:
            self.overlay.clear()
        self.overlay = None

    def detach(self) -> None:
        self.journal = None
