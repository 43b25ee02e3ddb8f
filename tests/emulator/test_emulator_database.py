"""Database (read/commit), the renderer and the page sources."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from pgfs.emulator.database import WARM_BATCH, Database
from pgfs.emulator.importer import import_file
from pgfs.emulator.pagecache import CacheStamp, DiskPages, PageCache, Warmth
from pgfs.emulator.source import FilePageSource, OverlayPageSource
from pgfs.sqlite.errors import CorruptPageError, NotADatabaseError
from pgfs.sqlite.header import lock_byte_page
from pgfs.store.changeset import CommitSource
from pgfs.store.interface import LeaseHolder
from tests.support.dbgen import build_all_types
from tests.support.invariants import (
    assert_export_matches,
    assert_pages_match,
    assert_store_matches,
    changed_pages,
)

TEST = CommitSource.JOURNAL


def _writer(store) -> Database:
    """The store's Database, opened as a mount opens it: holding the writer lease."""
    store.initialise()
    store.acquire_lease(LeaseHolder.this_process("tests/emulator"))
    return Database.open(store)


def _imported_database(store, tmp_path: Path) -> Database:
    """A Database over the store after importing a 1024-byte-page all-types file."""
    source = build_all_types(tmp_path / "src.db", page_size=1024, big_rows=2)
    import_file(store, source, progress=False)
    return _writer(store)


def _read_all(database: Database) -> list[bytes]:
    """Every page of `database`, in order, as read through it."""
    return [database.read(p) for p in range(1, database.page_count + 1)]


def _changed_copy(
    tmp_path: Path, images: bytes, statement: str
) -> tuple[Path, dict[int, bytes], int]:
    """Write `images` to local.db, run `statement` on it with SQLite and commit;
    the file, its changed pages and its page count."""
    local = tmp_path / "local.db"
    local.write_bytes(images)
    conn = sqlite3.connect(local)
    conn.execute(statement)
    conn.commit()
    conn.close()
    changed, count = changed_pages(images, local.read_bytes())
    return local, changed, count


def test_first_commit_creates_the_database(store, tmp_path: Path) -> None:
    """A new SQLite file written through an empty store (what the mount sees when
    the application creates its database)."""
    database = _writer(store)
    assert database.is_empty and database.page_count == 0
    local = tmp_path / "new.db"
    build_all_types(local, page_size=4096, big_rows=2)
    changed, count = changed_pages(b"", local.read_bytes())
    database.commit(changed, count, TEST)
    assert database.page_count == count
    assert_store_matches(store, local)
    assert_export_matches(store, local, tmp_path)
    assert_pages_match(database, local)


def test_reads_are_cached_and_commits_refresh_the_cache(store, tmp_path: Path) -> None:
    database = _imported_database(store, tmp_path)
    first = _read_all(database)
    rendered = database.renderer.pages_rendered
    again = _read_all(database)
    assert again == first
    assert database.renderer.pages_rendered == rendered  # all from the cache
    local, changed, count = _changed_copy(
        tmp_path, b"".join(first), "UPDATE auto SET v = 'cached?' WHERE id = 1"
    )
    database.commit(changed, count, TEST)
    for pgno, image in changed.items():
        assert database.read(pgno) == image  # the committed image itself
    assert database.renderer.pages_rendered == rendered
    assert_store_matches(store, local)
    reopened = Database.open(store)
    assert_pages_match(reopened, local)


def test_failed_commit_changes_nothing(store, tmp_path: Path) -> None:
    database = _imported_database(store, tmp_path)
    before = _read_all(database)
    state = store.inspect()
    broken = {2: b"\x05" + bytes(1023)}  # an interior page with no valid right child
    with pytest.raises(CorruptPageError):
        database.commit(broken, database.page_count, TEST)
    assert _read_all(database) == before
    assert store.inspect()["page_records"] == state["page_records"]
    assert len(store.inspect()["last_commits"]) == len(state["last_commits"])


def test_lock_byte_page_renders_as_zeros(store, tmp_path: Path) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=65536, big_rows=1)
    import_file(store, source, progress=False)
    state = store.load_state()
    lock = lock_byte_page(65536)
    assert lock == 16385
    big = type(state)(**{**state.__dict__, "page_count": lock + 10})
    database = Database(store, big)
    assert database.read(lock) == bytes(65536)
    assert database.read(lock + 5) == bytes(65536)  # not stored: zeros


def test_overlay_and_file_sources(tmp_path: Path) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=1024, big_rows=1)
    data = source.read_bytes()
    with FilePageSource(source) as pages:
        assert pages.page_count == len(data) // 1024
        assert pages.read(3) == data[2048:3072]
        overlay = OverlayPageSource(pages, {3: b"x" * 1024}, pages.page_count + 2)
        assert overlay.read(3) == b"x" * 1024
        assert overlay.read(4) == data[3072:4096]
        assert overlay.read(pages.page_count + 2) == bytes(1024)  # grown, never written
        with pytest.raises(CorruptPageError):
            overlay.read(pages.page_count + 3)
        with pytest.raises(CorruptPageError):
            pages.read(0)
    short = tmp_path / "short.db"
    short.write_bytes(data[:5000])
    with pytest.raises(CorruptPageError, match="truncated"):
        FilePageSource(short)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"x" * 5000)
    with pytest.raises(NotADatabaseError):
        FilePageSource(junk)


def test_reads_and_commits_from_threads(store, tmp_path: Path) -> None:
    database = _imported_database(store, tmp_path)
    local, changed, count = _changed_copy(
        tmp_path,
        b"".join(_read_all(database)),
        "INSERT INTO auto (v) SELECT 'thread ' || id FROM auto",
    )
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(5):
                for pgno in range(1, min(count, database.page_count) + 1):
                    assert len(database.read(pgno)) == 1024
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    database.commit(changed, count, TEST)
    for thread in threads:
        thread.join()
    assert errors == []
    assert_store_matches(store, local)


def test_sequential_reads_render_ahead(store, tmp_path: Path) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=1024, big_rows=3)
    import_file(store, source, progress=False)
    database = Database.open(store)
    data = source.read_bytes()
    renderer = database.renderer
    rendered, batches = renderer.pages_rendered, renderer.batches
    for pgno in range(1, database.page_count + 1):
        page = database.read(pgno)
        if pgno == 1:
            assert page[:100] == data[:100]
    assert renderer.pages_rendered - rendered == database.page_count
    assert renderer.batches - batches < database.page_count / 20
    # a random miss renders only its page
    database.cache.clear()
    before = database.renderer.pages_rendered
    database.read(200)
    database.read(50)
    assert database.renderer.pages_rendered - before == 2


def test_warm_steps_fill_the_local_cache_with_every_page(store, tmp_path: Path) -> None:
    source = build_all_types(tmp_path / "src.db", page_size=1024, big_rows=2)
    import_file(store, source, progress=False)
    state = store.load_state()
    stamp = CacheStamp(state.store_id, state.commit_seq, state.page_size)
    database = Database(store, state, PageCache(disk=DiskPages.open(tmp_path / "cache", stamp)))
    assert Database(store, state).warm_step() is None  # no cache file: nothing to fill
    steps = []
    while not (warmth := database.warm_step()).complete:
        steps.append(warmth.cached)
    assert warmth == Warmth(database.page_count, database.page_count)
    assert steps == sorted(steps) and len(steps) >= database.page_count // WARM_BATCH - 1
    rendered = database.pages_rendered
    assert _read_all(database) == _read_all(Database(store, state))
    assert database.pages_rendered == rendered  # every read from the cache
