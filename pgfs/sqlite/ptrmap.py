"""Pointer-map pages (fileformat2 §1.7 "Pointer Map or Ptrmap Pages").

Only in auto-vacuum and incremental-vacuum databases. Page 2 is the first
pointer map; each holds usable_size//5 five-byte entries (type, 4-byte parent
page number) for the pages that follow it, so the next pointer map comes
usable_size//5 + 1 pages later. If that position is the lock-byte page, the
pointer map is the page after it (ptrmapPageno in btree.c).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.header import lock_byte_page


class PtrmapType(IntEnum):
    """Entry types (§1.7). UNUSED (0) is an all-zero entry: a page past the end
    of the database, or the lock-byte page, which SQLite never maps."""

    UNUSED = 0
    ROOT = 1
    FREE = 2
    OVERFLOW1 = 3
    OVERFLOW2 = 4
    BTREE = 5


@dataclass
class PtrmapEntry:
    """The parent is 0 for ROOT and FREE pages; for BTREE the parent b-tree
    page; for OVERFLOW1 the page holding the cell; for OVERFLOW2 the previous
    overflow page."""

    type: PtrmapType
    parent: int


_UNUSED = PtrmapEntry(PtrmapType.UNUSED, 0)


def _page_size_for(usable_size: int) -> int:
    # At most 255 reserved bytes on pages of at least 512: the page size is the
    # smallest power of two that holds the usable size.
    return 1 << (usable_size - 1).bit_length()


def entries_per_page(usable_size: int) -> int:
    return usable_size // 5


def ptrmap_page_for(pgno: int, usable_size: int) -> int:
    """The pointer-map page holding the entry of ``pgno`` (ptrmapPageno).

    Pages 1 and below have no entry: ValueError.
    """
    if pgno < 2:
        raise ValueError(f"page {pgno} has no pointer-map entry")
    per = entries_per_page(usable_size) + 1
    result = (pgno - 2) // per * per + 2
    if result == lock_byte_page(_page_size_for(usable_size)):
        result += 1
    return result


def is_ptrmap_page(pgno: int, usable_size: int) -> bool:
    """True for page 2 and every usable_size//5 + 1 pages after (PTRMAP_ISPAGE)."""
    return pgno >= 2 and ptrmap_page_for(pgno, usable_size) == pgno


def ptrmap_entry_index(pgno: int, usable_size: int) -> tuple[int, int]:
    """(pointer-map page, index of ``pgno``'s entry on it)."""
    ptrmap = ptrmap_page_for(pgno, usable_size)
    index = pgno - ptrmap - 1
    if index < 0:
        raise ValueError(f"page {pgno} is a pointer-map page")
    return ptrmap, index


def decode_ptrmap_page(data: bytes, pgno: int, usable_size: int) -> list[PtrmapEntry]:
    """All usable_size//5 entries; entry i describes page pgno + 1 + i.

    Entries for pages past the end of the database are meaningless: zero on a
    fresh map, stale after auto-vacuum truncated the file (SQLite leaves them).

    Raises CorruptPageError for an unknown type or a zero type with a parent.
    """
    n = entries_per_page(usable_size)
    if len(data) < 5 * n:
        raise CorruptPageError(pgno, f"pointer-map page is {len(data)} bytes")
    entries = []
    for i, (kind, parent) in enumerate(struct.iter_unpack(">BI", bytes(data[: 5 * n]))):
        if kind == 0:
            if parent:
                raise CorruptPageError(pgno, f"pointer-map entry {i}: type 0, parent {parent}")
            entries.append(_UNUSED)
            continue
        if kind > PtrmapType.BTREE:
            raise CorruptPageError(pgno, f"pointer-map entry {i}: type {kind}")
        entries.append(PtrmapEntry(PtrmapType(kind), parent))
    return entries


def encode_ptrmap_page(entries: Sequence[PtrmapEntry], page_size: int) -> bytes:
    """A pointer-map page: the entries in order from the next page, then zeros."""
    if 5 * len(entries) > page_size:
        raise ValueError(f"{len(entries)} entries do not fit on a {page_size}-byte page")
    out = bytearray(page_size)
    for i, entry in enumerate(entries):
        struct.pack_into(">BI", out, 5 * i, int(entry.type), entry.parent)
    return bytes(out)
