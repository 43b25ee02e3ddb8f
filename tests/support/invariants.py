"""Checks of the commit path's invariants, reusable by the FUSE tests.

- `assert_store_matches(store, path)`: every data table's rows in PostgreSQL
  equal what SQLite reads from the file at `path` (values and storage classes);
- `assert_export_matches(store, path, folder)`: `pgfs export` of the store
  passes `PRAGMA integrity_check` and holds the same schema and rows as `path`;
- `assert_pages_match(database, path)`: every page the store renders is
  logically identical to the file's page (same b-tree cells, same raw bytes);
- `CommitHarness`: import a database, then run SQL on a local copy of the file
  with real SQLite, hand the pages that changed to `Database.commit` (what the
  FUSE layer does) and check all of the above after each commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgfs.emulator.database import Database
from pgfs.emulator.exporter import compare_with_sqlite, export_file
from pgfs.emulator.importer import import_file
from pgfs.sqlite.btree import parse_btree_page
from pgfs.sqlite.header import DatabaseHeader
from pgfs.store.changeset import CommitSource
from pgfs.store.interface import LeaseHolder

BTREE_KINDS = {"table_leaf", "table_interior", "index_leaf", "index_interior"}


def open_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def integrity(path: Path) -> list[str]:
    conn = open_readonly(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_rows(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema ORDER BY rowid"
    ).fetchall()


def all_rows(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every table's rows with storage classes: `SELECT rowid, typeof(c), c, ...`
    in rowid order (WITHOUT ROWID tables sorted by their primary key)."""
    conn.text_factory = bytes
    out: dict[str, list[tuple]] = {}
    tables = conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND rootpage > 0"
    ).fetchall()
    for raw_name, raw_sql in tables:
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        sql = (raw_sql or b"").decode() if isinstance(raw_sql, bytes) else raw_sql or ""
        columns = [r[1] for r in conn.execute(f"PRAGMA table_xinfo({_quote(name)})")]
        columns = [c.decode() if isinstance(c, bytes) else c for c in columns]
        select = ", ".join(f"typeof({_quote(c)}), {_quote(c)}" for c in columns) or "1"
        if "WITHOUT ROWID" in sql.upper():
            query = f"SELECT {select} FROM {_quote(name)}"
            out[name] = sorted(conn.execute(query).fetchall(), key=repr)
        else:
            query = f"SELECT _rowid_, {select} FROM {_quote(name)} ORDER BY _rowid_"
            out[name] = conn.execute(query).fetchall()
    return out


def assert_same_database(path_a: Path, path_b: Path) -> None:
    """Same schema rows and same rows (values and storage classes) in every table."""
    a, b = open_readonly(path_a), open_readonly(path_b)
    try:
        assert schema_rows(a) == schema_rows(b)
        rows_a, rows_b = all_rows(a), all_rows(b)
        assert rows_a.keys() == rows_b.keys()
        for table in rows_a:
            assert len(rows_a[table]) == len(rows_b[table]), table
            assert rows_a[table] == rows_b[table], table
    finally:
        a.close()
        b.close()


def assert_store_matches(store, path: Path) -> dict[str, int]:
    """PostgreSQL's rows == the rows SQLite reads from `path`, table by table."""
    conn = open_readonly(path)
    try:
        counts, mismatches = compare_with_sqlite(store, conn)
    finally:
        conn.close()
    assert mismatches == [], "\n".join(mismatches)
    names = {
        r[0]
        for r in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 0 "
            "AND name NOT LIKE 'sqlite_%'"
        )
    }
    assert set(counts) == names
    return counts


def assert_export_matches(store, path: Path, folder: Path) -> Path:
    """Export passes integrity_check and holds exactly `path`'s schema and rows."""
    out = folder / "exported.db"
    export_file(store, out, progress=False, force=True)
    assert integrity(out) == ["ok"]
    assert_same_database(out, path)
    return out


def assert_pages_match(database: Database, path: Path) -> None:
    """Every rendered page is logically identical to the file's page: b-tree pages
    have the same cells and right child; raw pages the same bytes; overflow pages
    the same next pointer. Free pages may differ (SQLite never reads them)."""
    data = path.read_bytes()
    header = DatabaseHeader.parse(data[:100])
    size, usable = header.page_size, header.usable_size
    count = len(data) // size
    assert database.page_count == count
    assert database.page_size == size
    records = database.store.page_records(range(1, count + 1))
    for pgno in range(1, count + 1):
        mine = database.read(pgno)
        theirs = data[(pgno - 1) * size : pgno * size]
        record = records.get(pgno)
        if pgno == 1:
            assert mine[:100] == theirs[:100], "header"
        if record is None or (record.kind == "free" and record.data is None):
            continue
        if record.kind in BTREE_KINDS:
            a, b = parse_btree_page(mine, pgno, usable), parse_btree_page(theirs, pgno, usable)
            assert (a.page_type, a.cells, a.right_child) == (b.page_type, b.cells, b.right_child), (
                f"page {pgno} ({record.kind} of {record.owner})"
            )
        elif record.kind == "overflow" and record.data is None:
            assert mine[:4] == theirs[:4], f"page {pgno}: overflow next pointer"
        else:
            assert mine == theirs, f"page {pgno} ({record.kind} of {record.owner})"


def changed_pages(before: bytes, after: bytes) -> tuple[dict[int, bytes], int]:
    """The pages of `after` that differ from `before` (all of them when the page
    size changed), and the new page count."""
    size = DatabaseHeader.parse(after[:100]).page_size
    old_size = DatabaseHeader.parse(before[:100]).page_size if len(before) >= 100 else 0
    count = len(after) // size
    changed = {}
    for pgno in range(1, count + 1):
        page = after[(pgno - 1) * size : pgno * size]
        if old_size != size or before[(pgno - 1) * size : pgno * size] != page:
            changed[pgno] = page
    return changed, count


@dataclass
class CommitResult:
    changed: int
    page_count: int
    pages_rendered: int
    stats: object


class CommitHarness:
    """A store holding `source` and a local copy of its rendered image that SQLite
    edits; `run` commits each edit through `Database.commit` and checks it."""

    def __init__(self, store, source: Path, folder: Path, *, check_pages: bool = True) -> None:
        self.store = store
        self.folder = folder
        self.check_pages = check_pages
        import_file(store, source, progress=False)
        store.acquire_lease(LeaseHolder.this_process("tests/emulator"))
        self.database = Database.open(store)
        self.local = folder / "local.db"
        export_file(store, self.local, progress=False, force=True)
        self.commits = 0

    def run(
        self, work: str | Callable[[sqlite3.Connection], None], *, check: bool | str = True
    ) -> CommitResult:
        """Run `work` (a SQL script or a function of a connection) on the local copy,
        commit the changed pages, and check the invariants (`check="rows"`: only
        PostgreSQL's rows against SQLite's, the cheap part)."""
        before = self.local.read_bytes()
        conn = sqlite3.connect(self.local, isolation_level=None)
        try:
            if isinstance(work, str):
                conn.executescript(work)
            else:
                work(conn)
        finally:
            conn.close()
        after = self.local.read_bytes()
        changed, count = changed_pages(before, after)
        rendered_before = self.database.renderer.pages_rendered
        stats = self.database.commit(changed, count, CommitSource.JOURNAL)
        self.commits += 1
        result = CommitResult(
            len(changed), count, self.database.renderer.pages_rendered - rendered_before, stats
        )
        if check == "rows":
            assert_store_matches(self.store, self.local)
        elif check:
            self.check()
        return result

    def check(self) -> None:
        assert_store_matches(self.store, self.local)
        assert_export_matches(self.store, self.local, self.folder)
        if self.check_pages:
            assert_pages_match(self.database, self.local)
