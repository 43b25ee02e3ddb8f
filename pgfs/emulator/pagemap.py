"""The page map of the current state, kept in the mount's memory.

The store's `pages` table says what every page number is. The mount is the
store's only writer (it holds the lease), so an entry it has read stays true
until one of its own commits changes it: entries are fetched once, in
batches, and moved forward by `apply` after each commit. Raw page bytes are
not kept here (they go to the page cache).

Page numbers are dense (1..page count), so entries live in arrays indexed by
page number, about 26 bytes a page, rather than one `PageRecord` object per
page (about 200 bytes with its dict slot): the map of a 1 GB database stays
near 7 MB. Owners are numbered, so a table rename touches one name. Callers
ask only for page numbers of the database (the renderer and the diff check
the range first): the arrays grow to the largest one asked for.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping

from pgfs.store.changeset import PageKind, PageRecord

Fetch = Callable[[list[int]], dict[int, PageRecord]]
"""Reads page records from the store (raw ones with their bytes)."""
RawSink = Callable[[int, bytes], None]
"""Takes the bytes of a raw page that came with its record."""

FETCH_CHUNK = 1024
"""Most records fetched at once: raw records carry their page's bytes, so a commit
that changes every page (a VACUUM) must not hold them all at the same time."""

_KINDS = tuple(PageKind)
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}

# Bits of an entry's flags byte. An entry is unknown while its flags are 0.
_KNOWN = 0x01
_ABSENT = 0x02  # the store has no record: a hole, rendered as zeros
_RAW = 0x04  # a raw page (its bytes are in the page cache or read again)
_HAS_LO = 0x08
_HAS_HI = 0x10
_HAS_SEQ = 0x20
_HAS_OWNER = 0x40


class PageEntries:
    """Page records held compactly: arrays indexed by page number, about 26 bytes a
    page (module docstring). The page map keeps its entries here, and a commit
    collects the records it writes here on their way to the map."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._flags = bytearray()
        self._kind = bytearray()
        self._owner = array("i")
        self._lo = array("q")
        self._hi = array("q")
        self._seq = array("i")
        self._owners: list[str] = []
        self._owner_ids: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def known(self, pgno: int) -> bool:
        return bool(self._flags_of(pgno))

    def get(self, pgno: int) -> PageRecord | None:
        """The entry of `pgno`: its record (raw ones with b"" as bytes), None for a hole;
        KeyError when it is not known."""
        flags = self._flags_of(pgno)
        if not flags:
            raise KeyError(pgno)
        if flags & _ABSENT:
            return None
        i = pgno - 1
        return PageRecord(
            pgno,
            _KINDS[self._kind[i]],
            self._owners[self._owner[i]] if flags & _HAS_OWNER else None,
            self._lo[i] if flags & _HAS_LO else None,
            self._hi[i] if flags & _HAS_HI else None,
            self._seq[i] if flags & _HAS_SEQ else None,
            b"" if flags & _RAW else None,
        )

    def pgnos(self) -> Iterator[int]:
        """The page numbers with an entry, in order."""
        return (i + 1 for i, flags in enumerate(self._flags) if flags)

    def records(self) -> Iterator[PageRecord]:
        """The known records, by page number (holes left out)."""
        for i, flags in enumerate(self._flags):
            if flags and not flags & _ABSENT:
                record = self.get(i + 1)
                assert record is not None
                yield record

    def put(self, record: PageRecord) -> None:
        """Keep `record` (without its bytes: only whether it is raw)."""
        i = record.pgno - 1
        self._grow(record.pgno)
        if not self._flags[i]:
            self._count += 1
        flags = _KNOWN
        if record.data is not None:
            flags |= _RAW
        if record.owner is not None:
            flags |= _HAS_OWNER
            self._owner[i] = self._owner_id(record.owner)
        if record.lo is not None:
            flags |= _HAS_LO
            self._lo[i] = record.lo
        if record.hi is not None:
            flags |= _HAS_HI
            self._hi[i] = record.hi
        if record.seq is not None:
            flags |= _HAS_SEQ
            self._seq[i] = record.seq
        self._kind[i] = _KIND_CODE[record.kind]
        self._flags[i] = flags

    def put_hole(self, pgno: int) -> None:
        """Page `pgno` has no record."""
        self._grow(pgno)
        if not self._flags[pgno - 1]:
            self._count += 1
        self._flags[pgno - 1] = _KNOWN | _ABSENT

    def rename(self, renamed: Iterable[tuple[str, str]]) -> None:
        """Renames take effect together (a swap of two names is two renames)."""
        moved = [
            (self._owner_ids.pop(old), new)
            for old, new in renamed
            if old != new and old in self._owner_ids
        ]
        for owner_id, new in moved:
            taken = self._owner_ids.get(new)
            if taken is not None:  # entries of a dropped object of that name join it
                self._owner = array("i", (owner_id if o == taken else o for o in self._owner))
            self._owners[owner_id] = new
            self._owner_ids[new] = owner_id

    def forget_from(self, pgno: int) -> None:
        """Entries of pages `pgno` and above become unknown."""
        keep = max(0, pgno - 1)
        if keep >= len(self._flags):
            return
        dropped = self._flags[keep:]
        self._count -= len(dropped) - dropped.count(0)
        for column in (self._flags, self._kind, self._owner, self._lo, self._hi, self._seq):
            del column[keep:]

    def _grow(self, pgno: int) -> None:
        """Make room for entries up to `pgno` (new entries unknown)."""
        more = pgno - len(self._flags)
        if more > 0:
            self._flags.extend(bytes(more))
            self._kind.extend(bytes(more))
            self._owner.extend(array("i", bytes(4 * more)))
            self._lo.extend(array("q", bytes(8 * more)))
            self._hi.extend(array("q", bytes(8 * more)))
            self._seq.extend(array("i", bytes(4 * more)))

    def _flags_of(self, pgno: int) -> int:
        return self._flags[pgno - 1] if 0 < pgno <= len(self._flags) else 0

    def _owner_id(self, owner: str) -> int:
        found = self._owner_ids.get(owner)
        if found is None:
            found = self._owner_ids[owner] = len(self._owners)
            self._owners.append(owner)
        return found


class RecordView(Mapping[int, "PageRecord | None"]):
    """Page records of the page numbers asked for, in the order asked (`PageMap.records`);
    None for a hole. Raw records fetched without a sink keep their bytes here."""

    def __init__(self, entries: PageEntries, asked: array, held: dict[int, PageRecord]) -> None:
        self._entries = entries
        self._asked = asked
        self._held = held

    def __getitem__(self, pgno: int) -> PageRecord | None:
        held = self._held.get(pgno)
        return held if held is not None else self._entries.get(pgno)

    def __iter__(self) -> Iterator[int]:
        return iter(self._asked)

    def __len__(self) -> int:
        return len(self._asked)


class PageMap:
    """pgno -> PageRecord (without bytes), or None for a page number the store has no
    record of (a hole: it renders as zeros). With a raw sink, a raw page's bytes go
    to the sink (the page cache) as they arrive and records come back without them."""

    def __init__(self, fetch: Fetch, on_raw: RawSink | None = None) -> None:
        self._fetch = fetch
        self._on_raw = on_raw
        self.fetched = 0
        self.entries = PageEntries()

    def records(self, pgnos: Iterable[int]) -> RecordView:
        """The entries of `pgnos`, fetched first where unknown. A view over the arrays:
        records are built as they are read, so the records of a commit of every page
        are never all held at once."""
        entries = self.entries
        asked = array("I", pgnos)
        missing = [pgno for pgno in asked if not entries.known(pgno)]
        held: dict[int, PageRecord] = {}
        for start in range(0, len(missing), FETCH_CHUNK):
            chunk = missing[start : start + FETCH_CHUNK]
            found = self._fetch(chunk)
            self.fetched += len(chunk)
            for pgno in chunk:
                record = found.get(pgno)
                if record is None:
                    entries.put_hole(pgno)
                    continue
                entries.put(record)
                if record.data:
                    if self._on_raw is not None:
                        self._on_raw(pgno, bytes(record.data))  # not held twice
                    else:
                        held[pgno] = record
        return RecordView(entries, asked, held)

    def record(self, pgno: int) -> PageRecord | None:
        return self.records((pgno,))[pgno]

    def known(self, pgno: int) -> bool:
        return self.entries.known(pgno)

    def __len__(self) -> int:
        return len(self.entries)

    def apply(
        self,
        records: Iterable[PageRecord],
        renamed: Iterable[tuple[str, str]] = (),
        removed_from: int | None = None,
    ) -> None:
        """Move forward by one written commit: its renames, then its records, then its
        truncation (the order the store applies them)."""
        self.entries.rename(renamed)
        for record in records:
            self.entries.put(record)
        if removed_from is not None:
            self.entries.forget_from(removed_from)

    def forget_beyond(self, page_count: int) -> None:
        self.entries.forget_from(page_count + 1)

    def clear(self) -> None:
        self.entries.clear()
