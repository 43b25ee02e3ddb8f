"""An import that finds damage part way through its walk writes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pgfs.emulator.importer import TransferError, import_file
from pgfs.store import Store

PAGE = 4096
INDEX_LEAF = 0x0A


def two_tables(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size = {PAGE}")
    for name in ("a", "b"):
        conn.execute(f"CREATE TABLE {name} (x TEXT)")
        conn.executemany(f"INSERT INTO {name} VALUES (?)", (("x" * 200,) for _ in range(3000)))
    conn.commit()
    conn.close()


def test_a_damaged_page_found_late_leaves_the_store_empty(store: Store, tmp_path: Path):
    path = tmp_path / "damaged.db"
    two_tables(path)
    data = bytearray(path.read_bytes())
    data[len(data) - PAGE] = INDEX_LEAF  # the last leaf of b, walked after all of a
    path.write_bytes(bytes(data))
    with pytest.raises(TransferError, match="damaged"):
        import_file(store, path, progress=False, force=True)
    assert store.is_empty()
    assert store.load_state().tables == {}
