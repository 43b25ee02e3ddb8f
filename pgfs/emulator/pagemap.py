"""The page map of the current state, kept in the mount's memory.

The store's `pages` table says what every page number is. The mount is the
store's only writer (it holds the lease), so an entry it has read stays true
until one of its own commits changes it: entries are fetched once, in
batches, and moved forward by `apply` after each commit. Raw page bytes are
not kept here (they go to the page cache); an entry is a few dozen bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pgfs.store.changeset import Changeset, PageRecord

Fetch = Callable[[list[int]], dict[int, PageRecord]]
"""Reads page records from the store (raw ones with their bytes)."""
RawSink = Callable[[int, bytes], None]
"""Takes the bytes of a raw page that came with its record."""

_ABSENT = object()
FETCH_CHUNK = 1024
"""Most records fetched at once: raw records carry their page's bytes, so a commit
that changes every page (a VACUUM) must not hold them all at the same time."""


class PageMap:
    """pgno -> PageRecord (without bytes), or None for a page number the store has no
    record of (a hole: it renders as zeros). With a raw sink, a raw page's bytes go
    to the sink (the page cache) as they arrive and records come back without them."""

    def __init__(self, fetch: Fetch, on_raw: RawSink | None = None) -> None:
        self._fetch = fetch
        self._on_raw = on_raw
        self._known: dict[int, PageRecord | object] = {}
        self.fetched = 0

    def records(self, pgnos: Iterable[int]) -> dict[int, PageRecord | None]:
        out: dict[int, PageRecord | None] = {}
        missing: list[int] = []
        for pgno in pgnos:
            known = self._known.get(pgno)
            if known is None:
                missing.append(pgno)
            else:
                out[pgno] = None if known is _ABSENT else known  # type: ignore[assignment]
        for start in range(0, len(missing), FETCH_CHUNK):
            chunk = missing[start : start + FETCH_CHUNK]
            found = self._fetch(chunk)
            self.fetched += len(chunk)
            for pgno in chunk:
                record = found.get(pgno)
                if record is None:
                    self._known[pgno] = _ABSENT
                    out[pgno] = None
                    continue
                slim = record.without_data()
                self._known[pgno] = slim
                if record.data and self._on_raw is not None:
                    self._on_raw(pgno, bytes(record.data))
                    out[pgno] = slim  # the bytes went to the sink: not held twice
                else:
                    out[pgno] = record
        return out

    def record(self, pgno: int) -> PageRecord | None:
        return self.records((pgno,))[pgno]

    def known(self, pgno: int) -> bool:
        return pgno in self._known

    def apply(self, part: Changeset) -> None:
        """Move forward by one written part (its renames, records and truncation)."""
        for old, new in part.schema.renamed:
            if old == new:
                continue
            for pgno, record in list(self._known.items()):
                if isinstance(record, PageRecord) and record.owner == old:
                    self._known[pgno] = PageRecord(
                        record.pgno, record.kind, new, record.lo, record.hi, record.seq
                    )
        for record in part.pages:
            self._known[record.pgno] = record.without_data()
        if part.removed_pages_from is not None:
            for pgno in [p for p in self._known if p >= part.removed_pages_from]:
                del self._known[pgno]

    def forget_beyond(self, page_count: int) -> None:
        for pgno in [p for p in self._known if p > page_count]:
            del self._known[pgno]

    def clear(self) -> None:
        self._known.clear()

    def __len__(self) -> int:
        return len(self._known)
