"""The rollback journal header (fileformat2 §3), against journals SQLite wrote."""

from __future__ import annotations

import sqlite3
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgfs.sqlite.journal import (
    JOURNAL_HEADER_SIZE,
    JOURNAL_MAGIC,
    JournalHeader,
    journal_is_finalized,
    journal_page_checksum,
    parse_journal_header,
)

U32 = st.integers(0, 2**32 - 1)


@given(U32, U32, U32, U32, U32)
def test_round_trip(records, nonce, pages, sector, page_size) -> None:
    header = JournalHeader(records, nonce, pages, sector, page_size)
    raw = header.to_bytes()
    assert len(raw) == JOURNAL_HEADER_SIZE and raw.startswith(JOURNAL_MAGIC)
    assert parse_journal_header(raw + b"junk") == header
    assert not journal_is_finalized(raw)


@pytest.mark.parametrize("raw", [b"", bytes(28), bytes(512), JOURNAL_MAGIC, b"\xd9\xd5"])
def test_no_header(raw: bytes) -> None:
    assert parse_journal_header(raw) is None


def test_finalized() -> None:
    assert journal_is_finalized(b"")
    assert journal_is_finalized(bytes(4096))
    assert not journal_is_finalized(JOURNAL_MAGIC + bytes(100))


@given(st.binary(max_size=64))
def test_random_bytes(raw: bytes) -> None:
    header = parse_journal_header(raw)
    assert (header is None) or raw.startswith(JOURNAL_MAGIC)


def open_transaction(tmp_path, mode: str, spill: bool = True):
    """A database with a write transaction in progress: (connection, path, page count).

    With ``spill``, the page cache is tiny so SQLite must sync the journal and
    write to the database before the commit: the journal is then "hot"."""
    path = tmp_path / f"{mode}.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=1024")
    con.execute(f"PRAGMA journal_mode={mode}")
    con.execute("BEGIN")
    con.execute("CREATE TABLE t(a)")
    con.executemany("INSERT INTO t VALUES (?)", [("x" * 300,)] * 200)
    con.execute("COMMIT")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    if spill:
        con.execute("PRAGMA cache_size=2")
    con.execute("BEGIN")
    con.execute("UPDATE t SET a = 'y' || a")
    return con, path, pages


def test_unsynced_journal_has_no_magic_yet(tmp_path) -> None:
    """writeJournalHdr writes the magic as zeros until the journal is synced
    (the header is completed just before SQLite writes the database file), so
    a journal of a transaction that has not touched the database is not hot."""
    con, path, _ = open_transaction(tmp_path, "DELETE", spill=False)
    early = (tmp_path / f"{path.name}-journal").read_bytes()
    assert len(early) > 0
    assert parse_journal_header(early) is None and journal_is_finalized(early)
    con.execute("ROLLBACK")
    con.close()


@pytest.mark.parametrize("mode", ["DELETE", "PERSIST", "TRUNCATE"])
def test_journals_sqlite_wrote(tmp_path, mode: str) -> None:
    con, path, pages = open_transaction(tmp_path, mode)
    journal_path = tmp_path / f"{path.name}-journal"
    hot = journal_path.read_bytes()
    header = parse_journal_header(hot)
    assert header is not None and not journal_is_finalized(hot)
    assert header.page_size == 1024
    assert header.initial_pages == pages
    assert header.sector_size >= 512 and header.sector_size & (header.sector_size - 1) == 0
    # Segments: a header sector, then record_count records (pgno, page,
    # checksum); each journal sync during the transaction starts a new segment
    # at the next sector boundary.
    offset = 0
    seen = 0
    while offset < len(hot):
        segment = parse_journal_header(hot[offset:])
        if segment is None:
            break
        assert segment.page_size == 1024  # each segment has a nonce of its own
        offset += segment.sector_size
        for _ in range(segment.record_count):
            (pgno,) = struct.unpack_from(">I", hot, offset)
            page = hot[offset + 4 : offset + 4 + 1024]
            (checksum,) = struct.unpack_from(">I", hot, offset + 4 + 1024)
            assert checksum == journal_page_checksum(segment.nonce, page)
            assert 1 <= pgno <= pages
            seen += 1
            offset += 1024 + 8
        offset = -(-offset // segment.sector_size) * segment.sector_size
    assert seen >= 2
    con.execute("COMMIT")
    con.close()
    if mode == "DELETE":
        assert not journal_path.exists()
    else:
        after = journal_path.read_bytes()
        assert journal_is_finalized(after)
        assert parse_journal_header(after) is None
        assert (len(after) == 0) == (mode == "TRUNCATE")
