"""WalLog on WAL byte streams built with pgfs.sqlite.wal, delivered the way the kernel
delivers them (4 KiB pieces), including SQLite's rewrites."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgfs.sqlite.wal import (
    WAL_MAGIC_LE,
    WAL_VERSION,
    WalFrameHeader,
    WalHeader,
    frame_checksum,
    frame_offset,
    read_wal,
)
from pgfs.tracker.wal_log import WalLog, WalTransaction

PAGE = 1024


def page(tag: int) -> bytes:
    return bytes([tag % 256]) * PAGE


@dataclass
class Writer:
    """Writes frames as SQLite's sqlite3WalFrames does, cut into 4 KiB kernel pieces."""

    salt1: int = 11
    salt2: int = 22
    log: WalLog = field(default_factory=WalLog)
    commits: list[WalTransaction] = field(default_factory=list)
    last: tuple[int, int] = (0, 0)
    hits: list[int] = field(default_factory=list)

    def write(self, offset: int, data: bytes) -> None:
        """One system call: pieces cut at 4 KiB boundaries, each a FUSE write."""
        position = 0
        while position < len(data):
            absolute = offset + position
            size = min(len(data) - position, 4096 - absolute % 4096)
            self.log.apply(absolute, data[position : position + size])
            found = self.log.pending_commit()
            if found is not None:
                self.commits.append(found)
                self.hits.append(absolute + size)
                self.log.mark_committed(found)
            position += size

    def header(self) -> None:
        header = WalHeader(WAL_MAGIC_LE, WAL_VERSION, PAGE, 0, self.salt1, self.salt2, 0, 0)
        header = header.with_checksum()
        self.last = (header.checksum1, header.checksum2)
        self.write(0, header.to_bytes())

    def frame(self, index: int, pgno: int, data: bytes, commit: int = 0, salts: bool = True):
        if salts:
            head = WalFrameHeader(pgno, commit, self.salt1, self.salt2, 0, 0)
            c1, c2 = frame_checksum(head, data, *self.last, False)
            head = WalFrameHeader(pgno, commit, self.salt1, self.salt2, c1, c2)
            self.last = (c1, c2)
        else:  # after an in-place overwrite SQLite leaves salts and checksums zero
            head = WalFrameHeader(pgno, commit, 0, 0, 0, 0)
        start = frame_offset(index, PAGE)
        self.write(start, head.to_bytes())
        self.write(start + 24, data)
        return start

    def rewrite_checksums(self, first: int, last: int, chain: tuple[int, int]) -> None:
        """walRewriteChecksums: headers of frames first..last from the chain before first."""
        self.last = chain
        for index in range(first, last + 1):
            start = frame_offset(index, PAGE)
            old = WalFrameHeader.parse(bytes(self.log.data[start : start + 24]))
            data = bytes(self.log.data[start + 24 : start + 24 + PAGE])
            head = WalFrameHeader(old.pgno, old.commit_size, self.salt1, self.salt2, 0, 0)
            c1, c2 = frame_checksum(head, data, *self.last, False)
            self.last = (c1, c2)
            head = WalFrameHeader(old.pgno, old.commit_size, self.salt1, self.salt2, c1, c2)
            self.write(start, head.to_bytes())


def test_commit_at_the_last_byte_of_the_commit_frame() -> None:
    w = Writer()
    w.header()
    w.frame(0, 1, page(1))
    w.frame(1, 2, page(2))
    assert w.commits == []
    end = w.frame(2, 3, page(3), commit=3) + 24 + PAGE
    assert len(w.commits) == 1 and w.hits == [end]
    assert w.commits[0].pages == {1: page(1), 2: page(2), 3: page(3)}
    assert w.commits[0].page_count == 3
    assert read_wal(bytes(w.log.data))[2] == 3  # SQLite's recovery agrees


def test_later_frames_of_a_page_win_and_pages_past_the_size_are_dropped() -> None:
    w = Writer()
    w.header()
    w.frame(0, 2, page(20))
    w.frame(1, 5, page(5))
    w.frame(2, 2, page(21), commit=4)
    assert w.commits[0].pages == {2: page(21)}  # page 5 is past the new size


def test_spilled_frames_rolled_back_then_overwritten() -> None:
    w = Writer()
    w.header()
    w.frame(0, 1, page(1), commit=1)
    chain = w.last
    # A transaction spills frames 1..3 and rolls back: no commit.
    for i, pgno in enumerate((2, 3, 4), start=1):
        w.frame(i, pgno, page(100 + pgno))
    assert len(w.commits) == 1
    # The next transaction writes over them from the same offset; its commit frame lands
    # where a stale frame of the same page was: the stale page bytes must not count.
    w.last = chain
    w.frame(1, 3, page(50))
    start = frame_offset(2, PAGE)
    head = WalFrameHeader(4, 4, w.salt1, w.salt2, 0, 0)
    c1, c2 = frame_checksum(head, page(51), *w.last, False)
    w.write(start, WalFrameHeader(4, 4, w.salt1, w.salt2, c1, c2).to_bytes())
    assert len(w.commits) == 1, "committed before the commit frame's page arrived"
    w.write(start + 24, page(51))
    assert len(w.commits) == 2
    assert w.commits[1].pages == {3: page(50), 4: page(51)}
    assert w.commits[1].first == 1 and w.commits[1].last == 2


def test_in_place_overwrite_then_checksum_rewrite() -> None:
    """After overwriting a spilled page in place SQLite writes frames with zero salts and
    makes them valid after the commit frame: the commit point is the last rewrite."""
    w = Writer()
    w.header()
    chain = w.last
    w.frame(0, 2, page(2))
    w.frame(1, 3, page(3))
    w.write(frame_offset(0, PAGE) + 24, page(99))  # page 2 changed again, in place
    w.frame(2, 4, page(4), salts=False)
    w.frame(3, 5, page(5), commit=5, salts=False)
    assert w.commits == []
    w.rewrite_checksums(0, 3, chain)
    assert len(w.commits) == 1
    assert w.hits == [frame_offset(3, PAGE) + 24]  # the commit frame header's rewrite
    assert w.commits[0].pages == {2: page(99), 3: page(3), 4: page(4), 5: page(5)}
    assert read_wal(bytes(w.log.data))[2] == 4


def test_repeated_commit_frames_and_rewrites_of_committed_frames() -> None:
    w = Writer()
    w.header()
    chain = w.last
    w.frame(0, 1, page(1), commit=1)
    w.frame(1, 1, page(1), commit=1)  # padding: the commit frame again
    assert [c.pages for c in w.commits] == [{1: page(1)}, {1: page(1)}]
    w.rewrite_checksums(0, 1, chain)  # frames before committed_end: nothing new
    assert len(w.commits) == 2


def test_new_header_starts_a_new_generation() -> None:
    w = Writer()
    w.header()
    w.frame(0, 1, page(1), commit=1)
    w.frame(1, 2, page(2), commit=2)
    _undo, restarted = w.log.apply(0, w.log.data[:32])
    assert not restarted  # the same header again
    w.salt1 += 1
    w.header()
    assert w.log.committed_end == 0
    # Old frames with old salts are not transactions of the new generation.
    assert w.log.pending_commit() is None
    w.frame(0, 3, page(3), commit=3)
    assert w.commits[-1].pages == {3: page(3)}


def test_truncate_and_undo() -> None:
    w = Writer()
    w.header()
    w.frame(0, 1, page(1), commit=1)
    assert w.log.truncate(0) is True
    assert w.log.header is None and w.log.committed_end == 0
    w.header()
    start = frame_offset(0, PAGE)
    head = WalFrameHeader(
        1,
        1,
        w.salt1,
        w.salt2,
        *frame_checksum(WalFrameHeader(1, 1, w.salt1, w.salt2, 0, 0), page(7), *w.last, False),
    )
    w.log.apply(start, head.to_bytes())
    length = len(w.log.data)
    undo, _ = w.log.apply(start + 24, page(7))
    found = w.log.pending_commit()
    assert found is not None
    w.log.undo(undo)  # PostgreSQL failed: the bytes that make the commit go
    assert len(w.log.data) == length and w.log.committed_end == 0
    assert read_wal(bytes(w.log.data))[2] == 0


def test_savepoint_rollback_leaves_unsalted_frames_before_the_rewrite() -> None:
    """SQLite 3.40: ROLLBACK TO after an in-place overwrite keeps the overwrite's frame
    number, so the commit's frames are unsalted and the rewrite starts there, chained
    from the zero checksum before it. SQLite takes it as committed; so does the mount,
    once the commit frame's page is written (the bytes cannot tell whether a rewrite
    follows; the rewrite then changes nothing)."""
    w = Writer()
    w.header()
    w.frame(0, 1, page(1), commit=1)
    before = w.last
    w.frame(1, 2, page(2))
    w.frame(2, 3, page(3))
    w.write(frame_offset(2, PAGE) + 24, page(33))  # overwritten in place: rewrite from 2
    w.last = before  # ROLLBACK TO: frames 1 and 2 are gone, the chain is restored
    w.frame(1, 2, page(20), salts=False)
    w.frame(2, 3, page(30), salts=False)
    start = w.frame(3, 4, page(40), commit=4, salts=False)
    assert len(w.commits) == 2 and w.hits[-1] == start + 24 + PAGE
    w.rewrite_checksums(2, 3, (0, 0))  # read from frame 1's zero header
    assert len(w.commits) == 2
    assert w.commits[1].pages == {2: page(20), 3: page(30), 4: page(40)}
    assert read_wal(bytes(w.log.data))[2] == 1  # SQLite's recovery would stop at frame 1
    w.frame(4, 5, page(50), commit=5)  # the next transaction: an ordinary chain again
    assert len(w.commits) == 3 and w.commits[2].pages == {5: page(50)}


def test_unsalted_commit_frame_commits_when_its_page_is_written() -> None:
    """The overwritten frame lay past the new commit frame: SQLite rewrites nothing, and
    the next transaction chains from the last salted frame before the unsalted ones."""
    w = Writer()
    w.header()
    w.frame(0, 1, page(1), commit=1)
    before = w.last
    for index in range(1, 5):
        w.frame(index, index + 1, page(index))
    w.write(frame_offset(4, PAGE) + 24, page(44))
    w.last = before
    w.frame(1, 2, page(20), salts=False)
    start = w.frame(2, 3, page(30), commit=3, salts=False)
    assert len(w.commits) == 2, "the commit frame's page completes the transaction"
    assert w.hits[-1] == start + 24 + PAGE
    assert w.commits[1].pages == {2: page(20), 3: page(30)}
    w.frame(3, 4, page(40), commit=4)  # chained from `before`, as SQLite holds it
    assert len(w.commits) == 3 and w.commits[2].pages == {4: page(40)}


def test_an_unsalted_commit_header_over_stale_bytes_waits_for_its_page() -> None:
    w = Writer()
    w.header()
    w.frame(0, 1, page(1), commit=1)
    before = w.last
    w.frame(1, 2, page(2))
    w.frame(2, 3, page(3))  # stale bytes of a rolled-back transaction
    w.write(frame_offset(1, PAGE) + 24, page(22))
    w.last = before
    start = frame_offset(1, PAGE)
    w.write(start, WalFrameHeader(2, 2, 0, 0, 0, 0).to_bytes())
    assert len(w.commits) == 1, "committed the stale page under a new commit header"
    w.write(start + 24, page(25))
    assert len(w.commits) == 2 and w.commits[1].pages == {2: page(25)}
