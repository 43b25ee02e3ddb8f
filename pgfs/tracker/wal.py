"""WAL mode: which writes complete a commit, and what the database file shows (I/O-free).

The `WalLog` finds commits in the `-wal` bytes (wal_log.py). Until a page is
checkpointed, database-file reads of it return its *pre-image*: readers
holding an older snapshot read it there (wal.html "How WAL Works"). So
before a commit reaches the server, the images the file holds now of every
page it changes or cuts off are kept; checkpoint writes replace them; a new
WAL header, a WAL truncated to 0 or an unlinked WAL mean everything was
checkpointed and the file equals the server again, so the pre-images go.
`WalTracker` decides; the shell (`database_file.py`) reads pages and commits.
"""

from __future__ import annotations

from array import array
from itertools import chain

from pgfs.tracker.blocks import BlockMap
from pgfs.tracker.buffers import SpillBuffer
from pgfs.tracker.wal_log import WalLog, WalTransaction, WalUndo


class WalTracker:
    """The `-wal` bytes and the pre-images of one database file."""

    def __init__(self) -> None:
        self.log: WalLog | None = None
        self.preimages: BlockMap | None = None

    @property
    def data(self) -> SpillBuffer | None:
        return self.log.data if self.log is not None else None

    def attach(self, data: SpillBuffer) -> None:
        self.log = WalLog(data)

    def page_size(self, default: int) -> int:
        if self.log is not None and self.log.header is not None:
            return self.log.header.page_size
        return default

    def preimages_for(self, page_size: int) -> BlockMap:
        if self.preimages is None or self.preimages.block_size != page_size:
            self.preimages = BlockMap(page_size)
        return self.preimages

    # ------------------------------------------------------------------ events

    def write(self, offset: int, data: bytes) -> tuple[WalTransaction | None, WalUndo]:
        """Store a write; the transaction it completes, if any."""
        assert self.log is not None
        undo, restarted = self.log.apply(offset, data)
        if restarted:
            self.drop_preimages()
        return self.log.pending_commit(), undo

    def undo(self, undo: WalUndo) -> None:
        """The commit failed: the bytes that would make it visible go."""
        assert self.log is not None
        self.log.undo(undo)

    def committed(self, transaction: WalTransaction) -> None:
        assert self.log is not None
        self.log.mark_committed(transaction)

    def truncate(self, size: int) -> None:
        assert self.log is not None
        if self.log.truncate(size):
            self.drop_preimages()

    def detach(self) -> None:
        self.log = None
        self.drop_preimages()

    def drop_preimages(self) -> None:
        if self.preimages is not None:
            self.preimages.clear()
        self.preimages = None

    def missing_preimages(
        self, transaction: WalTransaction, old_page_count: int, file_pages: int, page_size: int
    ) -> array:
        """Pages whose current image must be kept before `transaction` reaches the server:
        those it changes or cuts off, still in the file, without a pre-image yet; in
        order, in an array of 4 bytes a page.

        No set or list of page numbers: a VACUUM changes every page, and an int object
        per page (with a set's table) would hold tens of MB for the whole commit. The
        transaction's pages come in order (`FramePages`) and all lie at or below its
        page count, so the pages it cuts off follow them.
        """
        kept = self.preimages_for(page_size)
        cut_off = range(transaction.page_count + 1, old_page_count + 1)
        affected = chain(transaction.pages, cut_off)
        return array("I", (p for p in affected if p <= file_pages and (p - 1) not in kept))

    def keep_preimages(self, images: dict[int, bytes], page_size: int) -> None:
        kept = self.preimages_for(page_size)
        for pgno, image in images.items():
            if (pgno - 1) not in kept:  # a checkpoint write may have come first
                kept.put(pgno - 1, image)
