"""The page cache alone (no server): a bounded memory LRU over a local file that is
trusted again only when it was closed cleanly at exactly the state now served."""

from __future__ import annotations

from pathlib import Path

from pgfs.emulator.pagecache import CacheStamp, DiskPages, PageCache

STAMP = CacheStamp("store-a", 7, 512)


def _page(byte: int) -> bytes:
    return bytes([byte]) * 512


def _filled(folder: Path) -> DiskPages:
    disk = DiskPages.open(folder, STAMP)
    for pgno in (1, 2, 9):
        disk.put(pgno, _page(pgno))
    return disk


def test_a_cleanly_closed_cache_is_kept_for_the_same_state(tmp_path: Path) -> None:
    _filled(tmp_path).close(STAMP)
    disk = DiskPages.open(tmp_path, STAMP)
    assert [disk.get(p) for p in (1, 2, 3, 9)] == [_page(1), _page(2), None, _page(9)]


def test_a_cache_of_another_state_starts_empty(tmp_path: Path) -> None:
    for other in (
        CacheStamp("store-a", 8, 512),  # the store moved on
        CacheStamp("store-b", 7, 512),  # another store
        CacheStamp("store-a", 7, 1024),  # another page size
    ):
        _filled(tmp_path).close(STAMP)
        disk = DiskPages.open(tmp_path, other)
        assert [disk.get(p) for p in (1, 2, 9)] == [None, None, None]
        disk.close(None)


def test_a_cache_left_open_by_a_crash_is_not_trusted(tmp_path: Path) -> None:
    _filled(tmp_path)  # never closed: the stamp on disk still says dirty
    assert DiskPages.open(tmp_path, STAMP).get(1) is None


def test_truncate_and_discard_forget_pages(tmp_path: Path) -> None:
    disk = _filled(tmp_path)
    disk.discard(2)
    disk.truncate(8)
    assert [disk.get(p) for p in (1, 2, 9)] == [_page(1), None, None]
    disk.close(STAMP)
    assert DiskPages.open(tmp_path, STAMP).get(1) == _page(1)


def test_memory_stays_bounded_and_the_disk_keeps_the_rest(tmp_path: Path) -> None:
    cache = PageCache(memory_bytes=4 * 512, disk=DiskPages.open(tmp_path, STAMP))
    for pgno in range(1, 101):
        cache.put(pgno, _page(pgno % 256))
    assert cache.memory_used <= 4 * 512
    assert all(cache.get(p) == _page(p % 256) for p in range(1, 101))
    assert cache.memory_used <= 4 * 512


def test_without_a_disk_the_least_recently_used_pages_go(tmp_path: Path) -> None:
    cache = PageCache(memory_bytes=3 * 512)
    for pgno in (1, 2, 3):
        cache.put(pgno, _page(pgno))
    assert cache.get(1) == _page(1)  # now the most recent
    cache.put(4, _page(4))
    assert [p for p in (1, 2, 3, 4) if p in cache] == [1, 3, 4]


def test_first_missing_and_count_follow_the_slots_held(tmp_path: Path) -> None:
    disk = DiskPages.open(tmp_path, STAMP)
    assert (disk.first_missing(1, 0), disk.count(0)) == (None, 0)
    assert disk.first_missing(1, 30) == 1
    for pgno in [*range(1, 18), 20]:
        disk.put(pgno, _page(pgno))
    assert disk.count(30) == 18
    assert disk.count(16) == 16  # only pages 1..16 counted
    assert disk.first_missing(1, 30) == 18
    assert disk.first_missing(19, 30) == 19
    assert disk.first_missing(20, 30) == 21
    assert disk.first_missing(20, 20) is None
    disk.discard(3)
    assert (disk.first_missing(1, 30), disk.count(30)) == (3, 17)
    disk.close(None)
