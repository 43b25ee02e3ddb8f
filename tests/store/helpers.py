"""Test helpers: read real SQLite files, and build Changesets from them (and by hand).

`changeset_from_file` is a deliberately simple importer (every table walked
whole, every page recorded); the emulator owns the real one. It lets the
store be tested against what real SQLite writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pgfs.sqlite.btree import parse_btree_page
from pgfs.sqlite.header import DatabaseHeader, TextEncoding
from pgfs.sqlite.overflow import assemble_payload
from pgfs.sqlite.record import encode_record
from pgfs.sqlite.schema import SchemaEntry, TableDefinition, has_data_table, parse_create_table
from pgfs.store.changeset import (
    Changeset,
    CommitSource,
    PageKind,
    PageRecord,
    SchemaChange,
    TableRows,
)
from pgfs.store.interface import CommitStats, Store


@dataclass
class SqliteFile:
    """The bytes of a SQLite database file and what its b-trees hold."""

    path: Path
    data: bytes = field(init=False)
    header: DatabaseHeader = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.path.read_bytes()
        self.header = DatabaseHeader.parse(self.data[:100])

    @property
    def page_count(self) -> int:
        return len(self.data) // self.header.page_size

    def page(self, pgno: int) -> bytes:
        size = self.header.page_size
        return self.data[(pgno - 1) * size : pgno * size]

    def entries(self) -> list[SchemaEntry]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute(
                "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema ORDER BY rowid"
            ).fetchall()
        conn.close()
        return [SchemaEntry(*row) for row in rows]

    def rows(self, root: int) -> Iterator[tuple[int, bytes, list[int]]]:
        """(rowid, payload, overflow chain) of every row of the tree at `root`, in key
        order. For an index tree (a WITHOUT ROWID table) the rowid is the position."""
        usable = self.header.usable_size
        position = 0

        def walk(pgno: int) -> Iterator[tuple[int, bytes, list[int]]]:
            nonlocal position
            page = parse_btree_page(self.page(pgno), pgno, usable)
            for cell in page.cells:
                if not page.is_leaf:
                    yield from walk(cell.left_child)
                if page.is_table and not page.is_leaf:
                    continue
                payload, chain = assemble_payload(cell, self.page, usable, page.page_type, pgno)
                if page.is_table:
                    yield cell.rowid, payload, chain
                else:
                    yield position, payload, chain
                    position += 1
            if page.right_child is not None:
                yield from walk(page.right_child)

        yield from walk(root)

    def records(self, table: str) -> dict[int, bytes]:
        root = next(e.rootpage for e in self.entries() if e.name == table)
        return {rowid: payload for rowid, payload, _ in self.rows(root)}


def tables_of(entries: list[SchemaEntry]) -> list[TableDefinition]:
    out = []
    for entry in entries:
        if has_data_table(entry):
            definition = parse_create_table(entry.sql or "")
            if definition.name != entry.name:
                import dataclasses

                definition = dataclasses.replace(definition, name=entry.name)
            out.append(definition)
    return out


def changeset_from_file(
    path: Path, parts: int = 1, source: CommitSource = CommitSource.IMPORT
) -> list[Changeset]:
    """An import of `path` as `parts` changesets (the first creates the tables)."""
    db = SqliteFile(path)
    entries = db.entries()
    tables = tables_of(entries)
    rowid_tables = [t for t in tables if not t.without_rowid]
    roots = {e.name: e.rootpage for e in entries}
    header = db.data[:100]
    changesets = [Changeset(source, header, db.page_count) for _ in range(parts)]
    first = changesets[0]
    first.schema_entries = entries
    first.schema = SchemaChange(created=tables)
    index = 0
    for table in tables:
        for rowid, payload, chain in db.rows(roots[table.name]):
            part = changesets[index % parts]
            index += 1
            rows = part.rows.setdefault(table.name, TableRows(table.name, replace_all=True))
            rows.inserted[rowid] = payload
            if chain and table in rowid_tables:
                part.chains[(table.name, rowid)] = chain
    for pgno in range(1, db.page_count + 1):
        changesets[pgno % parts].pages.append(
            PageRecord(pgno, PageKind.TABLE_LEAF, "sqlite_schema", data=db.page(pgno))
        )
    return changesets


def header(encoding: TextEncoding = TextEncoding.UTF8, schema_format: int = 4) -> bytes:
    return DatabaseHeader(text_encoding=encoding, schema_format=schema_format).to_bytes()


def record(*values, encoding: TextEncoding = TextEncoding.UTF8) -> bytes:
    return encode_record(list(values), encoding)


def apply(store: Store, changeset: Changeset) -> CommitStats:
    """Write one changeset as one commit."""
    return store.write([changeset], source=changeset.source)


def import_file(store: Store, path: Path, parts: int = 1, *, clear: bool = False) -> CommitStats:
    """Write a whole file (as `parts` changesets) in one transaction."""
    return store.write(changeset_from_file(path, parts), source=CommitSource.IMPORT, clear=clear)


WAL = CommitSource.WAL
HDR = header()


def make_db(path: Path) -> Path:
    """A SQLite database with the shapes the store must handle."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA page_size = 1024;
        CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, score REAL,
                            price NUMERIC, data BLOB);
        CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER);
        CREATE TABLE kv (k TEXT PRIMARY KEY, v REAL) WITHOUT ROWID;
        CREATE TABLE grown (a TEXT, b INTEGER);
        CREATE INDEX items_name ON items(name);
        CREATE VIEW big AS SELECT * FROM items WHERE score > 1;
        """
    )
    for i in range(1, 301):
        conn.execute(
            "INSERT INTO items (name, score, price, data) VALUES (?, ?, ?, ?)",
            (f"item {i}", i / 4, i * 0.99, bytes([i % 256]) * (i * 7)),
        )
    conn.execute("INSERT INTO items (name, score) VALUES (?, ?)", ("odd", "not a number"))
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [(f"tag{i}", i) for i in range(50)])
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(f"k{i}", i * 1.5) for i in range(40)])
    conn.executemany("INSERT INTO grown VALUES (?, ?)", [(f"g{i}", i) for i in range(20)])
    conn.execute("ALTER TABLE grown ADD COLUMN c REAL DEFAULT 2.5")
    conn.execute("INSERT INTO grown VALUES ('new', 1, 3.5)")
    conn.commit()
    conn.close()
    return path


def entries_for(*creates: str) -> list[SchemaEntry]:
    """sqlite_schema rows for these CREATE TABLE statements."""
    out = []
    for root, text in enumerate(creates, start=2):
        name = parse_create_table(text).name
        out.append(SchemaEntry("table", name, name, root, text))
    return out


def table_change(
    table: str, create: str, inserted: dict[int, bytes], *, updated=None, deleted=None, **kw
) -> Changeset:
    """Row changes of `table`; with `create`, the table is created first."""
    rows = TableRows(table, inserted, updated or {}, deleted or set(), **kw)
    changeset = Changeset(WAL, HDR, 10, rows={table: rows})
    if create:
        changeset.schema = SchemaChange(created=[parse_create_table(create)])
        changeset.schema_entries = entries_for(create)
    return changeset


def ddl_change(change: SchemaChange, *creates: str, rows: dict | None = None) -> Changeset:
    return Changeset(WAL, HDR, 10, entries_for(*creates), change, rows=rows or {})


def bad_page_changeset(sample: SqliteFile) -> Changeset:
    changeset = table_change(
        "u", "CREATE TABLE u (a TEXT)", {i: record(f"x{i}") for i in range(1, 1000)}
    )
    changeset.schema.dropped = ["items"]
    changeset.schema_entries = [e for e in sample.entries() if e.tbl_name != "items"] + entries_for(
        "CREATE TABLE u (a TEXT)"
    )
    changeset.rows["tags"] = TableRows("tags", {}, {1: record("changed", 5)}, {2, 3})
    changeset.pages = [PageRecord(1, PageKind.TABLE_LEAF, "sqlite_schema", data=b"new")]
    changeset.pages.append(PageRecord(3, "no-such-kind", None, data=b"bad"))
    return changeset
