"""The diff's per-page structures stay compact at a VACUUM's size: `RoleMap` switches
from a dict to arrays past `DENSE_AFTER` dense entries and keeps every answer;
`PageSet` is a set while few or scattered and one bit a page once many and dense.
Structural checks (mode, bytes held), not timings."""

from __future__ import annotations

import tracemalloc

import pytest

from pgfs.emulator.diff.roles import FREE_LEAF, UNKNOWN, Role, RoleMap
from pgfs.emulator.pageset import PageSet
from pgfs.store.changeset import PageKind

LEAF = Role(PageKind.TABLE_LEAF, "BaseItems")


def _role(pgno: int) -> Role:
    """A mix of the roles a commit gives: interned ones and overflow pages with rowids."""
    if pgno % 5 == 0:
        return Role(PageKind.OVERFLOW, "BaseItems", pgno * 11, pgno % 3)
    if pgno % 7 == 0:
        return Role(PageKind.OVERFLOW, "Chapters", None, 0, keep=False)
    if pgno % 11 == 0:
        return FREE_LEAF
    if pgno % 13 == 0:
        return UNKNOWN
    return LEAF


def test_role_map_answers_the_same_before_and_after_it_turns_compact() -> None:
    roles = RoleMap()
    expected: dict[int, Role] = {}
    for pgno in range(1, RoleMap.DENSE_AFTER + 1):
        roles[pgno] = expected[pgno] = _role(pgno)
    assert not roles.compact
    for pgno in range(RoleMap.DENSE_AFTER + 1, 3 * RoleMap.DENSE_AFTER):
        roles[pgno] = expected[pgno] = _role(pgno)
    assert roles.compact
    assert dict(roles) == expected
    assert list(roles) == sorted(expected)  # page order once compact
    assert 0 not in roles and 10**9 not in roles and "x" not in roles
    roles[10] = LEAF
    del roles[20]
    assert roles[10] == LEAF and 20 not in roles and len(roles) == len(expected) - 1


def test_role_map_of_sparse_page_numbers_stays_a_dict() -> None:
    roles = RoleMap({p * 1000: LEAF for p in range(1, RoleMap.DENSE_AFTER + 10)})
    assert not roles.compact and len(roles) == RoleMap.DENSE_AFTER + 9


def test_a_role_costs_about_sixteen_bytes_at_a_vacuums_size() -> None:
    count = 100_000
    roles = RoleMap()
    tracemalloc.start()
    try:
        for pgno in range(1, count + 1):
            roles[pgno] = _role(pgno)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert roles.compact
    assert held / count < 24, f"{held / count:.0f} bytes a page"


def as_set(pgnos: list[int]) -> PageSet:
    return PageSet(pgnos)


def as_bitmap(pgnos: list[int]) -> PageSet:
    return PageSet.from_bitmap(PageSet(pgnos).bitmap())


BOTH = pytest.mark.parametrize("make", [as_set, as_bitmap], ids=["set", "bitmap"])


@BOTH
def test_page_set_is_a_set_in_page_order(make) -> None:
    pages = make([9, 3, 3, 250_000, 0])
    assert list(pages) == [0, 3, 9, 250_000] and len(pages) == 4
    assert 3 in pages and 4 not in pages and -1 not in pages and 10**12 not in pages
    pages.discard(9)
    pages.discard(10)
    assert list(pages) == [0, 3, 250_000]
    assert set(pages | {5}) == {0, 3, 5, 250_000}
    pages.add(7)
    assert list(pages) == [0, 3, 7, 250_000] and len(pages) == 4


def test_page_set_keeps_few_or_scattered_pages_as_a_set_and_many_dense_as_bits() -> None:
    """A single-row commit near the end of a big file must not cost a bitmap up to
    its page (iterating one visits every byte); a VACUUM's pages are one bit each."""
    near_the_end = PageSet([1, 244_000])
    assert not near_the_end.is_bitmap and near_the_end.memory_bytes == 0
    scattered = PageSet(range(0, 244_000, 50))  # 4,880 pages over a 1 GB file
    assert not scattered.is_bitmap
    every = PageSet(range(1, 250_001))
    assert every.is_bitmap and every.memory_bytes <= 250_001 // 8 + 1
    assert list(every) == list(range(1, 250_001)) and len(every) == 250_000
    every.clear()
    assert every.is_bitmap and len(every) == 0 and list(every) == []


@BOTH
def test_page_set_drops_counts_and_finds_gaps_by_range(make) -> None:
    pages = make([*range(0, 20), 22, 40])
    assert pages.first_absent(0, 50) == 20 and pages.first_absent(21, 50) == 21
    assert pages.first_absent(0, 20) is None and pages.first_absent(41, 45) == 41
    assert pages.count_below(20) == 20 and pages.count_below(23) == 21
    pages.drop_from(11)  # inside a byte: bits 11.. of it go, and the count follows
    assert list(pages) == list(range(11)) and len(pages) == 11
    pages.drop_from(0)
    assert list(pages) == [] and len(pages) == 0


@BOTH
def test_page_set_bitmap_round_trips_with_its_count(make) -> None:
    pages = make([1, 8, 9, 1000])
    again = PageSet.from_bitmap(pages.bitmap())
    assert list(again) == [1, 8, 9, 1000] and len(again) == 4
    again.clear()
    assert len(again) == 0 and 8 not in again
