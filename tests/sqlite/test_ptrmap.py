"""Pointer-map pages (fileformat2 §1.7)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.freelist import walk_freelist
from pgfs.sqlite.header import lock_byte_page
from pgfs.sqlite.ptrmap import (
    PtrmapEntry,
    PtrmapType,
    decode_ptrmap_page,
    encode_ptrmap_page,
    is_ptrmap_page,
    ptrmap_entry_index,
    ptrmap_page_for,
)


def test_positions() -> None:
    # usable 1024: 204 entries per map, so maps at 2, 207, 412, ...
    assert [p for p in range(1, 620) if is_ptrmap_page(p, 1024)] == [2, 207, 412, 617]
    assert ptrmap_page_for(3, 1024) == 2
    assert ptrmap_page_for(206, 1024) == 2
    assert ptrmap_page_for(208, 1024) == 207
    assert ptrmap_entry_index(208, 1024) == (207, 0)
    assert ptrmap_entry_index(3, 1024) == (2, 0)
    assert ptrmap_entry_index(206, 1024) == (2, 203)
    assert not is_ptrmap_page(1, 1024)
    with pytest.raises(ValueError):
        ptrmap_page_for(1, 1024)
    with pytest.raises(ValueError):
        ptrmap_entry_index(207, 1024)


def reference_ptrmap_page(pgno: int, usable: int, page_size: int) -> int:
    """btree.c ptrmapPageno, transcribed."""
    per = usable // 5 + 1
    ret = (pgno - 2) // per * per + 2
    if ret == lock_byte_page(page_size):
        ret += 1
    return ret


@given(
    st.integers(2, 2**31),
    st.sampled_from([(512, 0), (512, 32), (1024, 0), (4096, 0), (4096, 255), (65536, 0)]),
)
def test_matches_ptrmap_pageno(pgno: int, sizes: tuple[int, int]) -> None:
    page_size, reserve = sizes
    usable = page_size - reserve
    assert ptrmap_page_for(pgno, usable) == reference_ptrmap_page(pgno, usable, page_size)


def test_lock_byte_page_quirk() -> None:
    """When the pointer map would fall on the lock-byte page, it is the next page."""
    # page size 1024: 204 entries, a map every 205 pages; the lock-byte page is
    # page 1048577 = 2 + 5115 * 205.
    usable = 1024
    lock = lock_byte_page(1024)
    per = usable // 5 + 1
    assert (lock - 2) % per == 0  # the lock-byte page is where a map would be
    assert not is_ptrmap_page(lock, usable)
    assert is_ptrmap_page(lock + 1, usable)
    assert ptrmap_page_for(lock + 5, usable) == lock + 1


@st.composite
def ptrmaps(draw):
    page_size = draw(st.sampled_from([512, 1024, 4096]))
    usable = page_size - draw(st.integers(0, 30))
    kinds = st.sampled_from([t for t in PtrmapType if t != PtrmapType.UNUSED])
    entries = draw(
        st.lists(st.builds(PtrmapEntry, kinds, st.integers(0, 2**32 - 1)), max_size=usable // 5)
    )
    return page_size, usable, entries


@given(ptrmaps())
@settings(deadline=None, max_examples=100)
def test_round_trip(case) -> None:
    page_size, usable, entries = case
    raw = encode_ptrmap_page(entries, page_size)
    decoded = decode_ptrmap_page(raw, 2, usable)
    assert len(decoded) == usable // 5
    assert decoded[: len(entries)] == entries
    assert all(e.type == PtrmapType.UNUSED for e in decoded[len(entries) :])


def test_bad_entries() -> None:
    raw = bytearray(512)
    raw[0] = 6
    with pytest.raises(CorruptPageError, match="type 6"):
        decode_ptrmap_page(bytes(raw), 2, 512)
    raw[0] = 0
    raw[4] = 1
    with pytest.raises(CorruptPageError, match="parent"):
        decode_ptrmap_page(bytes(raw), 2, 512)
    with pytest.raises(CorruptPageError):
        decode_ptrmap_page(b"\0" * 10, 2, 512)
    with pytest.raises(ValueError):
        encode_ptrmap_page([PtrmapEntry(PtrmapType.ROOT, 0)] * 103, 512)


@given(st.binary(min_size=512, max_size=512))
def test_random_bytes(raw: bytes) -> None:
    with contextlib.suppress(CorruptPageError):
        decode_ptrmap_page(raw, 2, 512)


def expected_entries(db) -> dict[int, PtrmapEntry]:
    """What every page's entry must be, from walking the file."""
    out: dict[int, PtrmapEntry] = {}
    for root in db.roots().values():
        out[root] = PtrmapEntry(PtrmapType.ROOT, 0)
        for page in db.btree(root):
            for child in page.children():
                out[child] = PtrmapEntry(PtrmapType.BTREE, page.pgno)
        for page, _cell, _payload, chain in db.payloads(root):
            previous = page.pgno
            for i, pgno in enumerate(chain):
                kind = PtrmapType.OVERFLOW1 if i == 0 else PtrmapType.OVERFLOW2
                out[pgno] = PtrmapEntry(kind, previous)
                previous = pgno
    # sqlite_schema's own children (page 1 is not in the map, its children are)
    for page in db.btree(1):
        for child in page.children():
            out[child] = PtrmapEntry(PtrmapType.BTREE, page.pgno)
        for _page, _cell, _payload, chain in db.payloads(1):
            previous = page.pgno
            for i, pgno in enumerate(chain):
                kind = PtrmapType.OVERFLOW1 if i == 0 else PtrmapType.OVERFLOW2
                out[pgno] = PtrmapEntry(kind, previous)
                previous = pgno
    freelist = walk_freelist(db.header.first_freelist_trunk, db.page, db.usable_size)
    for pgno in freelist.trunks + freelist.leaves:
        out[pgno] = PtrmapEntry(PtrmapType.FREE, 0)
    return out


def test_real_pointer_maps(real_databases) -> None:
    checked = 0
    for db in real_databases:
        if not db.header.auto_vacuum:
            continue
        expected = expected_entries(db)
        usable = db.usable_size
        for pgno in range(2, db.page_count + 1):
            if not is_ptrmap_page(pgno, usable):
                continue
            entries = decode_ptrmap_page(db.page(pgno), pgno, usable)
            assert encode_ptrmap_page(entries, db.page_size) == db.page(pgno)
            for i, entry in enumerate(entries):
                described = pgno + 1 + i
                # Entries past the end of the file are stale after a truncating
                # auto-vacuum: SQLite leaves them as they were.
                if described <= db.page_count:
                    assert entry == expected[described], (db.name, described)
                    checked += 1
        assert db.header.largest_root_btree == max(db.roots().values())
    assert checked > 100
    assert {
        e.type
        for db in real_databases
        if db.header.auto_vacuum
        for e in expected_entries(db).values()
    } >= {
        PtrmapType.ROOT,
        PtrmapType.BTREE,
        PtrmapType.OVERFLOW1,
        PtrmapType.OVERFLOW2,
        PtrmapType.FREE,
    }
