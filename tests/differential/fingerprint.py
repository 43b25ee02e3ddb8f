"""The state of a database as a new connection reads it, for comparing two files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .clients import Connection


@dataclass(frozen=True)
class TableDigest:
    name: str
    rows: int
    sha256: str  # over every row: rowid (rowid tables), (typeof, value) per column


@dataclass(frozen=True)
class Fingerprint:
    """Schema, the content of every table with storage classes, integrity_check, sizes."""

    schema: tuple[tuple[Any, ...], ...]
    tables: tuple[TableDigest, ...]
    integrity: tuple[str, ...]
    page_count: int
    freelist_count: int
    page_size: int

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs from `other` (the expected state), one line each."""
        found = []
        if self.schema != other.schema:
            found.append(f"sqlite_schema: {self.schema} != expected {other.schema}")
        mine = {t.name: t for t in self.tables}
        theirs = {t.name: t for t in other.tables}
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                found.append(f"table {name}: {mine.get(name)} != expected {theirs.get(name)}")
        if self.integrity != other.integrity:
            found.append(f"integrity_check: {list(self.integrity)[:10]}")
        for label in ("page_count", "freelist_count", "page_size"):
            if getattr(self, label) != getattr(other, label):
                found.append(f"{label}: {getattr(self, label)} != {getattr(other, label)}")
        return found

    @property
    def integrity_ok(self) -> bool:
        return self.integrity == ("ok",)


def fingerprint(conn: Connection) -> Fingerprint:
    schema = tuple(
        conn.query("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema ORDER BY 1, 2")
    )
    tables = tuple(
        _digest(conn, name, sql or "")
        for kind, name, _, _, sql in schema
        if kind == "table" and not str(sql or "").upper().startswith("CREATE VIRTUAL")
    )
    return Fingerprint(
        schema=schema,
        tables=tables,
        integrity=tuple(str(row[0]) for row in conn.query("PRAGMA integrity_check")),
        page_count=int(conn.query("PRAGMA page_count")[0][0]),
        freelist_count=int(conn.query("PRAGMA freelist_count")[0][0]),
        page_size=int(conn.query("PRAGMA page_size")[0][0]),
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _digest(conn: Connection, table: str, sql: str) -> TableDigest:
    columns = [str(row[1]) for row in conn.query(f"PRAGMA table_info({_quote(table)})")]
    # Text as its bytes: exact, and text that is not valid UTF-8 cannot fail to decode.
    select = [
        f"typeof({_quote(c)}), "
        f"CASE typeof({_quote(c)}) WHEN 'text' THEN CAST({_quote(c)} AS BLOB) ELSE {_quote(c)} END"
        for c in columns
    ]
    without_rowid = "WITHOUT ROWID" in " ".join(sql.upper().split())
    if without_rowid:
        query = f"SELECT {', '.join(select)} FROM {_quote(table)}"
    else:
        query = f"SELECT _rowid_, {', '.join(select)} FROM {_quote(table)} ORDER BY _rowid_"
    digest = hashlib.sha256()
    count = 0
    for row in conn.query(query):
        digest.update(repr(row).encode())
        count += 1
    return TableDigest(table, count, digest.hexdigest())
