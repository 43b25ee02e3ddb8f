"""B-tree pages (fileformat2 §1.6 "B-tree Pages").

A b-tree page is: (on page 1 only, the 100-byte database header), an 8-byte
(leaf) or 12-byte (interior) page header, the cell pointer array (2 bytes per
cell, in key order), unallocated space, the cell content area, and the
reserved bytes at the end of the page. Free space inside the content area is a
chain of freeblocks plus fragments of at most 3 bytes counted in the header.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import pairwise
from typing import Any, NamedTuple

from pgfs.sqlite.errors import CorruptPageError, FormatError
from pgfs.sqlite.header import HEADER_SIZE, MIN_USABLE_SIZE
from pgfs.sqlite.varint import decode_varint, encode_varint

MAX_FRAGMENTED_BYTES = 60  # §1.6: "never exceeds 60" (SQLite defragments above this)
MIN_CELL_SIZE = 4  # SQLite allocates at least 4 bytes per cell (cellSizePtr, fillInCell)
MAX_PAYLOAD_SIZE = 0x7FFFFFFF  # payload sizes are 32-bit in SQLite (SQLITE_MAX_LENGTH <= 2**31-1)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class PageType(IntEnum):
    """The b-tree page type flag at offset 0 of the page header (§1.6)."""

    INDEX_INTERIOR = 2
    TABLE_INTERIOR = 5
    INDEX_LEAF = 10
    TABLE_LEAF = 13

    @property
    def is_leaf(self) -> bool:
        return self in (PageType.TABLE_LEAF, PageType.INDEX_LEAF)

    @property
    def is_table(self) -> bool:
        """A page of a table b-tree (keyed by rowid), not of an index."""
        return self in (PageType.TABLE_LEAF, PageType.TABLE_INTERIOR)


@dataclass(frozen=True)
class TableLeafCell:
    """Varint payload size, varint rowid, local payload, [overflow page]."""

    rowid: int
    payload_size: int
    local: bytes
    overflow: int | None


@dataclass(frozen=True)
class TableInteriorCell:
    """4-byte left child page number, varint rowid (the largest rowid in it)."""

    left_child: int
    rowid: int


@dataclass(frozen=True)
class IndexLeafCell:
    """Varint payload size, local payload, [overflow page]."""

    payload_size: int
    local: bytes
    overflow: int | None


@dataclass(frozen=True)
class IndexInteriorCell:
    """4-byte left child, varint payload size, local payload, [overflow page]."""

    left_child: int
    payload_size: int
    local: bytes
    overflow: int | None


Cell = TableLeafCell | TableInteriorCell | IndexLeafCell | IndexInteriorCell

_CELL_CLASS = {
    PageType.TABLE_LEAF: TableLeafCell,
    PageType.TABLE_INTERIOR: TableInteriorCell,
    PageType.INDEX_LEAF: IndexLeafCell,
    PageType.INDEX_INTERIOR: IndexInteriorCell,
}


@dataclass
class BTreePage:
    """A decoded b-tree page.

    ``cells`` are in pointer-array (key) order; ``right_child`` is None on
    leaves; ``cell_content_start`` is the real offset (65536 where the page
    stores 0). ``cell_offsets`` (not part of equality) gives where each cell
    sits on the parsed page.
    """

    pgno: int
    page_type: PageType
    cells: list
    right_child: int | None
    first_freeblock: int = 0
    fragmented_bytes: int = 0
    cell_content_start: int = 0
    cell_offsets: list[int] = field(default_factory=list, compare=False, repr=False)

    @property
    def is_leaf(self) -> bool:
        return self.page_type.is_leaf

    @property
    def is_table(self) -> bool:
        return self.page_type.is_table

    def children(self) -> list[int]:
        return child_pages(self.right_child, self.cells)

    def overflow_pages(self) -> list[int]:
        """First overflow page of every cell that spills, in cell order."""
        return [c.overflow for c in self.cells if getattr(c, "overflow", None) is not None]


def header_offset(pgno: int) -> int:
    """Where the b-tree page header starts: after the database header on page 1."""
    return HEADER_SIZE if pgno == 1 else 0


def max_local(usable_size: int, page_type: PageType) -> int:
    """X in §1.6: the most payload a cell keeps on the b-tree page."""
    if page_type == PageType.TABLE_LEAF:
        return usable_size - 35
    return (usable_size - 12) * 64 // 255 - 23


def min_local(usable_size: int) -> int:
    """M in §1.6: the least payload a spilling cell keeps on the page."""
    return (usable_size - 12) * 32 // 255 - 23


def local_payload_size(payload_size: int, usable_size: int, page_type: PageType) -> int:
    """Bytes of a payload stored on the b-tree page itself (§1.6, "The amount of
    payload that spills onto overflow pages"): all of it up to X, else K when
    K <= X, else M, with K = M + ((P - M) % (U - 4))."""
    if page_type == PageType.TABLE_INTERIOR:
        raise ValueError("table interior cells have no payload")
    x = max_local(usable_size, page_type)
    if payload_size <= x:
        return payload_size
    m = min_local(usable_size)
    k = m + (payload_size - m) % (usable_size - 4)
    return k if k <= x else m


def _check_usable(usable_size: int) -> None:
    if not MIN_USABLE_SIZE <= usable_size <= 65536:
        raise ValueError(f"usable size {usable_size} is outside 480..65536")


# ---------------------------------------------------------------- parsing


def _varint(data, pos, pgno, pc, end_limit):
    try:
        value, nxt = decode_varint(data, pos)
    except FormatError:
        raise CorruptPageError(pgno, f"cell at {pc}: varint runs off the page") from None
    if nxt > end_limit:
        raise CorruptPageError(pgno, f"cell at {pc}: varint runs past the usable area")
    return value, nxt


def _parse_cell(data: bytes, pgno: int, pc: int, usable_size: int, page_type: PageType):
    """Decode the cell at offset ``pc``: (cell, size on the page)."""
    pos = pc
    left = None
    if page_type in (PageType.TABLE_INTERIOR, PageType.INDEX_INTERIOR):
        if pc + 4 > usable_size:
            raise CorruptPageError(pgno, f"cell at {pc} runs past the usable area")
        left = _U32.unpack_from(data, pc)[0]
        if left == 0:
            raise CorruptPageError(pgno, f"cell at {pc}: left child page 0")
        pos = pc + 4
        if page_type == PageType.TABLE_INTERIOR:
            rowid, pos = _varint(data, pos, pgno, pc, usable_size)
            return TableInteriorCell(left, rowid), pos - pc
    size, pos = _varint(data, pos, pgno, pc, usable_size)
    if size < 0 or size > MAX_PAYLOAD_SIZE:
        raise CorruptPageError(pgno, f"cell at {pc}: payload size {size}")
    rowid = None
    if page_type == PageType.TABLE_LEAF:
        rowid, pos = _varint(data, pos, pgno, pc, usable_size)
    n_local = local_payload_size(size, usable_size, page_type)
    end = pos + n_local
    overflow = None
    if n_local < size:
        if end + 4 > usable_size:
            raise CorruptPageError(pgno, f"cell at {pc} runs past the usable area")
        overflow = _U32.unpack_from(data, end)[0]
        if overflow == 0:
            raise CorruptPageError(pgno, f"cell at {pc}: overflow page 0")
        local = bytes(data[pos:end])
        end += 4
    else:
        if end > usable_size:
            raise CorruptPageError(pgno, f"cell at {pc} runs past the usable area")
        local = bytes(data[pos:end])
    if page_type == PageType.TABLE_LEAF:
        cell = TableLeafCell(rowid, size, local, overflow)
    elif page_type == PageType.INDEX_LEAF:
        cell = IndexLeafCell(size, local, overflow)
    else:
        cell = IndexInteriorCell(left, size, local, overflow)
    return cell, max(end - pc, MIN_CELL_SIZE)


def _parse_freeblocks(data, pgno, first, content_start, usable_size):
    """Walk the freeblock chain (§1.6): [(offset, size)], validated as
    btreeComputeFreeSpace does: inside the content area, ascending, separated
    by more than 3 bytes (closer blocks would have been merged), each >= 4 bytes."""
    blocks = []
    pc = first
    while pc:
        if pc < content_start:
            raise CorruptPageError(pgno, f"freeblock at {pc} before the cell content area")
        if pc + 4 > usable_size:
            raise CorruptPageError(pgno, f"freeblock at {pc} past the usable area")
        nxt, size = struct.unpack_from(">HH", data, pc)
        if size < 4 or pc + size > usable_size:
            raise CorruptPageError(pgno, f"freeblock at {pc} has size {size}")
        blocks.append((pc, size))
        if nxt and nxt < pc + size + 4:
            raise CorruptPageError(pgno, f"freeblock at {pc}: next {nxt} not in ascending order")
        pc = nxt
    return blocks


def parse_btree_page(data: bytes, pgno: int, usable_size: int) -> BTreePage:
    """Decode and validate a b-tree page (§1.6).

    Validates the type byte, that the cell count fits before the content area,
    that every pointer lies in the content area and every cell inside the
    usable area, that cells and freeblocks do not overlap, the freeblock chain,
    fragmented bytes <= 60, and child/overflow page numbers > 0. Raises
    CorruptPageError(pgno, ...) and nothing else on arbitrary bytes.
    """
    _check_usable(usable_size)
    if isinstance(data, memoryview | bytearray):
        data = bytes(data)
    if len(data) < usable_size:
        raise CorruptPageError(pgno, f"page is {len(data)} bytes, usable size {usable_size}")
    hdr = header_offset(pgno)
    try:
        page_type = PageType(data[hdr])
    except ValueError:
        raise CorruptPageError(pgno, f"bad b-tree page type {data[hdr]}") from None
    interior = page_type in (PageType.TABLE_INTERIOR, PageType.INDEX_INTERIOR)
    hsize = 12 if interior else 8
    if hdr + hsize > usable_size:
        raise CorruptPageError(pgno, "page header runs past the usable area")
    first_free, n_cells, content, frag = struct.unpack_from(">HHHB", data, hdr + 1)
    content = content or 65536
    right = _U32.unpack_from(data, hdr + 8)[0] if interior else None
    if right == 0:
        raise CorruptPageError(pgno, "right child page 0")
    ptr_end = hdr + hsize + 2 * n_cells
    if ptr_end > content:
        raise CorruptPageError(pgno, f"{n_cells} cell pointers overlap the content area")
    if content > usable_size:
        raise CorruptPageError(pgno, f"cell content area starts at {content}, past the page")
    if frag > MAX_FRAGMENTED_BYTES:
        raise CorruptPageError(pgno, f"{frag} fragmented bytes")
    offsets = list(struct.unpack_from(f">{n_cells}H", data, hdr + hsize))
    cells = []
    extents = []
    for pc in offsets:
        if pc < content or pc > usable_size - MIN_CELL_SIZE:
            raise CorruptPageError(pgno, f"cell pointer {pc} outside the content area")
        cell, size = _parse_cell(data, pgno, pc, usable_size, page_type)
        if pc + size > usable_size:
            raise CorruptPageError(pgno, f"cell at {pc} runs past the usable area")
        cells.append(cell)
        extents.append((pc, size))
    extents.extend(_parse_freeblocks(data, pgno, first_free, content, usable_size))
    extents.sort()
    for (a, a_size), (b, _) in pairwise(extents):
        if a + a_size > b:
            raise CorruptPageError(pgno, f"cells or freeblocks at {a} and {b} overlap")
    return BTreePage(
        pgno=pgno,
        page_type=page_type,
        cells=cells,
        right_child=right,
        first_freeblock=first_free,
        fragmented_bytes=frag,
        cell_content_start=content,
        cell_offsets=offsets,
    )


# ---------------------------------------------------------------- encoding


def _page_type_of(cell) -> PageType:
    for page_type, cls in _CELL_CLASS.items():
        if type(cell) is cls:
            return page_type
    raise TypeError(f"not a b-tree cell: {type(cell).__name__}")


def encode_cell(cell: Cell, usable_size: int) -> bytes:
    """The bytes of a cell as SQLite's fillInCell lays them out, padded to 4 bytes.

    Raises ValueError when the local part or the overflow pointer does not
    match the payload size (local_payload_size decides both).
    """
    page_type = _page_type_of(cell)
    if page_type == PageType.TABLE_INTERIOR:
        if cell.left_child <= 0:
            raise ValueError("left child page must be > 0")
        return _U32.pack(cell.left_child) + encode_varint(cell.rowid)
    n_local = local_payload_size(cell.payload_size, usable_size, page_type)
    if len(cell.local) != n_local:
        raise ValueError(
            f"cell with a {cell.payload_size}-byte payload keeps {n_local} bytes locally, "
            f"not {len(cell.local)}"
        )
    spills = n_local < cell.payload_size
    if spills != (cell.overflow is not None):
        raise ValueError("overflow page given for a payload that does not spill, or missing")
    parts = []
    if page_type == PageType.INDEX_INTERIOR:
        if cell.left_child <= 0:
            raise ValueError("left child page must be > 0")
        parts.append(_U32.pack(cell.left_child))
    parts.append(encode_varint(cell.payload_size))
    if page_type == PageType.TABLE_LEAF:
        parts.append(encode_varint(cell.rowid))
    parts.append(bytes(cell.local))
    if spills:
        if cell.overflow <= 0:
            raise ValueError("overflow page must be > 0")
        parts.append(_U32.pack(cell.overflow))
    out = b"".join(parts)
    if len(out) < MIN_CELL_SIZE:
        out = out.ljust(MIN_CELL_SIZE, b"\0")
    return out


def cell_size(cell: Cell, usable_size: int) -> int:
    """Bytes the cell takes in the content area (not counting its 2-byte pointer)."""
    return len(encode_cell(cell, usable_size))


def encode_btree_page(
    page: BTreePage, page_size: int, usable_size: int, prefix: bytes = b""
) -> bytes:
    """Write a page: cells packed at the end of the usable area in the given
    order (the first cell highest, as SQLite's rebuildPage does), the pointer
    array in cell order, no freeblocks, zero fragmented bytes, the reserved
    bytes zero. ``prefix`` (the 100-byte database header on page 1) goes
    first and the page header follows it. Raises ValueError if the cells do
    not fit.
    """
    _check_usable(usable_size)
    if usable_size > page_size:
        raise ValueError(f"usable size {usable_size} exceeds page size {page_size}")
    page_type = PageType(page.page_type)
    interior = page_type in (PageType.TABLE_INTERIOR, PageType.INDEX_INTERIOR)
    hdr = len(prefix)
    if (page.pgno == 1) != (hdr == HEADER_SIZE):
        raise ValueError("page 1, and only page 1, starts with the 100-byte database header")
    hsize = 12 if interior else 8
    out = bytearray(page_size)
    out[:hdr] = prefix
    top = usable_size
    pointers = []
    for cell in page.cells:
        if _CELL_CLASS[page_type] is not type(cell):
            raise ValueError(f"{type(cell).__name__} on a {page_type.name} page")
        raw = encode_cell(cell, usable_size)
        top -= len(raw)
        pointers.append(top)
        if top < hdr + hsize + 2 * len(pointers):
            raise ValueError(f"{len(page.cells)} cells do not fit on a {usable_size}-byte page")
        out[top : top + len(raw)] = raw
    if hdr + hsize + 2 * len(pointers) > top:
        raise ValueError("page header does not fit")
    out[hdr] = page_type
    struct.pack_into(">HHHB", out, hdr + 1, 0, len(pointers), top & 0xFFFF, 0)
    if interior:
        if not page.right_child or page.right_child <= 0:
            raise ValueError("an interior page needs a right child > 0")
        _U32.pack_into(out, hdr + 8, page.right_child)
    struct.pack_into(f">{len(pointers)}H", out, hdr + hsize, *pointers)
    return bytes(out)


_ONE_BYTE_VARINTS = [bytes([v]) for v in range(0x80)]


def _varint_bytes(value: int) -> bytes:
    """encode_varint, with the one- and two-byte forms (payload sizes, most rowids)
    made without a loop."""
    if 0 <= value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    if 0 <= value < 0x4000:
        return bytes(((value >> 7) | 0x80, value & 0x7F))
    return encode_varint(value)


def encode_table_leaf(
    rows: Sequence[tuple[int, bytes, int | None]],
    page_size: int,
    usable_size: int,
    prefix: bytes = b"",
) -> bytes:
    """A table-leaf page holding (rowid, payload, first overflow page) rows in order.

    The same bytes as `encode_btree_page` of `make_table_leaf_cell`s (cells packed
    at the end of the page in order, no freeblocks, §1.6), made without building
    cell objects: the renderer makes every leaf a cold read needs with this.
    ValueError when a payload's overflow page disagrees with its size, or the rows
    do not fit.
    """
    _check_usable(usable_size)
    x = max_local(usable_size, PageType.TABLE_LEAF)
    m = min_local(usable_size)
    cells: list[bytes] = []
    pointers: list[int] = []
    top = usable_size
    for rowid, payload, overflow in rows:
        size = len(payload)
        if size <= x:
            if overflow is not None:
                raise ValueError(f"a {size}-byte payload does not spill; overflow={overflow}")
            cell = b"".join((_varint_bytes(size), _varint_bytes(rowid), payload))
            if len(cell) < MIN_CELL_SIZE:
                cell = cell.ljust(MIN_CELL_SIZE, b"\0")
        else:
            if overflow is None or overflow <= 0:
                raise ValueError(f"a {size}-byte payload spills; overflow={overflow}")
            k = m + (size - m) % (usable_size - 4)
            local = k if k <= x else m
            cell = b"".join(
                (_varint_bytes(size), _varint_bytes(rowid), payload[:local], _U32.pack(overflow))
            )
        top -= len(cell)
        cells.append(cell)
        pointers.append(top)
    count = len(pointers)
    head = len(prefix) + 8 + 2 * count
    if top < head:
        raise ValueError(f"{count} cells do not fit on a {usable_size}-byte page")
    cells.reverse()
    return b"".join(
        (
            prefix,
            struct.pack(">BHHHB", PageType.TABLE_LEAF, 0, count, top & 0xFFFF, 0),
            struct.pack(f">{count}H", *pointers),
            bytes(top - head),
            *cells,
            bytes(page_size - usable_size),
        )
    )


def make_table_leaf_cell(
    rowid: int, payload: bytes, usable_size: int, overflow: int | None
) -> TableLeafCell:
    """A table-leaf cell for ``payload``, cut to its local part (§1.6).

    ``overflow`` is the first overflow page; it must be given exactly when the
    payload spills (ValueError otherwise).
    """
    n_local = local_payload_size(len(payload), usable_size, PageType.TABLE_LEAF)
    spills = n_local < len(payload)
    if spills != (overflow is not None):
        raise ValueError(
            f"a {len(payload)}-byte payload {'spills' if spills else 'does not spill'} "
            f"on a page with usable size {usable_size}; overflow={overflow}"
        )
    return TableLeafCell(rowid, len(payload), bytes(payload[:n_local]), overflow)


# ---------------------------------------------------------------- scanning


class CellSpan(NamedTuple):
    """Where one cell lies on its page, and the numbers in it (fileformat2 §1.6).

    `start:end` are the cell's bytes (what SQLite wrote for it, so two cells
    with equal bytes hold the same row); `local_start:local_end` its local
    payload. `rowid` on table pages, `left_child` on interior pages,
    `overflow` when the payload spills.
    """

    start: int
    end: int
    rowid: int | None
    left_child: int | None
    payload_size: int
    local_start: int
    local_end: int
    overflow: int | None


class BTreeScan(NamedTuple):
    """A b-tree page as `scan_btree_page` reads it: type, right child, cells in key order."""

    pgno: int
    page_type: PageType
    right_child: int | None
    cells: list[CellSpan]

    @property
    def is_leaf(self) -> bool:
        return self.page_type.is_leaf

    @property
    def is_table(self) -> bool:
        return self.page_type.is_table

    def children(self) -> list[int]:
        return child_pages(self.right_child, self.cells)


def child_pages(right_child: int | None, cells: Iterable[Any]) -> list[int]:
    """Child page numbers of an interior page: the left children in cell order, then
    the right child (fileformat2 §1.6); none on a leaf (no right child)."""
    if right_child is None:
        return []
    return [c.left_child for c in cells if c.left_child is not None] + [right_child]


def _scan_varint(data: bytes, pos: int, limit: int, pgno: int) -> tuple[int, int]:
    """decode_varint, inlined for the common one- and two-byte cases."""
    if pos < limit:
        b = data[pos]
        if b < 0x80:
            return b, pos + 1
        if pos + 1 < limit and data[pos + 1] < 0x80:
            return ((b & 0x7F) << 7) | data[pos + 1], pos + 2
    try:
        value, nxt = decode_varint(data, pos)
    except FormatError:
        raise CorruptPageError(pgno, f"varint at {pos} runs off the page") from None
    if nxt > limit:
        raise CorruptPageError(pgno, f"varint at {pos} runs past the usable area")
    return value, nxt


def scan_btree_page(
    data: bytes, pgno: int, usable_size: int, *, spilling_only: bool = False
) -> BTreeScan:
    """Read a b-tree page's header and cell boundaries without copying payloads.

    What the diff needs of a changed page, at a fraction of `parse_btree_page`'s
    cost: every offset is bounds-checked (CorruptPageError, never IndexError),
    but overlaps and freeblocks are not validated (SQLite wrote the page).
    `spilling_only` leaves out the leaf cells whose payload does not spill (a raw
    tree's walker needs only overflow chains and children).
    """
    if len(data) < usable_size:
        raise CorruptPageError(pgno, f"page is {len(data)} bytes, usable size {usable_size}")
    hdr = HEADER_SIZE if pgno == 1 else 0
    try:
        page_type = PageType(data[hdr])
    except ValueError:
        raise CorruptPageError(pgno, f"bad b-tree page type {data[hdr]}") from None
    interior = page_type in (PageType.TABLE_INTERIOR, PageType.INDEX_INTERIOR)
    hsize = 12 if interior else 8
    n_cells = _U16.unpack_from(data, hdr + 3)[0]
    right = _U32.unpack_from(data, hdr + 8)[0] if interior else None
    if right == 0:
        raise CorruptPageError(pgno, "right child page 0")
    if hdr + hsize + 2 * n_cells > usable_size:
        raise CorruptPageError(pgno, f"{n_cells} cell pointers run past the page")
    offsets = struct.unpack_from(f">{n_cells}H", data, hdr + hsize)
    table = page_type in (PageType.TABLE_LEAF, PageType.TABLE_INTERIOR)
    x = max_local(usable_size, page_type)
    m = min_local(usable_size)
    step = usable_size - 4
    limit = usable_size
    cells: list[CellSpan] = []
    append = cells.append
    for pc in offsets:
        if pc < hdr + hsize or pc > limit - 4:
            raise CorruptPageError(pgno, f"cell pointer {pc} outside the page")
        pos = pc
        left = None
        if interior:
            left = _U32.unpack_from(data, pc)[0]
            pos += 4
            if page_type == PageType.TABLE_INTERIOR:
                rowid, pos = _scan_varint(data, pos, limit, pgno)
                append(CellSpan(pc, pos, rowid, left, 0, pos, pos, None))
                continue
        elif spilling_only and data[pc] < 0x80:
            continue  # a one-byte payload size (< 128) never exceeds max_local
        size, pos = _scan_varint(data, pos, limit, pgno)
        rowid = None
        if table:
            rowid, pos = _scan_varint(data, pos, limit, pgno)
        if size <= x:
            end = pos + size
            if end > limit:
                raise CorruptPageError(pgno, f"cell at {pc} runs past the usable area")
            if not (spilling_only and left is None):
                append(
                    CellSpan(pc, max(end, pc + MIN_CELL_SIZE), rowid, left, size, pos, end, None)
                )
            continue
        k = m + (size - m) % step
        n_local = k if k <= x else m
        end = pos + n_local
        if end + 4 > limit:
            raise CorruptPageError(pgno, f"cell at {pc} runs past the usable area")
        overflow = _U32.unpack_from(data, end)[0]
        if overflow == 0:
            raise CorruptPageError(pgno, f"cell at {pc}: overflow page 0")
        append(CellSpan(pc, end + 4, rowid, left, size, pos, end, overflow))
    return BTreeScan(pgno, page_type, right, cells)
