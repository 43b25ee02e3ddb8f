"""The page map: entries fetched once in batches, moved forward by each commit, held
compactly (no store needed: the fetch function is the store's `page_records`)."""

from __future__ import annotations

import tracemalloc

from pgfs.emulator.pagemap import FETCH_CHUNK, PageEntries, PageMap
from pgfs.store.changeset import PageKind, PageRecord

STORE = {
    1: PageRecord(1, PageKind.TABLE_LEAF, "sqlite_schema", None, None, None, b"\x0d" * 8),
    2: PageRecord(2, PageKind.TABLE_LEAF, "t", -(2**63), 2**63 - 1),
    3: PageRecord(3, PageKind.OVERFLOW, "t", 7, None, 0),
    4: PageRecord(4, PageKind.INDEX_LEAF, "i", None, None, None, b"\x0a" * 8),
    5: PageRecord(5, PageKind.FREE, None),
    7: PageRecord(7, PageKind.TABLE_LEAF, "u", None, None),  # an empty leaf
}


class CountingStore:
    def __init__(self, pages: dict[int, PageRecord]) -> None:
        self.pages = pages
        self.calls: list[list[int]] = []

    def fetch(self, pgnos: list[int]) -> dict[int, PageRecord]:
        self.calls.append(list(pgnos))
        return {p: self.pages[p] for p in pgnos if p in self.pages}


def test_records_come_back_as_stored_and_are_fetched_once() -> None:
    store = CountingStore(STORE)
    raw: dict[int, bytes] = {}
    pagemap = PageMap(store.fetch, on_raw=raw.__setitem__)
    got = pagemap.records(range(1, 9))
    assert got[6] is None and got[8] is None  # holes
    for pgno, record in STORE.items():
        assert got[pgno] == record.without_data()
    assert raw == {1: b"\x0d" * 8, 4: b"\x0a" * 8}
    assert pagemap.records(range(1, 9)) == got
    assert store.calls == [list(range(1, 9))] and len(pagemap) == 8 and pagemap.fetched == 8


def test_without_a_sink_raw_records_keep_their_bytes_once() -> None:
    pagemap = PageMap(CountingStore(STORE).fetch)
    assert pagemap.record(4) == STORE[4]
    assert pagemap.record(4) == STORE[4].without_data()


def test_fetches_in_chunks() -> None:
    pages = {p: PageRecord(p, PageKind.FREE, None) for p in range(1, 2 * FETCH_CHUNK + 2)}
    store = CountingStore(pages)
    pagemap = PageMap(store.fetch)
    assert len(pagemap.records(pages)) == len(pages)
    assert [len(c) for c in store.calls] == [FETCH_CHUNK, FETCH_CHUNK, 1]


def test_apply_moves_entries_forward_and_truncates() -> None:
    store = CountingStore(STORE)
    pagemap = PageMap(store.fetch)
    pagemap.records(range(1, 8))
    new3 = PageRecord(3, PageKind.TABLE_LEAF, "t", 1, 5)
    pagemap.apply([new3, PageRecord(9, PageKind.PTRMAP, None, data=b"x")], removed_from=6)
    assert pagemap.record(3) == new3
    assert not pagemap.known(6) and not pagemap.known(7) and not pagemap.known(9)
    assert len(pagemap) == 5
    pagemap.forget_beyond(2)
    assert [pagemap.known(p) for p in (1, 2, 3)] == [True, True, False]
    assert len(pagemap) == 2


def test_renames_take_effect_together() -> None:
    pagemap = PageMap(CountingStore(STORE).fetch)
    pagemap.records(range(1, 8))
    pagemap.apply([], renamed=[("t", "u"), ("u", "t")])  # a swap
    assert pagemap.record(2).owner == "u" and pagemap.record(7).owner == "t"
    pagemap.apply([], renamed=[("i", "t")])  # onto a name still held: joined
    assert {pagemap.record(p).owner for p in (4, 7)} == {"t"}
    pagemap.apply([], renamed=[("t", "v")])
    assert {pagemap.record(p).owner for p in (4, 7)} == {"v"}
    assert pagemap.record(2).owner == "u"


def test_an_entry_costs_tens_of_bytes() -> None:
    pages = {
        p: PageRecord(p, PageKind.TABLE_LEAF, "BaseItems", p * 7, p * 7 + 6)
        for p in range(1, 20_001)
    }
    pagemap = PageMap(lambda pgnos: {p: pages[p] for p in pgnos})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pagemap.records(range(1, 20_001))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / len(pages) < 40, f"{held / len(pages):.0f} bytes a page"


def test_entries_give_back_what_was_put() -> None:
    entries = PageEntries()
    for record in STORE.values():
        entries.put(record)
    entries.put_hole(6)
    assert list(entries.pgnos()) == [1, 2, 3, 4, 5, 6, 7]
    assert list(entries.records()) == [r.without_data() for r in STORE.values()]
    assert entries.get(6) is None and len(entries) == 7
    entries.forget_from(3)
    assert list(entries.pgnos()) == [1, 2] and len(entries) == 2


def test_a_commit_carries_its_records_to_the_map_at_any_size() -> None:
    """Few records, or many scattered over a big file, stay a dict (nothing per database
    page); many dense ones move to arrays (nothing per record object for a VACUUM).
    The map ends the same."""
    from pgfs.emulator.database import _Forward
    from pgfs.store.changeset import Changeset, CommitSource

    many = _Forward.DENSE_AFTER + 10
    for first, count, step, compact in (
        (10**5, 3, 1, False),
        (1, many, 1, True),
        (1, many, 8, False),
    ):
        pages = [PageRecord(first + p * step, PageKind.FREE, None) for p in range(count)]
        forward = _Forward()
        for _ in forward.watch(iter([Changeset(CommitSource.WAL, b"", 0, pages=pages)])):
            pass
        assert isinstance(forward.records, dict) != compact
        assert list(forward.pgnos()) == [r.pgno for r in pages]
        pagemap = PageMap(lambda pgnos: {})
        forward.apply_to(pagemap)
        assert len(pagemap) == count and pagemap.record(first) == pages[0]
