"""Real SQLite databases, built by Python's sqlite3 (SQLite 3.40) and apsw
(current SQLite), as ground truth for the file-format layer.

Every database is built once per session in a temporary directory; tests get
:class:`RealDatabase` objects that hold the file's bytes and walk its b-trees
with the code under test.
"""

from __future__ import annotations

import ctypes
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import pytest

from pgfs.sqlite.btree import BTreePage, PageType, parse_btree_page
from pgfs.sqlite.header import DatabaseHeader
from pgfs.sqlite.overflow import assemble_payload
from pgfs.sqlite.record import decode_record
from pgfs.sqlite.schema import SchemaEntry


@dataclass
class Spec:
    """How to build one database."""

    name: str
    page_size: int = 4096
    engine: str = "sqlite3"  # or "apsw"
    encoding: str = "UTF-8"
    auto_vacuum: str = "NONE"  # NONE, FULL, INCREMENTAL
    reserve: int = 0
    journal_mode: str = "DELETE"
    rows: int = 120


SPECS = [
    Spec("p4096"),
    Spec("p512", page_size=512, rows=60),
    Spec("p1024_utf16le", page_size=1024, encoding="UTF-16le"),
    Spec("p65536_utf16be", page_size=65536, encoding="UTF-16be", rows=80),
    Spec("apsw_p4096", engine="apsw"),
    Spec("apsw_reserved", page_size=1024, engine="apsw", reserve=33, rows=80),
    Spec("autovac_full", page_size=1024, auto_vacuum="FULL", rows=80),
    Spec("autovac_incr", page_size=512, auto_vacuum="INCREMENTAL", engine="apsw", rows=60),
]


def _text(rng: random.Random, n: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz äöü€😀\u4e2d"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _statements(spec: Spec) -> Iterator[tuple[str, tuple]]:
    """The content: every serial type, every b-tree page kind, overflow in
    tables and indexes, generated columns, a wide record header, a freelist."""
    rng = random.Random(spec.name)
    yield (
        "CREATE TABLE mixed(a, b INTEGER, c REAL, d TEXT, e BLOB, f NUMERIC, g)",
        (),
    )
    yield ("CREATE INDEX mixed_d ON mixed(d, a)", ())
    yield ("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, bio TEXT)", ())
    yield ("CREATE INDEX people_bio ON people(bio)", ())
    yield (
        "CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, n INTEGER)",
        (),
    )
    yield (
        "CREATE TABLE kv(k TEXT PRIMARY KEY, v, w INTEGER DEFAULT 7) WITHOUT ROWID",
        (),
    )
    yield (
        "CREATE TABLE gen(a INTEGER, b TEXT, v INTEGER AS (a * 2) VIRTUAL,"
        " s TEXT AS (b || '!') STORED, c REAL)",
        (),
    )
    wide_cols = ", ".join(f"c{i}" for i in range(150))
    yield (f"CREATE TABLE wide({wide_cols})", ())
    ints = [
        0, 1, -1, 2, 127, -128, 128, -129, 32767, -32768, 32768, 8388607, -8388608,
        8388608, 2147483647, -2147483648, 2147483648, 2**47 - 1, -(2**47), 2**47,
        2**63 - 1, -(2**63),
    ]  # fmt: skip
    floats = [0.0, -0.0, 1.5, -2.25, 1e300, 3.0, 2.0**52, 2.0**53 + 2, 1e-310, 2.0**48]
    n = spec.rows
    for i in range(n):
        big = rng.random() < 0.15
        yield (
            "INSERT INTO mixed VALUES (?,?,?,?,?,?,?)",
            (
                rng.choice(ints + floats + [None, "x", b"\x00\xff"]),
                rng.choice(ints),
                rng.choice(floats + ints[:10]),
                _text(rng, rng.randrange(0, 3000 if big else 60)),
                rng.randbytes(rng.randrange(0, 5000 if big else 40)),
                rng.choice(["12", "1.5", "abc", "3.0", 7, 2.5, None]),
                rng.choice([None, 1, 0, "t"]),
            ),
        )
        yield (
            "INSERT INTO people(name, bio) VALUES (?, ?)",
            (_text(rng, 12), _text(rng, rng.randrange(0, 2500 if big else 80))),
        )
        yield ("INSERT INTO log(at, n) VALUES (?, ?)", (f"2024-01-{i % 28 + 1:02d}", i))
        yield (
            "INSERT INTO kv VALUES (?, ?, ?)",
            (f"key{i:05d}" + _text(rng, 5), rng.choice([None, i, 1.25, "v" * (i % 50)]), i),
        )
        yield ("INSERT INTO gen(a, b, c) VALUES (?, ?, ?)", (i, _text(rng, 8), i / 4))
        if i % 10 == 0:
            values = tuple(rng.choice([None, i, "t" * (i % 7), 0.5, 1]) for _ in range(150))
            yield (f"INSERT INTO wide VALUES ({', '.join('?' * 150)})", values)
    # Payloads spanning several overflow pages, whatever the page size.
    yield ("CREATE TABLE big(id INTEGER PRIMARY KEY, data)", ())
    yield ("CREATE INDEX big_data ON big(data)", ())
    for k in range(4):
        size = spec.page_size * (k + 1) + 123 * k
        value = rng.randbytes(size) if k % 2 else _text(rng, size // 2)
        yield ("INSERT INTO big(data) VALUES (?)", (value,))
    yield ("DELETE FROM big WHERE id = 2", ())
    # A freelist: delete a third of the rows (and whole overflow chains).
    yield ("DELETE FROM mixed WHERE rowid % 3 = 0", ())
    yield ("DELETE FROM people WHERE id % 4 = 1", ())
    yield ("UPDATE people SET bio = upper(bio) WHERE id % 5 = 0", ())


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


def _build(spec: Spec, path: Path) -> None:
    statements = list(_statements(spec))
    if spec.engine == "apsw":
        con = apsw.Connection(str(path))
        if spec.reserve:
            reserve = ctypes.c_int(spec.reserve)
            con.file_control("main", apsw.SQLITE_FCNTL_RESERVE_BYTES, ctypes.addressof(reserve))
        execute: Callable = con.execute
    else:
        con = sqlite3.connect(path, isolation_level=None)
        execute = con.execute
    execute(f"PRAGMA page_size={spec.page_size}")
    execute(f"PRAGMA encoding='{spec.encoding}'")
    execute(f"PRAGMA auto_vacuum={spec.auto_vacuum}")
    execute(f"PRAGMA journal_mode={spec.journal_mode}")
    execute("PRAGMA synchronous=OFF")  # no fsync: the file's bytes are the same
    execute("BEGIN")
    for sql, params in statements:
        execute(sql, params)
    execute("COMMIT")
    con.close()


@pytest.fixture(scope="session")
def real_databases(tmp_path_factory: pytest.TempPathFactory) -> list[RealDatabase]:
    base = tmp_path_factory.mktemp("realdb")
    out = []
    for spec in SPECS:
        path = base / f"{spec.name}.db"
        _build(spec, path)
        out.append(RealDatabase(spec, path, path.read_bytes()))
    return out


@pytest.fixture(params=[s.name for s in SPECS])
def real_db(request: pytest.FixtureRequest, real_databases: list[RealDatabase]) -> RealDatabase:
    """Each real database in turn."""
    return next(db for db in real_databases if db.name == request.param)
