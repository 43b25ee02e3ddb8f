"""A set of page numbers that becomes a bitmap when large: one bit a page.

A commit of every page (VACUUM) passes sets of page numbers between the diff's
steps (pages done, pages gone). As Python sets they cost an int object and a
table slot per page, about 60 bytes, and those small objects left the mount's
memory fragmented after the commit; as a bitmap the set of every page of a
1 GB database is 30 KB. Iterates in page-number order.

The local page cache keeps which of its slots hold a page in one too, a
bitmap from the start (`from_bitmap`), and stores the bitmap beside the slots.

`DenseKeys` is the rule the containers keyed by page number share (the
tracker's `PageIndex`, the diff's `RoleMap`, the records a commit writes, and
`PageSet` itself): a dict or set while small, arrays or a bitmap indexed by
page number once the keys are many and dense.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSet

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


class PageSet(MutableSet[int]):
    """Page numbers (>= 0): a set while they are few or scattered, a bitmap that grows
    to the largest one once they are many and dense (the `DenseKeys` rule).

    A commit of a few pages near the end of a big file stays a few set members:
    iterating a bitmap visits every byte up to the largest page, and a
    single-row commit must not cost more in a bigger file.
    """

    def __init__(self, pgnos: Iterable[int] = ()) -> None:
        self._members: set[int] | None = set()
        """The members while few or scattered; None once they are in `_bits`."""
        self._bits = bytearray()
        self._count = 0
        self._dense = DenseKeys()
        for pgno in pgnos:
            self.add(pgno)

    @classmethod
    def from_bitmap(cls, bits: bytes) -> PageSet:
        """The set whose member n is bit n % 8 of byte n // 8 of `bits` (`bitmap`)."""
        pages = cls()
        pages._members = None
        pages._bits = bytearray(bits)
        pages._count = int.from_bytes(bits, "little").bit_count()
        return pages

    def bitmap(self) -> bytes:
        if self._members is None:
            return bytes(self._bits)
        bits = bytearray((max(self._members, default=-1) >> 3) + 1)
        for pgno in self._members:
            bits[pgno >> 3] |= 1 << (pgno & 7)
        return bytes(bits)

    def _to_bitmap(self) -> None:
        members = self._members
        assert members is not None
        self._bits = bytearray(self.bitmap())
        self._count = len(members)
        self._members = None

    def __contains__(self, pgno: object) -> bool:
        if self._members is not None:
            return pgno in self._members
        if not isinstance(pgno, int) or pgno < 0:
            return False
        byte = pgno >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (pgno & 7)))

    def add(self, pgno: int) -> None:
        if pgno < 0:
            raise ValueError("a PageSet holds page numbers >= 0")
        members = self._members
        if members is not None:
            members.add(pgno)
            if self._dense.due(pgno, len(members)):
                self._to_bitmap()
            return
        byte, bit = pgno >> 3, 1 << (pgno & 7)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits)))
        if not self._bits[byte] & bit:
            self._bits[byte] |= bit
            self._count += 1

    def discard(self, pgno: int) -> None:
        if self._members is not None:
            self._members.discard(pgno)
        elif pgno in self:
            self._bits[pgno >> 3] &= ~(1 << (pgno & 7)) & 0xFF
            self._count -= 1

    def __iter__(self) -> Iterator[int]:
        if self._members is not None:
            yield from sorted(self._members)
            return
        for byte, bits in enumerate(self._bits):
            if bits:
                base = byte << 3
                yield from (base + bit for bit in range(8) if bits & (1 << bit))

    def __len__(self) -> int:
        return len(self._members) if self._members is not None else self._count

    def clear(self) -> None:
        """Remove every member; a bitmap stays a bitmap (`from_bitmap`)."""
        if self._members is not None:
            self._members = set()
            self._dense = DenseKeys()
        self._bits = bytearray()
        self._count = 0

    def drop_from(self, first: int) -> None:
        """Remove every member >= `first`."""
        if self._members is not None:
            self._members = {pgno for pgno in self._members if pgno < first}
            return
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
        if self._members is not None:
            while n < stop and n in self._members:
                n += 1
            return n if n < stop else None
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
        if self._members is not None:
            return sum(1 for pgno in self._members if pgno < stop)
        whole, rest = divmod(stop, 8)
        held = int.from_bytes(self._bits[:whole], "little").bit_count()
        if rest and whole < len(self._bits):
            held += (self._bits[whole] & ((1 << rest) - 1)).bit_count()
        return held

    @property
    def is_bitmap(self) -> bool:
        """Whether the members are kept as a bitmap (many and dense) rather than a set."""
        return self._members is None

    @property
    def memory_bytes(self) -> int:
        """Bytes the bitmap holds (tests check it stays one bit a page)."""
        return len(self._bits)
