"""Render page images from the store (README "Rendering").

Each page number has a record in `pgfs.pages`. Raw pages (interior pages,
indexes, `sqlite_schema`, freelist trunks, pointer maps, ...) are stored as
bytes. Table leaves and overflow pages of tables with a data-schema table
carry no bytes: a leaf is built from the owner's rows with rowid in [lo, hi],
an overflow page from the record of the row it belongs to. Free leaves,
unknown page numbers and the lock-byte page render as zeros.

The renderer batches: `render_many` issues one `page_records` query, one
`leaf_cells` range query per run of leaves that sit next to each other in
rowid order, and one `row_payloads` + `overflow_chains` per owner for
overflow pages. Rendered pages and row payloads sit in bounded LRU caches.
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from pgfs.emulator.source import lock_byte_page
from pgfs.sqlite.btree import BTreePage, PageType, encode_btree_page, make_table_leaf_cell
from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.header import HEADER_SIZE
from pgfs.sqlite.overflow import encode_overflow_page, split_payload

if TYPE_CHECKING:
    from pgfs.store.changeset import PageRecord
    from pgfs.store.store import Store, StoreState

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PAGE_CACHE_BYTES = 64 * 1024 * 1024
PAYLOAD_CACHE_BYTES = 32 * 1024 * 1024
# Leaves of one owner are fetched with one range query when the rowid gap between
# them is small compared with what the run already covers (rows in the gap belong
# to leaves not asked for and are fetched for nothing).
MIN_MERGE_GAP = 512
MAX_LEAVES_PER_QUERY = 256


class ByteLRU(Generic[K, V]):
    """An LRU mapping bounded by the total size of its values (as `size(value)`)."""

    def __init__(self, max_bytes: int, size=len) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self.bytes = 0

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        size = self._size(value)
        if size > self.max_bytes:
            self.discard(key)
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= self._size(old)
        self._items[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= self._size(evicted)

    def discard(self, key: K) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= self._size(old)

    def __iter__(self):
        return iter(list(self._items))

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


def _payload_size(item: tuple[bytes, list[int] | None]) -> int:
    return len(item[0]) + 64


class PageRenderer:
    """Page images of the store's current state.

    `pages_rendered` counts pages produced from the store (cache misses),
    `cache_hits` pages served from the cache, and `batches` the `render_many`
    calls that went to the store; the tests use them to check that a commit
    costs O(changed pages), the metrics endpoint exports them.
    """

    def __init__(
        self,
        store: Store,
        state: StoreState,
        *,
        cache_bytes: int = PAGE_CACHE_BYTES,
        payload_cache_bytes: int = PAYLOAD_CACHE_BYTES,
    ) -> None:
        self.store = store
        self._pages: ByteLRU[int, bytes] = ByteLRU(cache_bytes)
        self._payloads: ByteLRU[tuple[str, int], tuple[bytes, list[int] | None]] = ByteLRU(
            payload_cache_bytes, _payload_size
        )
        self.pages_rendered = 0
        self.cache_hits = 0
        self.batches = 0
        self.set_state(state)

    # -- state -----------------------------------------------------------------------------

    def set_state(self, state: StoreState) -> None:
        """Switch to a new store state; cached row payloads are dropped, pages kept."""
        self.state = state
        self.page_size = state.page_size
        header = state.header
        reserved = header[20] if header is not None and len(header) >= HEADER_SIZE else 0
        self.usable_size = state.page_size - reserved
        self.page_count = state.page_count
        self._lock_byte = lock_byte_page(state.page_size) if state.page_size else 0
        self._payloads.clear()
        for pgno in list(self._pages):
            if pgno > self.page_count:
                self._pages.discard(pgno)

    def put(self, pgno: int, image: bytes) -> None:
        """Remember a valid image of `pgno` (e.g. the bytes a commit just wrote)."""
        self._pages.put(pgno, image)

    def forget(self, pgno: int) -> None:
        self._pages.discard(pgno)

    def clear(self) -> None:
        self._pages.clear()
        self._payloads.clear()

    # -- rendering -------------------------------------------------------------------------

    def cached(self, pgno: int) -> bytes | None:
        """The cached image of `pgno`, or None (renders nothing)."""
        image = self._pages.get(pgno)
        if image is not None:
            self.cache_hits += 1
        return image

    def render(self, pgno: int) -> bytes:
        return self.render_many((pgno,))[pgno]

    def render_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        missing: list[int] = []
        for pgno in pgnos:
            if not 1 <= pgno <= self.page_count:
                raise CorruptPageError(pgno, f"page number out of range 1..{self.page_count}")
            cached = self.cached(pgno)
            if cached is not None:
                out[pgno] = cached
            elif pgno == self._lock_byte:
                out[pgno] = bytes(self.page_size)
            else:
                missing.append(pgno)
        if not missing:
            return out
        records = self.store.page_records(missing)
        self.batches += 1
        leaves: dict[str, list[PageRecord]] = defaultdict(list)
        overflow: dict[str, list[PageRecord]] = defaultdict(list)
        made: dict[int, bytes] = {}
        for pgno in missing:
            record = records.get(pgno)
            if record is None:
                made[pgno] = bytes(self.page_size)
            elif record.data is not None:
                made[pgno] = self._raw(pgno, record.data)
            elif record.kind == "table_leaf":
                leaves[record.owner or ""].append(record)
            elif record.kind == "overflow":
                overflow[record.owner or ""].append(record)
            else:
                if record.kind != "free":
                    log.warning("page %d: %s page without data renders as zeros", pgno, record.kind)
                made[pgno] = bytes(self.page_size)
        for owner, recs in leaves.items():
            self._render_leaves(owner, recs, made)
        for owner, recs in overflow.items():
            self._render_overflow(owner, recs, made)
        self.pages_rendered += len(made)
        for pgno, image in made.items():
            self._pages.put(pgno, image)
        out.update(made)
        return out

    def _raw(self, pgno: int, data: bytes) -> bytes:
        if len(data) != self.page_size:
            raise CorruptPageError(pgno, f"stored page has {len(data)} bytes, not {self.page_size}")
        if pgno == 1 and self.state.header is not None:
            return bytes(self.state.header) + bytes(data[HEADER_SIZE:])
        return bytes(data)

    def _render_leaves(self, owner: str, recs: list[PageRecord], out: dict[int, bytes]) -> None:
        ranged = sorted((r for r in recs if r.lo is not None), key=lambda r: r.lo)
        for rec in recs:
            if rec.lo is None:
                out[rec.pgno] = self._encode_leaf(rec.pgno, [])
        for run in _runs(ranged):
            cells = self.store.leaf_cells(owner, run[0].lo, max(r.hi for r in run))
            rowids = [c[0] for c in cells]
            for rec in run:
                start = bisect.bisect_left(rowids, rec.lo)
                end = bisect.bisect_right(rowids, rec.hi)
                out[rec.pgno] = self._encode_leaf(rec.pgno, cells[start:end], owner)

    def _encode_leaf(
        self, pgno: int, cells: list[tuple[int, bytes, int | None]], owner: str = ""
    ) -> bytes:
        built = []
        for rowid, payload, first_overflow in cells:
            try:
                cell = make_table_leaf_cell(rowid, payload, self.usable_size, first_overflow)
            except ValueError as exc:  # the chain table disagrees with the payload size
                raise CorruptPageError(pgno, f"row {rowid} of {owner}: {exc}") from exc
            if first_overflow:
                self._payloads.put((owner, rowid), (payload, None))
            built.append(cell)
        page = BTreePage(pgno, PageType.TABLE_LEAF, built, None, 0, 0, 0)
        prefix = bytes(self.state.header or b"") if pgno == 1 else b""
        try:
            return encode_btree_page(page, self.page_size, self.usable_size, prefix)
        except ValueError as exc:
            raise CorruptPageError(pgno, f"the rows of {owner} do not fit the page: {exc}") from exc

    def _render_overflow(self, owner: str, recs: list[PageRecord], out: dict[int, bytes]) -> None:
        rowids = {r.lo for r in recs if r.lo is not None}
        known: dict[int, tuple[bytes, list[int] | None]] = {}
        for rowid in rowids:
            item = self._payloads.get((owner, rowid))
            if item is not None:
                known[rowid] = item
        need_payload = [r for r in rowids if r not in known]
        need_chain = [r for r in rowids if r not in known or known[r][1] is None]
        payloads = self.store.row_payloads(owner, need_payload) if need_payload else {}
        chains = self.store.overflow_chains(owner, need_chain) if need_chain else {}
        for rowid in rowids:
            payload = payloads.get(rowid) if rowid not in known else known[rowid][0]
            chain = chains.get(rowid) if rowid in chains else known.get(rowid, (b"", None))[1]
            if payload is not None and chain is not None:
                known[rowid] = (payload, chain)
                self._payloads.put((owner, rowid), (payload, chain))
        for rec in recs:
            item = known.get(rec.lo) if rec.lo is not None else None
            if item is None or item[1] is None:
                log.warning("page %d: overflow page of a missing row of %s", rec.pgno, owner)
                out[rec.pgno] = bytes(self.page_size)
                continue
            out[rec.pgno] = self._encode_overflow(rec, owner, *item)

    def _encode_overflow(self, rec: PageRecord, owner: str, payload: bytes, chain) -> bytes:
        _, chunks = split_payload(payload, self.usable_size, PageType.TABLE_LEAF)
        seq = rec.seq if rec.seq is not None else -1
        if len(chunks) != len(chain) or not 0 <= seq < len(chain) or chain[seq] != rec.pgno:
            raise CorruptPageError(
                rec.pgno,
                f"overflow page {seq} of row {rec.lo} of {owner} does not match its chain",
            )
        following = chain[seq + 1] if seq + 1 < len(chain) else 0
        return encode_overflow_page(following, chunks[seq], self.page_size)


def _runs(recs: list[PageRecord]) -> list[list[PageRecord]]:
    """Group leaves (sorted by lo) whose rowid ranges lie close together."""
    runs: list[list[PageRecord]] = []
    hi = 0
    for rec in recs:
        if runs:
            run = runs[-1]
            lo = run[0].lo
            if rec.lo - hi <= max(MIN_MERGE_GAP, hi - lo) and len(run) < MAX_LEAVES_PER_QUERY:
                run.append(rec)
                hi = max(hi, rec.hi)
                continue
        runs.append([rec])
        hi = rec.hi
    return runs
