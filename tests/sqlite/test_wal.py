"""The write-ahead log (fileformat2 §4, walformat.html): headers, frames,
checksums checked against WAL files SQLite wrote, and a big-endian WAL that
SQLite accepts."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import struct

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.header import DatabaseHeader
from pgfs.sqlite.wal import (
    WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE,
    WAL_MAGIC_BE,
    WAL_MAGIC_LE,
    WAL_VERSION,
    WalFrameHeader,
    WalHeader,
    frame_checksum,
    frame_offset,
    read_wal,
    wal_checksum,
)

U32 = st.integers(0, 2**32 - 1)
MASK = 0xFFFFFFFF


def reference_checksum(data: bytes, s1: int, s2: int, big_endian: bool) -> tuple[int, int]:
    """walChecksumBytes, transcribed word by word."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & MASK
        s2 = (s2 + words[i + 1] + s1) & MASK
    return s1, s2


@given(st.binary(max_size=700).map(lambda b: b[: len(b) // 8 * 8]), U32, U32, st.booleans())
@settings(deadline=None, max_examples=200)
def test_checksum_matches_reference(data: bytes, s1: int, s2: int, big_endian: bool) -> None:
    assert wal_checksum(data, s1, s2, big_endian) == reference_checksum(data, s1, s2, big_endian)


@given(st.binary(min_size=8, max_size=400), st.booleans())
@settings(deadline=None, max_examples=100)
def test_checksum_is_cumulative(data: bytes, big_endian: bool) -> None:
    data = data[: len(data) // 8 * 8]
    cut = len(data) // 16 * 8
    first = wal_checksum(data[:cut], 0, 0, big_endian)
    assert wal_checksum(data[cut:], *first, big_endian) == wal_checksum(data, 0, 0, big_endian)


def test_checksum_rejects_odd_lengths() -> None:
    with pytest.raises(ValueError):
        wal_checksum(b"1234", 0, 0, False)


@given(st.sampled_from([WAL_MAGIC_LE, WAL_MAGIC_BE]), st.sampled_from([512, 4096, 65536]), U32,
       U32, U32, U32, U32)  # fmt: skip
def test_header_round_trip(magic, page_size, seq, salt1, salt2, c1, c2) -> None:
    header = WalHeader(magic, WAL_VERSION, page_size, seq, salt1, salt2, c1, c2)
    raw = header.to_bytes()
    assert len(raw) == WAL_HEADER_SIZE
    assert WalHeader.parse(raw) == header
    assert header.big_endian_checksums == (magic == WAL_MAGIC_BE)
    fixed = header.with_checksum()
    assert fixed.checksum_valid
    assert (fixed.checksum1, fixed.checksum2) == reference_checksum(raw[:24], 0, 0, magic & 1)


@given(U32, U32, U32, U32, U32, U32)
def test_frame_header_round_trip(pgno, commit, salt1, salt2, c1, c2) -> None:
    frame = WalFrameHeader(pgno, commit, salt1, salt2, c1, c2)
    raw = frame.to_bytes()
    assert len(raw) == WAL_FRAME_HEADER_SIZE
    assert WalFrameHeader.parse(raw) == frame
    assert frame.is_commit == (commit != 0)


def test_frame_offset() -> None:
    assert frame_offset(0, 4096) == 32
    assert frame_offset(1, 4096) == 32 + 24 + 4096
    assert frame_offset(3, 512) == 32 + 3 * 536


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes(32),
        WalHeader(WAL_MAGIC_LE, 3007001, 4096, 0, 0, 0, 0, 0).to_bytes(),
        WalHeader(WAL_MAGIC_LE, WAL_VERSION, 1000, 0, 0, 0, 0, 0).to_bytes(),
        WalHeader(WAL_MAGIC_LE, WAL_VERSION, 4096, 0, 0, 0, 0, 0).to_bytes()[:31],
    ],
)
def test_bad_headers(raw: bytes) -> None:
    with pytest.raises(FormatError):
        WalHeader.parse(raw)
    assert read_wal(raw) == (None, [], 0)


@given(st.binary(max_size=200))
@settings(deadline=None, max_examples=200)
def test_hostile_bytes(raw: bytes) -> None:
    with contextlib.suppress(FormatError):
        WalHeader.parse(raw)
    with contextlib.suppress(FormatError):
        WalFrameHeader.parse(raw)
    read_wal(raw)


# ---------------------------------------------------------------- SQLite's WAL files


def write_wal_database(directory, engine: str, page_size: int, transactions: int = 6):
    """A WAL-mode database with uncheckpointed transactions; returns copies of
    the database file and its WAL taken while the writer still had them open."""
    path = directory / f"{engine}-{page_size}.db"
    if engine == "apsw":
        con = apsw.Connection(str(path))
        run = con.execute
    else:
        con = sqlite3.connect(path, isolation_level=None)
        run = con.execute
    run(f"PRAGMA page_size={page_size}")
    run("PRAGMA journal_mode=WAL")
    run("PRAGMA wal_autocheckpoint=0")
    run("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(transactions):
        run("BEGIN")
        for k in range(5):
            run("INSERT INTO t(v) VALUES (?)", (f"row {i}.{k} " + "x" * (i * 300),))
        run("COMMIT")
    db_copy = directory / f"copy-{engine}-{page_size}.db"
    shutil.copy(path, db_copy)
    wal = (directory / f"{path.name}-wal").read_bytes()
    con.close()
    return db_copy, wal, transactions + 1  # +1: the CREATE TABLE


@pytest.mark.parametrize("engine", ["sqlite3", "apsw"])
@pytest.mark.parametrize("page_size", [512, 4096, 65536])
def test_frames_sqlite_wrote(tmp_path, engine: str, page_size: int) -> None:
    _db_copy, wal, commits = write_wal_database(tmp_path, engine, page_size)
    header, frames, committed = read_wal(wal)
    assert header is not None and header.checksum_valid
    assert header.page_size == page_size
    assert len(frames) == committed == (len(wal) - WAL_HEADER_SIZE) // (24 + page_size)
    assert sum(f.header.is_commit for f in frames) == commits
    # the chain of checksums, by hand
    s = (header.checksum1, header.checksum2)
    for frame in frames:
        start = frame_offset(frame.index, page_size)
        raw_header = wal[start : start + 24]
        assert WalFrameHeader.parse(raw_header).to_bytes() == raw_header
        s = frame_checksum(raw_header, frame.page, *s, header.big_endian_checksums)
        assert s == (frame.header.checksum1, frame.header.checksum2)
        assert (frame.header.salt1, frame.header.salt2) == (header.salt1, header.salt2)
    # the last commit frame's database size is the page count SQLite reports
    last = frames[-1].header
    assert last.is_commit
    page1 = next(f.page for f in reversed(frames) if f.header.pgno == 1)
    assert DatabaseHeader.parse(page1).database_size == last.commit_size


def rewrite_big_endian(wal: bytes, drop_last_commit_checksum: bool = False) -> bytes:
    """The same WAL with magic 0x377f0683 and every checksum recomputed over
    big-endian words."""
    header = WalHeader.parse(wal)
    size = header.page_size
    header.magic = WAL_MAGIC_BE
    header = header.with_checksum()
    out = bytearray(header.to_bytes())
    s = (header.checksum1, header.checksum2)
    _, frames, _ = read_wal(wal)
    for frame in frames:
        fh = frame.header
        s = frame_checksum(fh, frame.page, *s, True)
        fh = WalFrameHeader(fh.pgno, fh.commit_size, fh.salt1, fh.salt2, *s)
        out += fh.to_bytes() + frame.page
    if drop_last_commit_checksum:
        out[-size - 1] ^= 0xFF  # last byte of the last frame's checksum2
    return bytes(out)


def visible_rows(db_path) -> int:
    con = sqlite3.connect(db_path)
    try:
        return con.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        con.close()


def test_sqlite_accepts_big_endian_checksums(tmp_path) -> None:
    db_copy, wal, _ = write_wal_database(tmp_path, "sqlite3", 1024)
    big = rewrite_big_endian(wal)
    header, frames, committed = read_wal(big)
    assert header.big_endian_checksums and committed == len(frames) == len(read_wal(wal)[1])
    (tmp_path / f"{db_copy.name}-wal").write_bytes(big)
    assert visible_rows(db_copy) == 30  # 6 transactions of 5 rows, recovered from the WAL


def test_a_bad_checksum_ends_the_log_for_sqlite_and_for_us(tmp_path) -> None:
    db_copy, wal, _ = write_wal_database(tmp_path, "sqlite3", 1024)
    broken = rewrite_big_endian(wal, drop_last_commit_checksum=True)
    _, frames, committed = read_wal(broken)
    assert len(frames) == len(read_wal(wal)[1]) - 1
    # frames after the last surviving commit frame count for nothing
    assert frames[committed - 1].header.is_commit
    (tmp_path / f"{db_copy.name}-wal").write_bytes(broken)
    assert visible_rows(db_copy) == 25  # the last transaction is gone


def test_wrong_salt_is_not_a_frame(tmp_path) -> None:
    _, wal, _ = write_wal_database(tmp_path, "sqlite3", 512, transactions=2)
    raw = bytearray(wal)
    raw[32 + 8] ^= 1  # salt1 of frame 0
    assert read_wal(bytes(raw))[1:] == ([], 0)
