"""A set of page numbers kept as a bitmap: one bit a page, no object per member.

A commit of every page (VACUUM) passes sets of page numbers between the diff's
steps (pages done, pages gone). As Python sets they cost an int object and a
table slot per page, about 60 bytes, and those small objects left the mount's
memory fragmented after the commit; as a bitmap the set of every page of a
1 GB database is 30 KB. Iterates in page-number order.

The local page cache keeps which of its slots hold a page in one too, and
stores its bitmap (`bitmap`, `from_bitmap`) beside the slots.

`DenseKeys` is the rule the maps keyed by page number share (the tracker's
`PageIndex`, the diff's `RoleMap`, the records a commit writes): a dict while
small, arrays indexed by page number once the keys are many and dense.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSet


class PageSet(MutableSet[int]):
    """Page numbers (>= 0) in a bitmap that grows to the largest one added."""

    def __init__(self, pgnos: Iterable[int] = ()) -> None:
        self._bits = bytearray()
        self._count = 0
        for pgno in pgnos:
            self.add(pgno)

    @classmethod
    def from_bitmap(cls, bits: bytes) -> PageSet:
        """The set whose member n is bit n % 8 of byte n // 8 of `bits` (`bitmap`)."""
        pages = cls()
        pages._bits = bytearray(bits)
        pages._count = int.from_bytes(bits, "little").bit_count()
        return pages

    def bitmap(self) -> bytes:
        return bytes(self._bits)

    def __contains__(self, pgno: object) -> bool:
        if not isinstance(pgno, int) or pgno < 0:
            return False
        byte = pgno >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (pgno & 7)))

    def add(self, pgno: int) -> None:
        if pgno < 0:
            raise ValueError("a PageSet holds page numbers >= 0")
        byte, bit = pgno >> 3, 1 << (pgno & 7)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits)))
        if not self._bits[byte] & bit:
            self._bits[byte] |= bit
            self._count += 1

    def discard(self, pgno: int) -> None:
        if pgno in self:
            self._bits[pgno >> 3] &= ~(1 << (pgno & 7)) & 0xFF
            self._count -= 1

    def __iter__(self) -> Iterator[int]:
        for byte, bits in enumerate(self._bits):
            if bits:
                base = byte << 3
                yield from (base + bit for bit in range(8) if bits & (1 << bit))

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._bits = bytearray()
        self._count = 0

    def drop_from(self, first: int) -> None:
        """Remove every member >= `first`."""
        keep = (first + 7) >> 3
        dropped = self._bits[keep:]
        del self._bits[keep:]
        self._count -= int.from_bytes(dropped, "little").bit_count()
        if first & 7 and len(self._bits) == keep:
            last = self._bits[-1]
            self._bits[-1] = last & ((1 << (first & 7)) - 1)
            self._count -= (last ^ self._bits[-1]).bit_count()

    def first_absent(self, start: int, stop: int) -> int | None:
        """The smallest number in [start, stop) that is not a member, or None."""
        n = max(start, 0)
        bits = self._bits
        while n < stop:
            byte = n >> 3
            if byte >= len(bits):
                return n
            if bits[byte] == 0xFF:
                n = (byte + 1) << 3  # eight members: skip them
                continue
            if not bits[byte] & (1 << (n & 7)):
                return n
            n += 1
        return None

    def count_below(self, stop: int) -> int:
        """How many members are < `stop`."""
        whole, rest = divmod(stop, 8)
        held = int.from_bytes(self._bits[:whole], "little").bit_count()
        if rest and whole < len(self._bits):
            held += (self._bits[whole] & ((1 << rest) - 1)).bit_count()
        return held

    @property
    def memory_bytes(self) -> int:
        """Bytes the bitmap holds (tests check it stays one bit a page)."""
        return len(self._bits)


DENSE_AFTER = 4096
"""Keys past which a map keyed by page number may leave its dict for arrays."""


class DenseKeys:
    """Watches the keys of a map keyed by page number that starts as a dict, and says
    when arrays indexed by page number would serve it better: past `after` keys,
    while they fill at least a quarter of the range below the largest.

    A dict costs about 100 bytes a key and arrays a few bytes a page up to the
    largest key: a commit of every page (VACUUM) wants arrays, a commit of a few
    pages must cost nothing per database page, and a transaction of many pages
    scattered over a big file must not allocate arrays for all of it.
    """

    def __init__(self, after: int = DENSE_AFTER) -> None:
        self.after = after
        self.top = -1
        """The largest key seen (kept as keys come: no max() over the keys)."""

    def due(self, key: int, count: int) -> bool:
        """Note `key`, now one of `count` keys: True when the map should become arrays."""
        if key > self.top:
            self.top = key
        return count > self.after and self.top < 4 * count
