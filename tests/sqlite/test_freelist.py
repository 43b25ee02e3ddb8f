"""The freelist (fileformat2 §1.5), and a whole-file page census."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.freelist import (
    FreelistTrunk,
    decode_freelist_trunk,
    encode_freelist_trunk,
    max_trunk_leaves,
    walk_freelist,
)
from pgfs.sqlite.ptrmap import is_ptrmap_page


@st.composite
def trunks(draw):
    page_size = draw(st.sampled_from([512, 1024, 4096, 65536]))
    reserve = draw(st.integers(0, 32))
    usable = page_size - reserve
    leaves = draw(st.lists(st.integers(1, 2**32 - 1), max_size=min(max_trunk_leaves(usable), 300)))
    return page_size, usable, FreelistTrunk(draw(st.integers(0, 2**32 - 1)), leaves)


@given(trunks())
@settings(deadline=None, max_examples=100)
def test_round_trip(case) -> None:
    page_size, usable, trunk = case
    raw = encode_freelist_trunk(trunk, page_size)
    assert len(raw) == page_size
    assert decode_freelist_trunk(raw, 5, usable) == trunk


def test_limits() -> None:
    assert max_trunk_leaves(512) == 126
    with pytest.raises(ValueError):
        encode_freelist_trunk(FreelistTrunk(0, [1] * 127), 512)
    too_many = bytearray(512)
    too_many[4:8] = (127).to_bytes(4, "big")
    with pytest.raises(CorruptPageError, match="leaves"):
        decode_freelist_trunk(bytes(too_many), 9, 512)
    zero_leaf = encode_freelist_trunk(FreelistTrunk(0, [3, 4]), 512)
    zero_leaf = zero_leaf[:12] + b"\0\0\0\0" + zero_leaf[16:]
    with pytest.raises(CorruptPageError, match="leaf page 0"):
        decode_freelist_trunk(zero_leaf, 9, 512)
    with pytest.raises(CorruptPageError):
        decode_freelist_trunk(b"\0" * 100, 9, 512)


@given(st.binary(min_size=512, max_size=512))
def test_random_bytes(raw: bytes) -> None:
    try:
        trunk = decode_freelist_trunk(raw, 3, 512)
    except CorruptPageError:
        return
    assert len(trunk.leaves) <= 126


def test_real_freelists(real_db) -> None:
    header = real_db.header
    freelist = walk_freelist(
        header.first_freelist_trunk,
        real_db.page,
        real_db.usable_size,
        page_count=real_db.page_count,
        expected_count=header.freelist_count,
    )
    assert freelist.count == real_db.query("PRAGMA freelist_count")[0][0]
    if real_db.spec.auto_vacuum != "FULL" and real_db.page_size < 65536:
        assert freelist.count > 0  # the deletes freed pages
    # SQLite writes at most usable/4 - 8 leaves per trunk (§1.5)
    for pgno in freelist.trunks:
        trunk = decode_freelist_trunk(real_db.page(pgno), pgno, real_db.usable_size)
        assert len(trunk.leaves) <= real_db.usable_size // 4 - 8
        assert (
            encode_freelist_trunk(trunk, real_db.page_size)[: 8 + 4 * len(trunk.leaves)]
            == (real_db.page(pgno)[: 8 + 4 * len(trunk.leaves)])
        )


def test_walk_detects_loops_and_bad_counts() -> None:
    pages = {
        2: encode_freelist_trunk(FreelistTrunk(3, [4]), 512),
        3: encode_freelist_trunk(FreelistTrunk(2, []), 512),
    }
    with pytest.raises(CorruptPageError, match="loops"):
        walk_freelist(2, pages.__getitem__, 512)
    pages[3] = encode_freelist_trunk(FreelistTrunk(0, [5, 6]), 512)
    found = walk_freelist(2, pages.__getitem__, 512, page_count=6, expected_count=5)
    assert found.trunks == [2, 3] and found.leaves == [4, 5, 6]
    with pytest.raises(CorruptPageError, match="header says"):
        walk_freelist(2, pages.__getitem__, 512, expected_count=4)
    with pytest.raises(CorruptPageError, match="leaf"):
        walk_freelist(2, pages.__getitem__, 512, page_count=5)
    pages[3] = encode_freelist_trunk(FreelistTrunk(0, [4]), 512)
    with pytest.raises(CorruptPageError, match="leaf"):
        walk_freelist(2, pages.__getitem__, 512)  # page 4 listed twice


def test_every_page_accounted_for(real_db) -> None:
    """Page 1, b-tree pages, overflow pages, freelist pages and pointer maps
    cover the file exactly once each."""
    owner: dict[int, str] = {}

    def claim(pgno: int, what: str) -> None:
        assert pgno not in owner, (pgno, owner.get(pgno), what)
        owner[pgno] = what

    for name, root in {"sqlite_schema": 1, **real_db.roots()}.items():
        for page in real_db.btree(root):
            claim(page.pgno, name)
        for _page, _cell, _payload, chain in real_db.payloads(root):
            for pgno in chain:
                claim(pgno, f"overflow of {name}")
    freelist = walk_freelist(real_db.header.first_freelist_trunk, real_db.page, real_db.usable_size)
    for pgno in freelist.trunks + freelist.leaves:
        claim(pgno, "free")
    if real_db.header.auto_vacuum:
        for pgno in range(2, real_db.page_count + 1):
            if is_ptrmap_page(pgno, real_db.usable_size):
                claim(pgno, "ptrmap")
    assert sorted(owner) == list(range(1, real_db.page_count + 1))
