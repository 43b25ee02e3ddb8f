"""Buffers that spill to a local file, and the page index under them."""

from __future__ import annotations

import tracemalloc

import pytest

from pgfs.tracker.buffers import BlockStore, PageIndex


def block(tag: int) -> bytes:
    return bytes([tag]) * 16


def test_a_discarded_block_never_gives_its_slot_to_another() -> None:
    store = BlockStore(16, spill_bytes=16)  # one block in memory, the rest spilled
    for index in range(4):
        store.put(index, block(index))
    store.discard(1)
    store.put(7, block(7))
    assert [store.get(i) for i in (0, 1, 2, 3, 7)] == [
        block(0),
        None,
        block(2),
        block(3),
        block(7),
    ]
    store.clear()
    store.put(5, block(5))
    assert store.get(5) == block(5) and len(store) == 1


def test_page_index_is_a_mapping_in_key_order() -> None:
    index = PageIndex()
    for key, value in ((5, 50), (0, 0), (3, 30), (5, 51)):
        index[key] = value
    assert list(index.items()) == [(0, 0), (3, 30), (5, 51)] and len(index) == 3
    assert 4 not in index and index.get(4) is None
    del index[3]
    assert list(index) == [0, 5]
    with pytest.raises(KeyError):
        del index[3]
    with pytest.raises(ValueError):
        index[1] = -1
    for key in range(2 * PageIndex.DENSE_AFTER):  # dense now: the same answers
        index[key] = key + 1
    assert len(index) == 2 * PageIndex.DENSE_AFTER and index[5] == 6 and 4 in index
    del index[4]
    assert 4 not in index and list(index)[:4] == [0, 1, 2, 3] and index[5] == 6
    index.clear()
    assert len(index) == 0 and list(index) == []


def test_a_few_keys_cost_nothing_per_page_below_them() -> None:
    index = PageIndex()
    tracemalloc.start()
    try:
        index[1_000_000] = 3
        index[2_000_000] = 4
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert held < 10_000 and list(index) == [1_000_000, 2_000_000]


def test_a_far_key_does_not_allocate_the_gap() -> None:
    index = PageIndex()
    for key in range(PageIndex.DENSE_AFTER + 1):
        index[key] = key
    tracemalloc.start()
    try:
        index[10**12] = 7
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert held < 100_000
    assert index[10**12] == 7 and list(index)[-2:] == [PageIndex.DENSE_AFTER, 10**12]


def test_an_entry_costs_about_eight_bytes() -> None:
    index = PageIndex()
    tracemalloc.start()
    try:
        for key in range(100_000):
            index[key] = key * 3
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held / 100_000 < 12
