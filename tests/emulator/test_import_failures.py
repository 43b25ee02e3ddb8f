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


def index_disagrees(path: Path) -> None:
    """A file whose every page is sound (quick_check ok) but whose index does not
    hold what its definition says (integrity_check finds it)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT, y TEXT)")
    conn.execute("CREATE INDEX t_x ON t (x)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", ((f"x{i}", f"y{i}") for i in range(500)))
    conn.commit()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_schema SET sql = 'CREATE INDEX t_x ON t (y)' WHERE name = 't_x'")
    conn.commit()
    conn.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert check.execute("PRAGMA integrity_check").fetchone() != ("ok",)
    check.close()


def test_a_file_only_the_full_integrity_check_refuses_rolls_back(store: Store, tmp_path: Path):
    path = tmp_path / "index.db"
    index_disagrees(path)
    with pytest.raises(TransferError, match=r"integrity_check says.*Nothing was imported"):
        import_file(store, path, progress=False)
    assert store.is_empty()
    assert store.load_state().tables == {}
    report = import_file(store, path, progress=False, force=True)
    assert report.problems and store.load_state().tables.keys() == {"t"}
