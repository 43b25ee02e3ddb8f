"""Real SQLite databases, built by Python's sqlite3 (SQLite 3.40) and apsw
(current SQLite), as ground truth for the file-format layer.

The databases are `tests.support.dbgen`'s format cases (`SPECS`). Every
database is built once per session in a temporary directory; tests get
:class:`RealDatabase` objects that hold the file's bytes and walk its b-trees
with the code under test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pgfs.sqlite.btree import BTreePage, PageType, parse_btree_page
from pgfs.sqlite.header import DatabaseHeader
from pgfs.sqlite.overflow import assemble_payload
from pgfs.sqlite.record import decode_record
from pgfs.sqlite.schema import SchemaEntry
from tests.support.dbgen import SPECS, Spec, build_format_case


@dataclass
class RealDatabase:
    """A database file SQLite wrote, and readers built on the code under test."""

    spec: Spec
    path: Path
    data: bytes
    header: DatabaseHeader = field(init=False)

    def __post_init__(self) -> None:
        self.header = DatabaseHeader.parse(self.data)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def page_size(self) -> int:
        return self.header.page_size

    @property
    def usable_size(self) -> int:
        return self.header.usable_size

    @property
    def page_count(self) -> int:
        return len(self.data) // self.page_size

    def page(self, pgno: int) -> bytes:
        if not 1 <= pgno <= self.page_count:
            raise KeyError(pgno)
        return self.data[(pgno - 1) * self.page_size : pgno * self.page_size]

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        con = self.connect()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def btree(self, root: int) -> list[BTreePage]:
        """Every page of the b-tree at ``root``, parents before children."""
        pages = []
        todo = [root]
        while todo:
            pgno = todo.pop(0)
            page = parse_btree_page(self.page(pgno), pgno, self.usable_size)
            pages.append(page)
            todo.extend(page.children())
        return pages

    def payloads(self, root: int) -> Iterator[tuple[BTreePage, object, bytes, list[int]]]:
        """(page, cell, full payload, overflow chain) of every cell with a payload."""
        for page in self.btree(root):
            if page.page_type == PageType.TABLE_INTERIOR:
                continue
            for cell in page.cells:
                payload, chain = assemble_payload(
                    cell, self.page, self.usable_size, page.page_type, page.pgno
                )
                yield page, cell, payload, chain

    def schema(self) -> list[SchemaEntry]:
        entries = []
        for _page, _cell, payload, _chain in self.payloads(1):
            entries.append(
                SchemaEntry.from_values(decode_record(payload, self.header.text_encoding))
            )
        return entries

    def roots(self) -> dict[str, int]:
        return {e.name: e.rootpage for e in self.schema() if e.rootpage}


@pytest.fixture(scope="session")
def real_databases(tmp_path_factory: pytest.TempPathFactory) -> list[RealDatabase]:
    base = tmp_path_factory.mktemp("realdb")
    out = []
    for spec in SPECS:
        path = base / f"{spec.name}.db"
        build_format_case(spec, path)
        out.append(RealDatabase(spec, path, path.read_bytes()))
    return out


@pytest.fixture(params=[s.name for s in SPECS])
def real_db(request: pytest.FixtureRequest, real_databases: list[RealDatabase]) -> RealDatabase:
    """Each real database in turn."""
    return next(db for db in real_databases if db.name == request.param)
