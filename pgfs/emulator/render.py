"""Render page images from the store (README "Rendering").

Each page number has an entry in the page map. Raw pages (interior pages,
indexes, `sqlite_schema`, freelist trunks, pointer maps, ...) are stored as
bytes. Table leaves and overflow pages of tables whose rows the store keeps
carry no bytes: a leaf is built from the owner's rows with rowid in [lo, hi],
an overflow page from the record of the row it belongs to. Free leaves,
unknown page numbers and the lock-byte page render as zeros.

`Renderer.render` works in batches: one page-map fetch for the entries it
does not know, one row query per owner for all its leaves in the batch, one
payload and chain query per owner for its overflow pages. An overflow chain
is rendered whole the first time any page of it is asked for, so reading a
long chain costs time linear in its length (each page is one slice of the
payload), never a payload per page.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pgfs.emulator.pagecache import PageCache
from pgfs.emulator.pagemap import PageMap
from pgfs.sqlite.btree import PageType, encode_table_leaf, local_payload_size
from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.header import HEADER_SIZE, lock_byte_page
from pgfs.sqlite.overflow import encode_overflow_page
from pgfs.store.changeset import PageKind, PageRecord
from pgfs.store.interface import LeafRow, Store, StoreState

log = logging.getLogger("pgfs.emulator")

MAX_RANGES_PER_QUERY = 512


@dataclass(frozen=True)
class Geometry:
    """Page size, usable size, page count and header of the state being rendered."""

    page_size: int
    usable_size: int
    page_count: int
    header: bytes | None

    @classmethod
    def of(cls, state: StoreState) -> Geometry:
        header = state.header
        reserved = header[20] if header is not None and len(header) >= HEADER_SIZE else 0
        return cls(state.page_size, state.page_size - reserved, state.page_count, header)

    @property
    def lock_byte_page(self) -> int:
        return lock_byte_page(self.page_size)


class Renderer:
    """Images of pages of the store's current state, through the page cache."""

    def __init__(self, store: Store, pagemap: PageMap, cache: PageCache, state: StoreState):
        self.store = store
        self.pagemap = pagemap
        self.cache = cache
        self.geometry = Geometry.of(state)
        self.tables = state.tables
        self.pages_rendered = 0
        self.batches = 0
        self.payload_bytes = 0
        """Bytes of row payloads fetched to render overflow pages (linear in what is read)."""
        self._slot: tuple[str, int, bytes, list[int]] | None = None
        """The last long row rendered (owner, rowid, payload, chain): its other pages
        are asked for next, and must not cost the payload again."""

    def set_state(self, state: StoreState) -> None:
        self.geometry = Geometry.of(state)
        self.tables = state.tables
        self._slot = None

    def render(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        """Images of `pgnos` (1 <= pgno <= page_count), from the cache or rendered."""
        g = self.geometry
        out: dict[int, bytes] = {}
        missing: list[int] = []
        for pgno in pgnos:
            if not 1 <= pgno <= g.page_count:
                raise CorruptPageError(pgno, f"page number out of range 1..{g.page_count}")
            image = self.cache.get(pgno)
            if image is not None:
                out[pgno] = image
            elif pgno == g.lock_byte_page:
                out[pgno] = bytes(g.page_size)
            else:
                missing.append(pgno)
        if missing:
            made = self._render_missing(missing)
            self.pages_rendered += len(made)
            self.batches += 1
            for pgno in missing:
                out[pgno] = made[pgno]
        return out

    def _render_missing(self, missing: list[int]) -> dict[int, bytes]:
        g = self.geometry
        records = self.pagemap.records(missing)
        made: dict[int, bytes] = {}
        leaves: dict[str, list[PageRecord]] = defaultdict(list)
        overflow: dict[str, list[PageRecord]] = defaultdict(list)
        raw: list[int] = []
        for pgno in missing:
            record = records[pgno]
            if record is None:
                made[pgno] = bytes(g.page_size)
            elif record.data:
                made[pgno] = self.raw_image(pgno, record.data)
            elif record.data is not None:  # raw: its bytes went to the cache, or read again
                cached = self.cache.get(pgno)
                if cached is not None:
                    made[pgno] = cached
                else:
                    raw.append(pgno)
            elif record.kind == PageKind.TABLE_LEAF and record.owner in self.tables:
                leaves[record.owner].append(record)
            elif record.kind == PageKind.OVERFLOW and record.owner in self.tables:
                overflow[record.owner].append(record)
            else:
                if record.kind != PageKind.FREE:
                    log.warning(
                        "page %d: %s page with no bytes renders as zeros", pgno, record.kind
                    )
                made[pgno] = bytes(g.page_size)
        if raw:
            stored = self.store.page_records(raw)
            for pgno in raw:
                record = stored.get(pgno)
                if record is None or record.data is None:
                    log.warning("page %d: no bytes stored for a raw page: zeros", pgno)
                    made[pgno] = bytes(g.page_size)
                else:
                    made[pgno] = self.raw_image(pgno, record.data)
        if leaves:
            self._render_leaves(leaves, made)
        for owner, recs in overflow.items():
            self._render_overflow(owner, recs, made)
        for pgno, image in made.items():
            self.cache.put(pgno, image)
        return made

    def raw_image(self, pgno: int, data: bytes) -> bytes:
        """The image of a raw page from its stored bytes (page 1 with the current header)."""
        g = self.geometry
        if len(data) != g.page_size:
            raise CorruptPageError(pgno, f"stored page has {len(data)} bytes, not {g.page_size}")
        if pgno == 1 and g.header is not None:
            return bytes(g.header) + bytes(data[HEADER_SIZE:])
        return bytes(data)

    # ------------------------------------------------------------------ table leaves

    def _render_leaves(self, leaves: dict[str, list[PageRecord]], out: dict[int, bytes]) -> None:
        """Table leaves of any number of tables: the rows of up to MAX_RANGES_PER_QUERY
        leaves per table in one `leaf_rows_of` call (one round trip)."""
        pending: dict[str, list[PageRecord]] = {}
        for owner, recs in leaves.items():
            for rec in recs:
                if rec.lo is None:
                    out[rec.pgno] = self._encode_leaf(rec.pgno, [], owner)
            pending[owner] = sorted((r for r in recs if r.lo is not None), key=lambda r: r.lo or 0)
        while any(pending.values()):
            chunks = {o: recs[:MAX_RANGES_PER_QUERY] for o, recs in pending.items() if recs}
            pending = {o: recs[MAX_RANGES_PER_QUERY:] for o, recs in pending.items()}
            found = self.store.leaf_rows_of(
                {o: _merge_ranges([_leaf_range(r) for r in chunk]) for o, chunk in chunks.items()}
            )
            for owner, chunk in chunks.items():
                self._split_rows(owner, chunk, found[owner], out)

    def _split_rows(
        self, owner: str, chunk: list[PageRecord], rows: list[LeafRow], out: dict[int, bytes]
    ) -> None:
        """Deal rows (rowid order) out to the leaves of `chunk` (sorted by range)."""
        position = 0
        for rec in chunk:
            lo, hi = _leaf_range(rec)
            while position < len(rows) and rows[position].rowid < lo:
                position += 1
            first = position
            while position < len(rows) and rows[position].rowid <= hi:
                position += 1
            out[rec.pgno] = self._encode_leaf(rec.pgno, rows[first:position], owner)

    def _encode_leaf(self, pgno: int, rows: list[LeafRow], owner: str) -> bytes:
        g = self.geometry
        prefix = bytes(g.header or b"") if pgno == 1 else b""
        try:
            return encode_table_leaf(rows, g.page_size, g.usable_size, prefix)
        except ValueError as exc:  # the chain table disagrees with a payload, or no fit
            raise CorruptPageError(pgno, f"the rows of {owner} do not fit the page: {exc}") from exc

    # ------------------------------------------------------------------ overflow pages

    def _render_overflow(self, owner: str, recs: list[PageRecord], out: dict[int, bytes]) -> None:
        """Render the chains the overflow pages in `recs` belong to.

        Pages of a chain that were not asked for go straight to the cache: the
        whole chain when the cache has a disk behind it, else the pages from the
        one asked for on, up to a quarter of the memory cache.
        """
        wanted = {r.pgno for r in recs}
        rows = self._chain_rows(owner, sorted({r.lo for r in recs if r.lo is not None}))
        for rec in recs:
            if rec.pgno in out:
                continue
            row = rows.get(rec.lo) if rec.lo is not None else None
            if row is None:
                log.warning("page %d: overflow page of a missing row of %s", rec.pgno, owner)
                out[rec.pgno] = bytes(self.geometry.page_size)
                continue
            payload, chain = row
            first = (
                0
                if self.cache.disk is not None
                else chain.index(rec.pgno)
                if rec.pgno in chain
                else 0
            )
            limit = len(chain) if self.cache.disk is not None else first + self._window()
            for pgno, image in chain_pages(
                self.geometry, owner, rec.lo or 0, payload, chain, first, limit
            ):
                if pgno in wanted:
                    out[pgno] = image
                elif pgno not in out:
                    self.cache.put(pgno, image)
                    self.pages_rendered += 1
            if rec.pgno not in out:
                raise CorruptPageError(
                    rec.pgno,
                    f"overflow page {rec.seq} of row {rec.lo} of {owner} is not in its chain",
                )

    def _window(self) -> int:
        return max(16, self.cache.memory_bytes // 4 // self.geometry.page_size)

    def _chain_rows(self, owner: str, rowids: list[int]) -> dict[int, tuple[bytes, list[int]]]:
        found: dict[int, tuple[bytes, list[int]]] = {}
        slot = self._slot
        if slot is not None and slot[0] == owner and slot[1] in rowids:
            found[slot[1]] = (slot[2], slot[3])
        need = [r for r in rowids if r not in found]
        payloads = self.store.row_payloads(owner, need) if need else {}
        chains = self.store.overflow_chains(owner, need) if need else {}
        self.payload_bytes += sum(len(p) for p in payloads.values())
        for rowid in need:
            if rowid in payloads and rowid in chains:
                found[rowid] = (payloads[rowid], chains[rowid])
        if found:
            longest = max(found, key=lambda r: len(found[r][1]))
            if len(found[longest][1]) > 1:
                self._slot = (owner, longest, *found[longest])
        return found


def chain_pages(
    geometry: Geometry,
    owner: str,
    rowid: int,
    payload: bytes,
    chain: list[int],
    first: int = 0,
    limit: int | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Overflow pages `first` up to `limit` of one row (fileformat2 §1.6), each one slice of
    the payload: linear in the pages made."""
    step = geometry.usable_size - 4
    n_local = local_payload_size(len(payload), geometry.usable_size, PageType.TABLE_LEAF)
    expected = -(-(len(payload) - n_local) // step)
    if expected != len(chain):
        raise CorruptPageError(
            chain[0] if chain else None,
            f"row {rowid} of {owner}: its chain has {len(chain)} pages, the payload needs "
            f"{expected}",
        )
    view = memoryview(payload)
    stop = len(chain) if limit is None else min(limit, len(chain))
    for seq in range(first, stop):
        start = n_local + seq * step
        following = chain[seq + 1] if seq + 1 < len(chain) else 0
        yield (
            chain[seq],
            encode_overflow_page(following, view[start : start + step], geometry.page_size),
        )


def _leaf_range(rec: PageRecord) -> tuple[int, int]:
    lo = rec.lo or 0
    return lo, rec.hi if rec.hi is not None else lo


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with touching or overlapping ones joined (one index range scan each)."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged
