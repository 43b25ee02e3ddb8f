"""Rows of many megabytes: rendering, diffing and deleting an overflow chain costs time
linear in its length. Asserted as invariants of work (payload bytes fetched, rows
examined, pages rendered), never as timings; scripts/bench_big_rows.py reports times
and peak memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pgfs.emulator.database import Database
from pgfs.emulator.pagecache import PageCache
from pgfs.sqlite.btree import parse_btree_page
from tests.support.invariants import CommitHarness

MB = 1024 * 1024
SIZES = [1, 10, pytest.param(100, marks=pytest.mark.slow)]


def _one_big_row(path: Path, size: int) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, b BLOB)")
    conn.execute("INSERT INTO t (name, b) VALUES ('small', x'00')")
    conn.execute("INSERT INTO t (name, b) VALUES ('big', randomblob(?))", (size,))
    conn.commit()
    conn.close()
    return path


def _chain(database: Database) -> list[int]:
    """The overflow chain of the big row, in order, as SQLite would follow it."""
    leaf = parse_btree_page(database.read(2), 2, database.usable_size)
    cell = next(c for c in leaf.cells if c.overflow is not None)
    chain, pgno = [], cell.overflow
    while pgno:
        chain.append(pgno)
        pgno = int.from_bytes(database.read(pgno)[:4], "big")
    return chain


@pytest.mark.parametrize("size_mb", SIZES)
def test_reading_a_long_chain_fetches_its_row_once(store, tmp_path: Path, size_mb: int) -> None:
    harness = CommitHarness(store, _one_big_row(tmp_path / "big.db", size_mb * MB), tmp_path)
    # A fresh mount with only a small memory cache (no disk): the chain is read page by
    # page in chain order, as SQLite reads it.
    cold = Database(store, store.load_state(), PageCache(memory_bytes=4 * MB))
    chain = _chain(cold)
    assert len(chain) >= size_mb * MB // 4096
    # Linear: the payload came over the wire about once, not once per page.
    assert cold.renderer.payload_bytes <= 2 * size_mb * MB
    assert cold.renderer.pages_rendered <= len(chain) + 4
    harness.check()


@pytest.mark.parametrize("size_mb", SIZES)
def test_deleting_and_rewriting_a_big_row_costs_its_pages(
    store, tmp_path: Path, size_mb: int
) -> None:
    harness = CommitHarness(
        store, _one_big_row(tmp_path / "big.db", size_mb * MB), tmp_path, check_pages=False
    )
    harness.database.cache.clear()
    fetched = harness.database.renderer.payload_bytes
    result = harness.run("DELETE FROM t WHERE name = 'big'", check=False)
    diff = harness.database.last_diff
    assert diff is not None and diff.rows_examined <= 2  # the row's cell, not its payload
    # Freeing the chain changes the trunk pages, not the chain's own pages.
    assert result.pages_rendered <= result.changed + 4
    # At most the row itself, once: the freed pages' old images are kept as the commit's
    # undo (README "Failures"), and the first of them is an overflow page of the row.
    assert harness.database.renderer.payload_bytes - fetched <= size_mb * MB + 4096
    harness.run(f"INSERT INTO t (name, b) VALUES ('again', randomblob({size_mb * MB}))")
    diff = harness.database.last_diff
    assert diff is not None and diff.rows_examined <= 2
    harness.run("UPDATE t SET name = 'AGAIN' WHERE name = 'again'", check="rows")
    diff = harness.database.last_diff
    # Same size: SQLite overwrites the cell in place, the chain does not change, and
    # nothing of the chain is written again.
    assert sum(len(part.pages) for part in harness.database.last_parts) <= 4
    harness.check()
