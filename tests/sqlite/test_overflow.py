"""Overflow chains (fileformat2 §1.6, "Cell Payload Overflow Pages")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.btree import (
    IndexInteriorCell,
    IndexLeafCell,
    PageType,
    TableLeafCell,
    local_payload_size,
    make_table_leaf_cell,
)
from pgfs.sqlite.errors import CorruptPageError, FormatError
from pgfs.sqlite.overflow import (
    assemble_payload,
    decode_overflow_page,
    encode_overflow_page,
    overflow_page_count,
    split_payload,
)
from pgfs.sqlite.record import decode_record

PAYLOAD_TYPES = [PageType.TABLE_LEAF, PageType.INDEX_LEAF, PageType.INDEX_INTERIOR]


def build_chain(payload: bytes, usable: int, page_type: PageType, first: int = 10):
    """(cell, pages dict) storing ``payload`` with its overflow on pages first, first+1, ..."""
    local, chunks = split_payload(payload, usable, page_type)
    page_size = 1 << (usable - 1).bit_length()
    pages = {}
    for i, chunk in enumerate(chunks):
        nxt = first + i + 1 if i + 1 < len(chunks) else 0
        pages[first + i] = encode_overflow_page(nxt, chunk, page_size)
    overflow = first if chunks else None
    if page_type == PageType.TABLE_LEAF:
        cell = TableLeafCell(1, len(payload), local, overflow)
    elif page_type == PageType.INDEX_LEAF:
        cell = IndexLeafCell(len(payload), local, overflow)
    else:
        cell = IndexInteriorCell(3, len(payload), local, overflow)
    return cell, pages


@given(
    st.binary(max_size=20000),
    st.sampled_from([480, 512, 1000, 1024, 4096]),
    st.sampled_from(PAYLOAD_TYPES),
)
@settings(deadline=None, max_examples=120)
def test_split_assemble_round_trip(payload: bytes, usable: int, page_type: PageType) -> None:
    local, chunks = split_payload(payload, usable, page_type)
    assert len(local) == local_payload_size(len(payload), usable, page_type)
    assert all(len(c) == usable - 4 for c in chunks[:-1])
    assert not chunks or 0 < len(chunks[-1]) <= usable - 4
    assert local + b"".join(chunks) == payload
    assert len(chunks) == overflow_page_count(len(payload), usable, page_type)
    cell, pages = build_chain(payload, usable, page_type)
    full, chain = assemble_payload(cell, pages.__getitem__, usable, page_type, 2)
    assert full == payload
    assert chain == sorted(pages)


def test_page_encoding() -> None:
    raw = encode_overflow_page(7, b"abc", 512)
    assert len(raw) == 512 and raw[:4] == b"\x00\x00\x00\x07" and raw[4:7] == b"abc"
    assert decode_overflow_page(raw, 3, 500) == (7, raw[4:500])
    with pytest.raises(ValueError):
        encode_overflow_page(0, b"x" * 509, 512)
    with pytest.raises(CorruptPageError):
        decode_overflow_page(b"\x00" * 100, 3, 512)


def test_every_row_of_real_databases_reassembles(real_db) -> None:
    """assemble_payload + decode_record reproduce every row SQLite returns,
    overflow included, and the chains hold distinct pages."""
    encoding = real_db.header.text_encoding
    roots = real_db.roots()
    seen_overflow = 0
    owners: dict[int, int] = {}
    for table, column_count in (("mixed", 7), ("people", 3), ("wide", 150), ("big", 2)):
        rows = {}
        for _page, cell, payload, chain in real_db.payloads(roots[table]):
            rows[cell.rowid] = decode_record(payload, encoding)
            for pgno in chain:
                assert pgno not in owners
                owners[pgno] = cell.rowid
            seen_overflow += bool(chain)
        expected = real_db.query(f"SELECT rowid, * FROM {table}")
        assert len(rows) == len(expected)
        for rowid, *values in expected:
            record = rows[rowid]
            assert len(record) == column_count
            if table in ("people", "big"):
                assert record[0] is None  # the INTEGER PRIMARY KEY field: the rowid
                record[0] = rowid
            for got, want in zip(record, values, strict=True):
                # REAL columns hold integral values as integers (datatype3 §3)
                assert got == want and (type(got) is type(want) or isinstance(want, float))
    assert seen_overflow > 0


def test_index_cells_with_overflow(real_db) -> None:
    """Index entries spill too (long texts and blobs are indexed)."""
    roots = real_db.roots()
    spilled = [
        chain
        for name in ("people_bio", "big_data")
        for _p, _c, _payload, chain in real_db.payloads(roots[name])
        if chain
    ]
    assert spilled


def test_loop_short_chain_and_page_zero() -> None:
    usable = 512
    payload = bytes(range(256)) * 10
    cell, pages = build_chain(payload, usable, PageType.TABLE_LEAF)
    last = max(pages)
    looped = dict(pages)
    looped[last] = encode_overflow_page(10, b"", 512)[:4] + pages[last][4:]
    # the last page's next pointer is not followed once the payload is complete
    assert assemble_payload(cell, looped.__getitem__, usable, PageType.TABLE_LEAF, 2)[0] == payload
    looped[11] = encode_overflow_page(10, pages[11][4:usable], 512)
    with pytest.raises(CorruptPageError, match="loops"):
        assemble_payload(cell, looped.__getitem__, usable, PageType.TABLE_LEAF, 2)
    short = dict(pages)
    short[11] = encode_overflow_page(0, pages[11][4:usable], 512)
    with pytest.raises(CorruptPageError, match="short"):
        assemble_payload(cell, short.__getitem__, usable, PageType.TABLE_LEAF, 2)
    bad_local = TableLeafCell(1, len(payload), cell.local[:-1], cell.overflow)
    with pytest.raises(CorruptPageError, match="local"):
        assemble_payload(bad_local, pages.__getitem__, usable, PageType.TABLE_LEAF, 2)
    missing = TableLeafCell(1, len(payload), cell.local, None)
    with pytest.raises(CorruptPageError):
        assemble_payload(missing, pages.__getitem__, usable, PageType.TABLE_LEAF, 2)
    truncated = dict(pages)
    truncated[12] = b"\x00" * 10
    with pytest.raises(CorruptPageError):
        assemble_payload(cell, truncated.__getitem__, usable, PageType.TABLE_LEAF, 2)


@given(st.binary(min_size=0, max_size=600), st.integers(0, 20))
@settings(deadline=None, max_examples=200)
def test_hostile_chains(page: bytes, start: int) -> None:
    cell = make_table_leaf_cell(1, b"x" * 3000, 512, start or 1)

    def read(pgno: int) -> bytes:
        return page

    try:
        full, _chain = assemble_payload(cell, read, 512, PageType.TABLE_LEAF, 2)
    except FormatError:
        return
    assert len(full) == 3000
