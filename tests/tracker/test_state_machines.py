"""The tracker's I/O-free state machines, without PostgreSQL, FUSE or trio:
`JournalTracker` (when a rollback transaction ends) and `WalTracker` (which WAL
write completes a commit, which pre-images to keep)."""

from __future__ import annotations

from pgfs.sqlite.journal import JournalHeader
from pgfs.sqlite.wal import frame_offset
from pgfs.tracker.buffers import SpillBuffer
from pgfs.tracker.journal import JournalEnd, JournalTracker, OverlayPages
from pgfs.tracker.wal import WalTracker

from .walbytes import PAGE, page, wal_frame, wal_header

# ---------------------------------------------------------------- rollback journal


def journal_header() -> bytes:
    return JournalHeader(1, 7, 3, 512, PAGE).to_bytes()


def tracker_with_journal() -> JournalTracker:
    tracker = JournalTracker()
    tracker.journal = SpillBuffer()
    return tracker


def test_a_journal_is_active_once_its_magic_is_written() -> None:
    tracker = tracker_with_journal()
    assert not tracker.active()
    end, _ = tracker.write(0, journal_header(), dirty=False)
    assert end is None and tracker.active()


def test_zeroing_the_header_ends_a_transaction_that_wrote_the_database() -> None:
    """journal_mode=PERSIST: the commit point is the write that removes the magic."""
    tracker = tracker_with_journal()
    tracker.write(0, journal_header(), dirty=True)
    end, _ = tracker.write(0, bytes(28), dirty=True)
    assert end == JournalEnd("journal header zeroed")
    assert not tracker.active()


def test_zeroing_the_header_of_a_clean_journal_commits_nothing() -> None:
    tracker = tracker_with_journal()
    tracker.write(0, journal_header(), dirty=False)
    end, _ = tracker.write(0, bytes(28), dirty=False)
    assert end is None


def test_writes_past_the_header_never_end_a_transaction() -> None:
    tracker = tracker_with_journal()
    tracker.write(0, journal_header(), dirty=True)
    end, _ = tracker.write(512, page(1), dirty=True)
    assert end is None and tracker.active()


def test_undo_takes_a_failed_commit_write_back() -> None:
    """A commit that failed leaves the journal hot: the zeroing write is undone."""
    tracker = tracker_with_journal()
    tracker.write(0, journal_header() + bytes(484), dirty=True)
    tracker.write(512, page(1), dirty=True)
    before = bytes(tracker.journal)  # type: ignore[arg-type]
    end, undo = tracker.write(0, bytes(28), dirty=True)
    assert end is not None
    tracker.undo(undo)
    assert bytes(tracker.journal) == before  # type: ignore[arg-type]
    assert tracker.active()
    _, growing = tracker.write(len(before), page(2), dirty=True)
    tracker.undo(growing)
    assert bytes(tracker.journal) == before  # type: ignore[arg-type]


def test_truncation_and_unlink_end_only_dirty_transactions() -> None:
    assert JournalTracker.truncating(0, dirty=True) == JournalEnd("journal truncated")
    assert JournalTracker.truncating(0, dirty=False) is None
    assert JournalTracker.truncating(512, dirty=True) is None
    assert JournalTracker.unlinking(dirty=True) == JournalEnd("journal deleted")
    assert JournalTracker.unlinking(dirty=False) is None


def test_the_overlay_holds_the_transaction_pages_until_committed() -> None:
    tracker = JournalTracker()
    overlay = tracker.overlay_for(PAGE)
    assert tracker.overlay_for(PAGE) is overlay
    overlay.put(0, page(1))
    overlay.put(2, page(3))
    overlay.put(5, page(6))  # past the new page count: cut off
    pages = OverlayPages(overlay, page_count=4)
    assert dict(pages) == {1: page(1), 3: page(3)}
    assert len(pages) == 2 and 2 not in pages
    tracker.committed()
    assert tracker.overlay is None


def test_detach_forgets_the_journal() -> None:
    tracker = tracker_with_journal()
    tracker.write(0, journal_header(), dirty=False)
    tracker.detach()
    assert tracker.journal is None and not tracker.active()


# ---------------------------------------------------------------- WAL


class WalWriter:
    """Writes a WAL header and frames into a `WalTracker` as SQLite does."""

    def __init__(self, tracker: WalTracker, salt1: int = 11, salt2: int = 22) -> None:
        self.tracker = tracker
        self.salts = (salt1, salt2)
        self.last = (0, 0)
        self.results: list = []

    def write(self, offset: int, data: bytes):
        transaction, undo = self.tracker.write(offset, data)
        self.results.append(transaction)
        return transaction, undo

    def header(self) -> None:
        data, self.last = wal_header(self.salts)
        self.write(0, data)

    def frame(self, index: int, pgno: int, data: bytes, commit: int = 0):
        frame, self.last = wal_frame(pgno, data, commit, self.salts, self.last)
        start = frame_offset(index, PAGE)
        self.write(start, frame[:24])
        return self.write(start + 24, frame[24:])


def wal_tracker() -> tuple[WalTracker, WalWriter]:
    tracker = WalTracker()
    tracker.attach(SpillBuffer())
    return tracker, WalWriter(tracker)


def test_the_commit_frame_completes_a_transaction() -> None:
    tracker, writer = wal_tracker()
    writer.header()
    assert tracker.page_size(4096) == PAGE
    first, _ = writer.frame(0, 2, page(2))
    assert first is None
    transaction, _ = writer.frame(1, 3, page(3), commit=3)
    assert transaction is not None
    assert dict(transaction.pages) == {2: page(2), 3: page(3)}
    assert transaction.page_count == 3
    tracker.committed(transaction)
    again, _ = tracker.write(0, bytes(tracker.data.read(0, 32)))  # type: ignore[union-attr]
    assert again is None, "a committed transaction is reported once"


def test_a_failed_commit_is_undone_and_found_again() -> None:
    tracker, writer = wal_tracker()
    writer.header()
    transaction, undo = writer.frame(0, 2, page(2), commit=2)
    assert transaction is not None
    tracker.undo(undo)
    assert tracker.log.pending_commit() is None  # type: ignore[union-attr]


def test_preimages_are_kept_for_changed_and_cut_off_pages() -> None:
    tracker, writer = wal_tracker()
    writer.header()
    transaction, _ = writer.frame(0, 2, page(2), commit=3)
    assert transaction is not None
    # The file holds 5 pages; the transaction changes page 2 and cuts 4 and 5 off.
    missing = tracker.missing_preimages(transaction, old_page_count=5, file_pages=5, page_size=PAGE)
    assert list(missing) == [2, 4, 5]
    tracker.keep_preimages({2: page(102), 4: page(104)}, PAGE)
    assert list(tracker.missing_preimages(transaction, 5, 5, PAGE)) == [5]
    # A checkpoint write that came first wins over a later pre-image.
    tracker.keep_preimages({2: page(200), 5: page(105)}, PAGE)
    assert tracker.preimages is not None and tracker.preimages.get(1) == page(102)
    # Pages the file does not hold have no pre-image to keep.
    assert not tracker.missing_preimages(transaction, 5, file_pages=3, page_size=PAGE)


def test_a_new_wal_generation_drops_the_preimages() -> None:
    tracker, writer = wal_tracker()
    writer.header()
    tracker.keep_preimages({1: page(1)}, PAGE)
    writer.salts = (12, 23)  # SQLite restarts the WAL with new salts
    writer.header()
    assert tracker.preimages is None


def test_truncating_the_wal_to_zero_or_detaching_drops_the_preimages() -> None:
    tracker, writer = wal_tracker()
    writer.header()
    tracker.keep_preimages({1: page(1)}, PAGE)
    tracker.truncate(0)
    assert tracker.preimages is None
    tracker.keep_preimages({1: page(1)}, PAGE)
    tracker.detach()
    assert tracker.preimages is None and tracker.log is None and tracker.data is None
