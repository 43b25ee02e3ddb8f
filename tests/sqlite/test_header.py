"""The database header (fileformat2 §1.3)."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.errors import FormatError, NotADatabaseError, UnsupportedFeatureError
from pgfs.sqlite.header import (
    HEADER_SIZE,
    MAGIC,
    DatabaseHeader,
    TextEncoding,
    lock_byte_page,
)

U32 = st.integers(0, 2**32 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)


@st.composite
def headers(draw) -> DatabaseHeader:
    page_size = draw(st.sampled_from([512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]))
    unset = draw(st.booleans())
    return DatabaseHeader(
        page_size=page_size,
        write_version=draw(st.sampled_from([1, 2])),
        read_version=draw(st.sampled_from([1, 2])),
        reserved_space=draw(st.integers(0, min(255, page_size - 480))),
        file_change_counter=draw(U32),
        database_size=draw(U32),
        first_freelist_trunk=draw(U32),
        freelist_count=draw(U32),
        schema_cookie=draw(U32),
        schema_format=draw(st.integers(1, 4)),
        default_cache_size=draw(I32),
        largest_root_btree=draw(U32),
        text_encoding=TextEncoding.UTF8 if unset else draw(st.sampled_from(TextEncoding)),
        user_version=draw(I32),
        incremental_vacuum=draw(st.integers(0, 1)),
        application_id=draw(I32),
        version_valid_for=draw(U32),
        sqlite_version=draw(U32),
        text_encoding_unset=unset,
    )


@given(headers())
def test_round_trip(header: DatabaseHeader) -> None:
    raw = header.to_bytes()
    assert len(raw) == HEADER_SIZE
    assert raw.startswith(MAGIC)
    assert DatabaseHeader.parse(raw) == header
    assert DatabaseHeader.parse(raw).to_bytes() == raw


def test_real_headers(real_db) -> None:
    header = real_db.header
    assert header.to_bytes() == real_db.data[:HEADER_SIZE]
    q = real_db.query
    assert header.page_size == q("PRAGMA page_size")[0][0]
    assert header.freelist_count == q("PRAGMA freelist_count")[0][0]
    assert header.database_size == q("PRAGMA page_count")[0][0] == real_db.page_count
    assert header.database_size_valid
    assert header.schema_format == 4
    assert header.schema_cookie == q("PRAGMA schema_version")[0][0]
    encoding = q("PRAGMA encoding")[0][0]  # "UTF-8", "UTF-16le", "UTF-16be"
    assert header.text_encoding.codec == encoding.lower().replace("16", "16-")
    assert header.auto_vacuum == (q("PRAGMA auto_vacuum")[0][0] != 0)
    assert header.incremental_vacuum == (q("PRAGMA auto_vacuum")[0][0] == 2)
    assert header.reserved_space == real_db.spec.reserve
    assert header.usable_size == header.page_size - real_db.spec.reserve
    assert not header.is_wal


def test_pragmas_land_in_the_header(tmp_path) -> None:
    path = tmp_path / "h.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA user_version = -7")
    con.execute("PRAGMA application_id = 1234567")
    con.execute("PRAGMA default_cache_size = -500")  # deprecated, but still in the header
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t(a)")
    con.close()
    header = DatabaseHeader.parse(path.read_bytes())
    assert header.user_version == -7
    assert header.application_id == 1234567
    assert header.default_cache_size == 500  # SQLite stores the absolute value
    assert header.is_wal and header.read_version == header.write_version == 2
    assert header.text_encoding == TextEncoding.UTF8 and not header.text_encoding_unset


def test_fresh_database_has_no_encoding_yet(tmp_path) -> None:
    """A file with no schema yet stores encoding 0; SQLite reads it as UTF-8."""
    path = tmp_path / "fresh.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    raw = path.read_bytes()[:HEADER_SIZE]
    header = DatabaseHeader.parse(raw)
    assert header.text_encoding == TextEncoding.UTF8 and header.text_encoding_unset
    assert header.to_bytes() == raw


def test_codecs() -> None:
    assert [e.codec for e in TextEncoding] == ["utf-8", "utf-16-le", "utf-16-be"]


def test_page_size_65536_is_stored_as_1() -> None:
    raw = DatabaseHeader(page_size=65536).to_bytes()
    assert raw[16:18] == b"\x00\x01"
    assert DatabaseHeader.parse(raw).page_size == 65536


def patched(offset: int, value: bytes) -> bytes:
    raw = bytearray(DatabaseHeader().to_bytes())
    raw[offset : offset + len(value)] = value
    return bytes(raw)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", NotADatabaseError),
        (DatabaseHeader().to_bytes()[:99], NotADatabaseError),
        (patched(0, b"SQLite format 2"), NotADatabaseError),
        (patched(16, b"\x03\x00"), NotADatabaseError),  # 768: not a power of two
        (patched(16, b"\x01\x00"), NotADatabaseError),  # 256: too small
        (patched(16, b"\x00\x00"), NotADatabaseError),
        (patched(20, b"\x21"), None),  # 33 reserved bytes on 4096: fine
        (patched(20, b"\xff"), None),
        (patched(21, b"\x41"), NotADatabaseError),  # max payload fraction must be 64
        (patched(19, b"\x03"), UnsupportedFeatureError),  # read version 3
        (patched(56, b"\x00\x00\x00\x04"), NotADatabaseError),  # text encoding 4
    ],
)
def test_rejected(raw: bytes, error) -> None:
    if error is None:
        DatabaseHeader.parse(raw)
        return
    with pytest.raises(error):
        DatabaseHeader.parse(raw)


def test_512_byte_page_with_too_many_reserved_bytes() -> None:
    raw = bytearray(DatabaseHeader(page_size=512).to_bytes())
    raw[20] = 33  # 512 - 33 = 479 < 480
    with pytest.raises(NotADatabaseError, match="480"):
        DatabaseHeader.parse(bytes(raw))


@given(st.binary(min_size=100, max_size=100))
@settings(deadline=None, max_examples=300)
def test_random_bytes(raw: bytes) -> None:
    for candidate in (raw, MAGIC + raw[16:]):
        with contextlib.suppress(FormatError):
            DatabaseHeader.parse(candidate)


def test_lock_byte_page() -> None:
    assert lock_byte_page(4096) == 262145
    assert lock_byte_page(65536) == 16385
    assert DatabaseHeader(page_size=512).lock_byte_page == 2097153
