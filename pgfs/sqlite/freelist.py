"""The freelist (fileformat2 §1.5 "The Freelist").

Unused pages form a linked list of trunk pages. A trunk page holds a 4-byte
next-trunk page number (0 on the last), a 4-byte count L, then L 4-byte leaf
page numbers. Leaf pages hold nothing of meaning.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from pgfs.sqlite.errors import CorruptPageError

_U32 = struct.Struct(">I")


def max_trunk_leaves(usable_size: int) -> int:
    """Most leaf numbers a trunk may hold when read: usable_size/4 - 2.

    (SQLite writes at most usable_size/4 - 8, for compatibility with a bug in
    versions before 3.6.0 — §1.5 — but accepts the larger number.)
    """
    return usable_size // 4 - 2


@dataclass
class FreelistTrunk:
    next_trunk: int
    leaves: list[int] = field(default_factory=list)


def decode_freelist_trunk(data: bytes, pgno: int, usable_size: int) -> FreelistTrunk:
    """Decode a trunk page; CorruptPageError if the count is too large for the
    page (btreeGetUnusedPage's check) or a leaf number is 0."""
    if usable_size < 8 or len(data) < usable_size:
        raise CorruptPageError(pgno, f"freelist trunk is {len(data)} bytes, usable {usable_size}")
    next_trunk, count = struct.unpack_from(">II", data, 0)
    if count > max_trunk_leaves(usable_size):
        raise CorruptPageError(pgno, f"freelist trunk claims {count} leaves")
    leaves = list(struct.unpack_from(f">{count}I", data, 8))
    if 0 in leaves:
        raise CorruptPageError(pgno, "freelist leaf page 0")
    return FreelistTrunk(next_trunk, leaves)


def encode_freelist_trunk(trunk: FreelistTrunk, page_size: int) -> bytes:
    """A trunk page of ``page_size`` bytes, zero after the leaf list."""
    n = len(trunk.leaves)
    if 8 + 4 * n > page_size:
        raise ValueError(f"{n} leaves do not fit on a {page_size}-byte trunk page")
    out = bytearray(page_size)
    struct.pack_into(f">II{n}I", out, 0, trunk.next_trunk, n, *trunk.leaves)
    return bytes(out)


@dataclass
class Freelist:
    """Every page of the freelist: trunks in chain order and all leaf pages."""

    trunks: list[int] = field(default_factory=list)
    leaves: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Total freelist pages, as the header's offset 36 counts them."""
        return len(self.trunks) + len(self.leaves)

    def pages(self) -> set[int]:
        return set(self.trunks) | set(self.leaves)


def walk_freelist(
    first_trunk: int,
    read_page: Callable[[int], bytes],
    usable_size: int,
    page_count: int | None = None,
    expected_count: int | None = None,
) -> Freelist:
    """Follow the trunk chain from the header's first trunk (offset 32).

    Raises CorruptPageError on a loop, a page number beyond ``page_count`` or
    a total that differs from ``expected_count`` (the header's offset 36).
    """
    result = Freelist()
    seen: set[int] = set()
    pgno = first_trunk
    while pgno:
        if pgno in seen:
            raise CorruptPageError(pgno, "freelist trunk chain loops")
        if page_count is not None and pgno > page_count:
            raise CorruptPageError(pgno, f"freelist trunk beyond the {page_count} pages")
        seen.add(pgno)
        trunk = decode_freelist_trunk(read_page(pgno), pgno, usable_size)
        for leaf in trunk.leaves:
            if leaf in seen or (page_count is not None and leaf > page_count):
                raise CorruptPageError(pgno, f"bad freelist leaf {leaf}")
            seen.add(leaf)
        result.trunks.append(pgno)
        result.leaves.extend(trunk.leaves)
        pgno = trunk.next_trunk
    if expected_count is not None and result.count != expected_count:
        raise CorruptPageError(
            first_trunk or None,
            f"freelist holds {result.count} pages, the header says {expected_count}",
        )
    return result
