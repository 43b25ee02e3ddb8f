"""B-tree pages (fileformat2 §1.6): parsing what SQLite wrote, writing pages
SQLite accepts, round trips of all four kinds, hostile bytes."""

from __future__ import annotations

import shutil
import sqlite3
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgfs.sqlite.btree import (
    BTreePage,
    IndexInteriorCell,
    IndexLeafCell,
    PageType,
    TableInteriorCell,
    TableLeafCell,
    cell_size,
    encode_btree_page,
    encode_table_leaf,
    header_offset,
    local_payload_size,
    make_table_leaf_cell,
    parse_btree_page,
)
from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.header import HEADER_SIZE

USABLE_SIZES = [480, 512, 991, 1024, 4063, 4096, 65536]


# ---------------------------------------------------------------- local payload (§1.6)


@pytest.mark.parametrize(
    ("usable", "page_type", "payload", "local"),
    [
        (4096, PageType.TABLE_LEAF, 4061, 4061),  # P <= X = U - 35
        (4096, PageType.TABLE_LEAF, 4062, 489),  # K = 4062 > X: M = 489
        (4096, PageType.TABLE_LEAF, 5000, 908),  # K = 489 + 4511 % 4092 <= X
        (4096, PageType.TABLE_LEAF, 8181, 489),  # K = 4089 > X
        (4096, PageType.TABLE_LEAF, 8000, 3908),
        (4096, PageType.INDEX_LEAF, 1002, 1002),  # X = (U-12)*64/255 - 23
        (4096, PageType.INDEX_LEAF, 1003, 489),
        (4096, PageType.INDEX_LEAF, 4681, 589),
        (4096, PageType.INDEX_INTERIOR, 4000, 489),
        (512, PageType.TABLE_LEAF, 477, 477),
        (512, PageType.TABLE_LEAF, 478, 39),
        (512, PageType.TABLE_LEAF, 600, 92),  # K = 39 + 561 % 508
        (512, PageType.INDEX_LEAF, 102, 102),
        (512, PageType.INDEX_LEAF, 200, 39),
    ],
)
def test_local_payload_size(usable: int, page_type: PageType, payload: int, local: int) -> None:
    assert local_payload_size(payload, usable, page_type) == local


@given(st.integers(0, 10**7), st.sampled_from(USABLE_SIZES), st.sampled_from(PageType))
def test_local_payload_bounds(payload: int, usable: int, page_type: PageType) -> None:
    if page_type == PageType.TABLE_INTERIOR:
        with pytest.raises(ValueError):
            local_payload_size(payload, usable, page_type)
        return
    local = local_payload_size(payload, usable, page_type)
    assert local <= payload
    if local < payload:  # the spilled part never fills a page less than needed
        min_local = (usable - 12) * 32 // 255 - 23
        assert local >= min_local


# ---------------------------------------------------------------- real databases


def test_every_btree_page_of_real_databases_parses(real_db) -> None:
    kinds = set()
    for name, root in {"sqlite_schema": 1, **real_db.roots()}.items():
        pages = real_db.btree(root)
        family = pages[0].is_table
        for page in pages:
            kinds.add(page.page_type)
            assert page.is_table == family, name
            assert page.fragmented_bytes <= 60
            if not page.is_leaf:
                assert page.right_child is not None
                assert len(page.children()) == len(page.cells) + 1
            if page.page_type == PageType.TABLE_LEAF:
                rowids = [c.rowid for c in page.cells]
                assert rowids == sorted(rowids)
    assert {PageType.TABLE_LEAF, PageType.INDEX_LEAF} <= kinds
    if real_db.page_size <= 4096:
        assert kinds == set(PageType)


def rewrite_all_btree_pages(real_db, tmp_path):
    """Copy the file and replace every b-tree page by encode_btree_page of its
    parse (page 1 keeps the database header as prefix)."""
    copy = tmp_path / f"{real_db.name}.db"
    shutil.copy(real_db.path, copy)
    data = bytearray(copy.read_bytes())
    size, usable = real_db.page_size, real_db.usable_size
    rewritten = 0
    for root in [1, *real_db.roots().values()]:
        for page in real_db.btree(root):
            prefix = real_db.page(1)[:HEADER_SIZE] if page.pgno == 1 else b""
            raw = encode_btree_page(page, size, usable, prefix)
            assert len(raw) == size
            assert raw[usable:] == bytes(size - usable)
            again = parse_btree_page(raw, page.pgno, usable)
            assert again == page.__class__(
                page.pgno,
                page.page_type,
                page.cells,
                page.right_child,
                0,
                0,
                again.cell_content_start,
            )
            data[(page.pgno - 1) * size : page.pgno * size] = raw
            rewritten += 1
    copy.write_bytes(bytes(data))
    return copy, rewritten


def dump(path) -> list:
    con = sqlite3.connect(path)
    try:
        out = []
        for (name,) in con.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"
        ).fetchall():
            out.append((name, con.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2').fetchall()))
        return out
    finally:
        con.close()


def test_rewritten_pages_pass_integrity_check(real_db, tmp_path) -> None:
    """encode_btree_page of every parsed page (table leaves, interiors, index
    pages, page 1) written back into a copy: SQLite's integrity_check is ok and
    every row reads the same."""
    copy, rewritten = rewrite_all_btree_pages(real_db, tmp_path)
    assert rewritten > 3
    con = sqlite3.connect(copy)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    assert dump(copy) == dump(real_db.path)


def test_rebuilt_table_leaf_from_rows_passes_integrity_check(real_db, tmp_path) -> None:
    """A table leaf built from (rowid, payload, overflow) with make_table_leaf_cell,
    as the renderer does, is accepted by SQLite."""
    copy = tmp_path / "leaf.db"
    shutil.copy(real_db.path, copy)
    data = bytearray(copy.read_bytes())
    size, usable = real_db.page_size, real_db.usable_size
    root = real_db.roots()["mixed"]
    payloads = {
        (page.pgno, cell.rowid): payload for page, cell, payload, _ in real_db.payloads(root)
    }
    done = 0
    for page in real_db.btree(root):
        if page.page_type != PageType.TABLE_LEAF:
            continue
        cells = [
            make_table_leaf_cell(cell.rowid, payloads[page.pgno, cell.rowid], usable, cell.overflow)
            for cell in page.cells
        ]
        assert cells == page.cells
        leaf = BTreePage(page.pgno, PageType.TABLE_LEAF, cells, None)
        image = encode_btree_page(leaf, size, usable)
        rows = [(c.rowid, payloads[page.pgno, c.rowid], c.overflow) for c in page.cells]
        assert encode_table_leaf(rows, size, usable) == image
        data[(page.pgno - 1) * size : page.pgno * size] = image
        done += 1
    copy.write_bytes(bytes(data))
    con = sqlite3.connect(copy)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    assert done >= 1


# ---------------------------------------------------------------- round trips


def cells_strategy(page_type: PageType, usable: int):
    payload = st.binary(max_size=3 * usable)
    child = st.integers(1, 2**32 - 1)

    def payload_cell(data: bytes, ovfl: int):
        local = data[: local_payload_size(len(data), usable, page_type)]
        return len(data), local, (ovfl if len(local) < len(data) else None)

    if page_type == PageType.TABLE_LEAF:
        return st.builds(
            lambda rowid, data, ovfl: TableLeafCell(rowid, *payload_cell(data, ovfl)),
            st.integers(-(2**63), 2**63 - 1),
            payload,
            child,
        )
    if page_type == PageType.TABLE_INTERIOR:
        return st.builds(TableInteriorCell, child, st.integers(-(2**63), 2**63 - 1))
    if page_type == PageType.INDEX_LEAF:
        return st.builds(lambda d, o: IndexLeafCell(*payload_cell(d, o)), payload, child)
    return st.builds(
        lambda left, d, o: IndexInteriorCell(left, *payload_cell(d, o)), child, payload, child
    )


@st.composite
def pages(draw):
    usable = draw(st.sampled_from(USABLE_SIZES))
    page_size = 1 << (usable - 1).bit_length()
    page_type = draw(st.sampled_from(PageType))
    pgno = draw(st.sampled_from([1, 2, 3, 1000]))
    cells = draw(st.lists(cells_strategy(page_type, usable), max_size=30))
    room = usable - header_offset(pgno) - (8 if page_type in (10, 13) else 12)
    fitting = []
    for cell in cells:
        need = cell_size(cell, usable) + 2
        if need > room:
            break
        room -= need
        fitting.append(cell)
    right = None if page_type in (10, 13) else draw(st.integers(1, 2**32 - 1))
    return page_size, usable, BTreePage(pgno, page_type, fitting, right)


@given(pages())
@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_all_kinds(case) -> None:
    page_size, usable, page = case
    prefix = bytes(range(100)) if page.pgno == 1 else b""
    raw = encode_btree_page(page, page_size, usable, prefix)
    assert raw[:100] == prefix[:100] if prefix else True
    parsed = parse_btree_page(raw, page.pgno, usable)
    assert parsed.cells == page.cells
    assert parsed.page_type == page.page_type
    assert parsed.right_child == page.right_child
    assert parsed.first_freeblock == 0 and parsed.fragmented_bytes == 0
    # cells are packed at the end: the content area is exactly their bytes
    assert parsed.cell_content_start == usable - sum(cell_size(c, usable) for c in page.cells)


def test_encode_rejects_what_does_not_fit() -> None:
    cell = make_table_leaf_cell(1, b"x" * 400, 512, None)
    page = BTreePage(2, PageType.TABLE_LEAF, [cell, cell], None)
    with pytest.raises(ValueError):
        encode_btree_page(page, 512, 512)
    with pytest.raises(ValueError):  # wrong cell kind for the page
        encode_btree_page(BTreePage(2, PageType.INDEX_LEAF, [cell], None), 512, 512)
    with pytest.raises(ValueError):  # interior page without a right child
        encode_btree_page(BTreePage(2, PageType.TABLE_INTERIOR, [], None), 512, 512)


def test_make_table_leaf_cell() -> None:
    small = make_table_leaf_cell(7, b"abc", 4096, None)
    assert small == TableLeafCell(7, 3, b"abc", None)
    big = make_table_leaf_cell(8, b"z" * 10000, 4096, 99)
    assert big.local == b"z" * local_payload_size(10000, 4096, PageType.TABLE_LEAF)
    assert big.overflow == 99
    with pytest.raises(ValueError):
        make_table_leaf_cell(8, b"z" * 10000, 4096, None)
    with pytest.raises(ValueError):
        make_table_leaf_cell(8, b"z", 4096, 5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=3000)),
        max_size=12,
        unique_by=lambda r: r[0],
    ),
    st.sampled_from([(512, 512), (1024, 1000), (4096, 4096), (65536, 65536)]),
)
def test_encode_table_leaf_equals_the_general_encoder(rows, geometry) -> None:
    """The renderer's fast leaf encoder writes exactly what encode_btree_page writes."""
    size, usable = geometry
    rows = [
        (
            rowid,
            payload,
            7
            if local_payload_size(len(payload), usable, PageType.TABLE_LEAF) < len(payload)
            else None,
        )
        for rowid, payload in sorted(rows)
    ]
    cells = [make_table_leaf_cell(r, p, usable, o) for r, p, o in rows]
    try:
        expected = encode_btree_page(BTreePage(3, PageType.TABLE_LEAF, cells, None), size, usable)
    except ValueError:
        with pytest.raises(ValueError):
            encode_table_leaf(rows, size, usable)
        return
    assert encode_table_leaf(rows, size, usable) == expected
    prefix = bytes(range(100))
    first = encode_btree_page(BTreePage(1, PageType.TABLE_LEAF, cells, None), size, usable, prefix)
    assert encode_table_leaf(rows, size, usable, prefix) == first


def test_tiny_cells_take_four_bytes() -> None:
    """SQLite allocates at least 4 bytes per cell (fillInCell pads)."""
    cell = IndexLeafCell(1, b"\x01", None)
    assert cell_size(cell, 4096) == 4
    raw = encode_btree_page(BTreePage(2, PageType.INDEX_LEAF, [cell] * 3, None), 4096, 4096)
    assert parse_btree_page(raw, 2, 4096).cell_content_start == 4096 - 12


def test_children_order() -> None:
    page = BTreePage(
        2, PageType.TABLE_INTERIOR, [TableInteriorCell(5, 10), TableInteriorCell(3, 20)], 9
    )
    assert page.children() == [5, 3, 9]
    assert not page.is_leaf and page.is_table
    assert BTreePage(2, PageType.INDEX_LEAF, [], None).children() == []


# ---------------------------------------------------------------- corruption


def leaf(cells: list[bytes], usable: int = 512, page_size: int = 512) -> bytearray:
    page = bytearray(page_size)
    top = usable
    ptrs = []
    for raw in cells:
        top -= len(raw)
        page[top : top + len(raw)] = raw
        ptrs.append(top)
    page[0] = 13
    struct.pack_into(">HHHB", page, 1, 0, len(cells), top, 0)
    struct.pack_into(f">{len(ptrs)}H", page, 8, *ptrs)
    return page


def test_valid_handmade_leaf() -> None:
    page = parse_btree_page(bytes(leaf([b"\x02\x01\x01\x00", b"\x02\x02\x01\x00"])), 5, 512)
    assert [c.rowid for c in page.cells] == [1, 2]


def corrupt(page: bytearray, offset: int, fmt: str, *values) -> bytes:
    struct.pack_into(fmt, page, offset, *values)
    return bytes(page)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: corrupt(p, 0, ">B", 7), "page type"),
        (lambda p: corrupt(p, 3, ">H", 300), "cell pointers"),
        (lambda p: corrupt(p, 5, ">H", 600), "content area starts"),
        (lambda p: corrupt(p, 7, ">B", 61), "fragmented"),
        (lambda p: corrupt(p, 8, ">H", 10), "outside the content area"),
        (lambda p: corrupt(p, 8, ">H", 510), "outside the content area"),
        (lambda p: corrupt(p, 10, ">H", 505), "overlap"),
        (lambda p: corrupt(p, 508, ">B", 0x7F), "usable area"),  # payload size 127
        (lambda p: corrupt(p, 1, ">H", 100), "freeblock"),  # freeblock before content
        (lambda p: corrupt(p, 1, ">H", 506), "freeblock|overlap"),  # freeblock in a cell
    ],
)
def test_detected_corruption(mutate, message: str) -> None:
    page = leaf([b"\x02\x01\x01\x00", b"\x02\x02\x01\x00"])
    with pytest.raises(CorruptPageError, match=message) as info:
        parse_btree_page(mutate(page), 9, 512)
    assert info.value.pgno == 9


def test_freeblock_chain_checks() -> None:
    base = leaf([b"\x02\x01\x01\x00"])
    struct.pack_into(">HHHB", base, 1, 400, 1, 300, 0)  # content from 300, freeblock 400
    good = bytearray(base)
    struct.pack_into(">HH", good, 400, 0, 8)
    assert parse_btree_page(bytes(good), 2, 512).first_freeblock == 400
    descending = bytearray(base)
    struct.pack_into(">HH", descending, 400, 350, 8)
    struct.pack_into(">HH", descending, 350, 0, 8)
    with pytest.raises(CorruptPageError, match="ascending"):
        parse_btree_page(bytes(descending), 2, 512)
    tiny = bytearray(base)
    struct.pack_into(">HH", tiny, 400, 0, 2)
    with pytest.raises(CorruptPageError, match="size"):
        parse_btree_page(bytes(tiny), 2, 512)
    past_end = bytearray(base)
    struct.pack_into(">HH", past_end, 400, 0, 200)
    with pytest.raises(CorruptPageError):
        parse_btree_page(bytes(past_end), 2, 512)


def test_zero_child_and_overflow_pages() -> None:
    interior = bytearray(512)
    interior[0] = 5
    struct.pack_into(">HHHBI", interior, 1, 0, 1, 500, 0, 0)  # right child 0
    struct.pack_into(">H", interior, 12, 500)
    struct.pack_into(">IB", interior, 500, 3, 1)
    with pytest.raises(CorruptPageError, match="right child"):
        parse_btree_page(bytes(interior), 2, 512)
    struct.pack_into(">I", interior, 8, 4)
    struct.pack_into(">I", interior, 500, 0)
    with pytest.raises(CorruptPageError, match="left child"):
        parse_btree_page(bytes(interior), 2, 512)
    cell = make_table_leaf_cell(1, b"q" * 1000, 512, 77)
    raw = bytearray(encode_btree_page(BTreePage(2, PageType.TABLE_LEAF, [cell], None), 512, 512))
    struct.pack_into(">I", raw, 508, 0)
    with pytest.raises(CorruptPageError, match="overflow page 0"):
        parse_btree_page(bytes(raw), 2, 512)


def test_short_page() -> None:
    with pytest.raises(CorruptPageError):
        parse_btree_page(b"\x0d" + bytes(100), 2, 512)


@given(st.binary(min_size=512, max_size=512), st.sampled_from([1, 2]))
@settings(deadline=None, max_examples=300)
def test_random_bytes(data: bytes, pgno: int) -> None:
    try:
        parse_btree_page(data, pgno, 512)
    except CorruptPageError as exc:
        assert exc.pgno == pgno


@st.composite
def plausible_pages(draw):
    """Random pages that get past the type byte and the header more often."""
    page = bytearray(draw(st.binary(min_size=512, max_size=512)))
    page[0] = draw(st.sampled_from([2, 5, 10, 13]))
    page[3] = 0
    page[4] = draw(st.integers(0, 12))
    page[5:7] = draw(st.integers(0, 512)).to_bytes(2, "big")
    page[7] = draw(st.integers(0, 70))
    return bytes(page)


@given(plausible_pages())
@settings(deadline=None, max_examples=400)
def test_plausible_random_pages(data: bytes) -> None:
    try:
        page = parse_btree_page(data, 3, 512)
    except CorruptPageError:
        return
    assert len(page.cells) <= 12


@given(st.data())
@settings(
    deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_mutated_real_pages(real_databases, data: st.DataObject) -> None:
    db = data.draw(st.sampled_from(real_databases[:3]))
    roots = [1, *db.roots().values()]
    root = data.draw(st.sampled_from(roots))
    pages = db.btree(root)
    page = data.draw(st.sampled_from(pages))
    raw = bytearray(db.page(page.pgno))
    hdr = header_offset(page.pgno)
    for _ in range(data.draw(st.integers(1, 6))):
        # aim at the header and pointer array half of the time
        hot = data.draw(st.booleans())
        limit = hdr + 12 + 2 * len(page.cells) if hot else len(raw)
        i = data.draw(st.integers(0, min(limit, len(raw)) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        parse_btree_page(bytes(raw), page.pgno, db.usable_size)
    except CorruptPageError as exc:
        assert exc.pgno == page.pgno


def test_every_header_byte_mutated(real_databases) -> None:
    """Each byte of the page header and cell pointer array of every b-tree
    page of two databases set to 0, 0xFF and flipped: CorruptPageError or a
    page, nothing else."""
    parsed = 0
    for db in (d for d in real_databases if d.name in ("p512", "apsw_reserved")):
        for root in [1, *db.roots().values()]:
            for page in db.btree(root):
                original = db.page(page.pgno)
                hdr = header_offset(page.pgno)
                end = hdr + (8 if page.is_leaf else 12) + 2 * len(page.cells)
                for i in range(hdr, end):
                    for value in (0, 0xFF, original[i] ^ 0x01, original[i] ^ 0x80):
                        raw = bytearray(original)
                        raw[i] = value
                        try:
                            parse_btree_page(bytes(raw), page.pgno, db.usable_size)
                            parsed += 1
                        except CorruptPageError as exc:
                            assert exc.pgno == page.pgno
    assert parsed > 0
