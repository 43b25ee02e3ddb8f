"""The `-wal` file of one database: a byte buffer and the transactions in it.

Why bytes and offsets rather than "frames as SQLite wrote them" (DESIGN,
"Tricky cases"): the kernel cuts writes at 4 KiB boundaries, so a frame
(24-byte header + page, fileformat2 §4.1, walformat.html) arrives in pieces,
and SQLite itself rewrites parts of frames:

- a transaction that spilled frames and then rolled back leaves frames with
  no commit frame; the next transaction writes over them from the same offset
  (the frame after the last commit frame);
- a page changed again after it was spilled in the same transaction is
  overwritten in place; from then on SQLite writes frame headers with zero
  salts and checksums, and after the commit frame it rewrites the headers
  from the first overwritten frame to the commit frame (`walRewriteChecksums`
  in wal.c) — so the commit frame becomes valid only with that last rewrite;
- under synchronous=FULL without powersafe overwrite the commit frame is
  repeated to pad the WAL to a sector boundary;
- a restarted WAL gets a new header (new salts) at offset 0 and its frames
  overwrite the old ones.

The test is therefore SQLite's own (walDecodeFrame): frames are valid when
their salts equal the header's and their checksums chain from the previous
valid frame.

A commit is the moment the frames after the last commit frame
form a valid chain that ends in a commit frame ("database size after
commit" not zero): whatever write completes that chain — the commit frame's
last byte, or the checksum rewrite of its header — is the commit point, and
it is exactly the write without which SQLite's recovery would not see the
commit. Stale bytes from a rolled-back transaction cannot pass for new ones
(the checksum covers every byte of the page). Frames before `committed_end`
change nothing when rewritten; repeated commit frames are transactions that
change nothing.

One exception follows SQLite 3.40 rather than its recovery: `ROLLBACK TO` a
savepoint, after the transaction spilled frames and overwrote one in place,
drops those frames but not the memory of the overwrite (`iReCksum`; later
releases reset it there). The frames SQLite appends after it keep zero salts
and checksums ("unsalted"); the rewrite after the commit frame starts at the
stale frame, or does not run at all when the stale frame lies past the
commit frame. SQLite itself takes the transaction as committed (its
wal-index lists the frames), so the mount must too. Unsalted frames are
therefore accepted where a valid chain leads to them, and an unsalted commit
frame commits with the write that completes its page (the bytes cannot tell
whether a rewrite follows). A salted frame after unsalted ones continues
SQLite's chain in memory: that of the last salted frame before them. After
an ordinary in-place overwrite the chain is broken at the overwritten frame
(its page no longer matches its checksum), so the unsalted frames after it
are not reached and the commit waits for the rewrite as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.wal import (
    WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE,
    WalFrameHeader,
    WalHeader,
    frame_offset,
    wal_checksum,
)
from pgfs.tracker.buffers import PageIndex, SpillBuffer

HEADER_MEMO = 4096
"""Frame headers `WalLog` remembers at most (the frames of an ordinary transaction
and the one before them; a bigger transaction reads the rest again when needed)."""


class FramePages(Mapping[int, bytes]):
    """The pages of one transaction, read from the WAL buffer when asked for.

    A transaction of every page (VACUUM) is never held in memory: the diff and
    the page cache read its pages one by one from the (spilled) WAL bytes.
    The last frame of a page wins.
    """

    def __init__(self, data: SpillBuffer, page_size: int, frames: PageIndex) -> None:
        self._data = data
        self._page_size = page_size
        self._frames = frames

    def __getitem__(self, pgno: int) -> bytes:
        index = self._frames[pgno]
        start = frame_offset(index, self._page_size) + WAL_FRAME_HEADER_SIZE
        return self._data.read(start, self._page_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, pgno: object) -> bool:
        return pgno in self._frames


@dataclass
class WalTransaction:
    """The frames [first, last] of one committed WAL transaction."""

    first: int
    last: int
    pages: FramePages
    page_count: int


@dataclass
class WalUndo:
    offset: int
    old_bytes: bytes
    old_length: int
    header: WalHeader | None
    committed_end: int
    verified_end: int


@dataclass(frozen=True)
class UnsaltedRun:
    """Frames [first, end) verified as unsalted (module docstring), and the checksum
    of the salted frame (or WAL header) before them."""

    first: int
    end: int
    chain_before: tuple[int, int]

    def cut(self, first_touched: int, last_touched: int) -> UnsaltedRun | None:
        """The run after a write to frames [first_touched, last_touched]."""
        if last_touched < self.first or first_touched >= self.end:
            return self
        if first_touched <= self.first:
            return None
        return UnsaltedRun(self.first, first_touched, self.chain_before)


def parse_wal_header(data: SpillBuffer) -> WalHeader | None:
    """The WAL header when its 32 bytes are there and valid (magic, version, checksum)."""
    if len(data) < WAL_HEADER_SIZE:
        return None
    try:
        header = WalHeader.parse(data.read(0, WAL_HEADER_SIZE))
    except FormatError:
        return None
    if not header.checksum_valid:
        return None
    return header


class WalLog:
    """Commit detection over the bytes `data` of a `-wal` file."""

    def __init__(self, data: SpillBuffer | None = None) -> None:
        self.data = data if data is not None else SpillBuffer()
        self.header: WalHeader | None = None
        self.committed_end = 0
        """Index (0-based) of the frame after the last commit frame of this WAL generation."""
        self.verified_end = 0
        """Frames [committed_end, verified_end) are valid (salts, checksum chain)."""
        self.commits = 0
        self._last_write_end = 0
        """End offset of the last write: an unsalted commit frame commits when it ends there."""
        self._run: UnsaltedRun | None = None
        """The unsalted frames verified last, so that rewrites of the headers before them do
        not verify them again (a rewrite of n headers stays linear)."""
        self._headers: dict[int, WalFrameHeader] = {}
        """Headers of frames parsed since their bytes last changed, by index: verifying a
        frame needs the one before it (`_chain_start`) and a commit needs the page number
        of each (`_transaction`), so each is read from the buffer once."""

    @property
    def frame_size(self) -> int:
        assert self.header is not None
        return WAL_FRAME_HEADER_SIZE + self.header.page_size

    def _frame_index(self, offset: int) -> int:
        return (offset - WAL_HEADER_SIZE) // self.frame_size

    # --- mutation -------------------------------------------------------------------

    def apply(self, offset: int, data: bytes | memoryview) -> tuple[WalUndo, bool]:
        """Store a write. Returns the undo record and whether a new WAL generation began."""
        length = len(data)
        undo = WalUndo(
            offset=offset,
            old_bytes=self.data.read(offset, length),
            old_length=len(self.data),
            header=self.header,
            committed_end=self.committed_end,
            verified_end=self.verified_end,
        )
        self.data.write(offset, data)
        self._last_write_end = offset + length
        restarted = False
        if offset < WAL_HEADER_SIZE:
            restarted = self._reread_header()
        elif self.header is not None:
            # Frames this write touched must be verified again.
            touched = self._frame_index(offset)
            last_touched = self._frame_index(offset + length - 1)
            self.verified_end = max(self.committed_end, min(self.verified_end, touched))
            if self._run is not None:
                self._run = self._run.cut(touched, last_touched)
            self._forget_headers(touched, last_touched)
        return undo, restarted

    def undo(self, undo: WalUndo) -> None:
        """Forget a write (its commit failed): the bytes that would make it visible go."""
        self.data.write(undo.offset, undo.old_bytes)
        self.data.truncate(undo.old_length)
        self.header = undo.header
        self.committed_end = undo.committed_end
        self.verified_end = undo.verified_end
        self._forget_parsed()

    def truncate(self, size: int) -> bool:
        """ftruncate; returns True when the WAL was reset (cut below its header)."""
        self.data.truncate(size)
        if size < WAL_HEADER_SIZE:
            self._reset(None)
            return True
        if self.header is not None:
            whole = max(0, (size - WAL_HEADER_SIZE) // self.frame_size)
            self.verified_end = max(self.committed_end, min(self.verified_end, whole))
            self._forget_parsed()
        return False

    def _reset(self, header: WalHeader | None) -> None:
        self.header = header
        self.committed_end = 0
        self.verified_end = 0
        self._forget_parsed()

    def _reread_header(self) -> bool:
        header = parse_wal_header(self.data)
        old = self.header
        if header is None:
            if old is not None:
                self._reset(None)
            return False
        if old is None or (old.salt1, old.salt2, old.page_size) != (
            header.salt1,
            header.salt2,
            header.page_size,
        ):
            self._reset(header)
            return True
        self.header = header
        self.verified_end = self.committed_end
        self._forget_parsed()
        return False

    def _forget_parsed(self) -> None:
        """Drop what was remembered of parsed frames (the bytes or the generation changed)."""
        self._run = None
        self._headers.clear()

    # --- detection ------------------------------------------------------------------

    def _frame_header(self, index: int) -> WalFrameHeader:
        frame = self._headers.get(index)
        if frame is None:
            start = frame_offset(index, self.frame_size - WAL_FRAME_HEADER_SIZE)
            frame = WalFrameHeader.parse(self.data.read(start, WAL_FRAME_HEADER_SIZE))
            self._remember(index, frame)
        return frame

    def _remember(self, index: int, frame: WalFrameHeader) -> None:
        if len(self._headers) < HEADER_MEMO or index in self._headers:
            self._headers[index] = frame

    def _forget_headers(self, first: int, last: int) -> None:
        """Frames [first, last] were written: their headers must be read again."""
        if not self._headers:
            return
        if last - first < len(self._headers):
            for index in range(first, last + 1):
                self._headers.pop(index, None)
        else:
            self._headers = {i: f for i, f in self._headers.items() if not first <= i <= last}

    def _stored_chain(self, index: int) -> tuple[int, int]:
        """The checksum stored in the header of frame `index` (-1: the WAL header's)."""
        assert self.header is not None
        if index < 0:
            return self.header.checksum1, self.header.checksum2
        frame = self._frame_header(index)
        return frame.checksum1, frame.checksum2

    def _chain_start(self, index: int) -> tuple[int, int]:
        """The checksum a salted frame at `index` continues from: the one stored before
        it, or after unsalted frames SQLite's chain in memory, that of the last salted
        frame before them (module docstring)."""
        before = index - 1
        run = self._run
        if run is not None and run.first <= before < run.end:
            return run.chain_before
        while before >= 0 and self._frame_header(before).is_unsalted:
            before -= 1
        return self._stored_chain(before)

    def _verify_next(self) -> WalFrameHeader | None:
        """Verify the frame at `verified_end`; its header if valid (then verified_end moves)."""
        header = self.header
        assert header is not None
        index = self.verified_end
        run = self._run
        if run is not None and run.first <= index < run.end - 1:
            self.verified_end = run.end - 1  # unchanged unsalted frames: known valid
            index = self.verified_end
        start = frame_offset(index, header.page_size)
        if start + self.frame_size > len(self.data):
            return None
        raw = self.data.read(start, self.frame_size)
        frame = WalFrameHeader.parse(raw)
        self._remember(index, frame)
        if frame.pgno == 0:
            return None
        if frame.is_unsalted:
            if frame.is_commit and self._last_write_end != start + self.frame_size:
                return None
            self._note_unsalted(index)
            self.verified_end = index + 1
            return frame
        if (frame.salt1, frame.salt2) != (header.salt1, header.salt2):
            return None
        s1, s2 = self._chain_start(index)
        big = header.big_endian_checksums
        s1, s2 = wal_checksum(raw[:8], s1, s2, big)
        s1, s2 = wal_checksum(raw[WAL_FRAME_HEADER_SIZE:], s1, s2, big)
        if (s1, s2) != (frame.checksum1, frame.checksum2):
            return None
        self.verified_end = index + 1
        return frame

    def _note_unsalted(self, index: int) -> None:
        """Extend (or start) the remembered run of unsalted frames with frame `index`."""
        run = self._run
        if run is not None and run.first <= index < run.end:
            return
        first = run.first if run is not None and run.end == index else index
        self._run = UnsaltedRun(first, index + 1, self._chain_start(index))

    def pending_commit(self) -> WalTransaction | None:
        """The transaction whose frames now form a valid chain ending in a commit frame.

        Called after `apply`; advances `verified_end` as far as frames are valid and
        stops at the first commit frame (`mark_committed` moves past it).
        """
        if self.header is None:
            return None
        while True:
            frame = self._verify_next()
            if frame is None:
                return None
            if frame.is_commit:
                return self._transaction(self.committed_end, self.verified_end - 1, frame)

    def _transaction(self, first: int, last: int, commit: WalFrameHeader) -> WalTransaction:
        assert self.header is not None
        frames = PageIndex()
        for index in range(first, last + 1):
            frame = self._frame_header(index)
            if frame.pgno <= commit.commit_size:
                frames[frame.pgno] = index
        pages = FramePages(self.data, self.header.page_size, frames)
        return WalTransaction(first, last, pages, commit.commit_size)

    def mark_committed(self, transaction: WalTransaction) -> None:
        # The next transaction's first frame chains from the commit frame: keep only it.
        commit = self._headers.get(transaction.last)
        self._headers.clear()
        if commit is not None:
            self._headers[transaction.last] = commit
        self.committed_end = transaction.last + 1
        self.verified_end = max(self.verified_end, self.committed_end)
        self.commits += 1
