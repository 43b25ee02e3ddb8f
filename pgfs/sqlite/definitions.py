"""The schema's records and what a CREATE TABLE declares: `SchemaEntry` (a row of
sqlite_schema), `TableDefinition` and its `Column`s with their `Affinity`.

Re-exported by `pgfs.sqlite.schema`, which is where the rest of pgfs imports
them from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from pgfs.sqlite.errors import FormatError


class Affinity(Enum):
    """Column affinity (datatype3.html §3)."""

    INTEGER = "INTEGER"
    TEXT = "TEXT"
    REAL = "REAL"
    NUMERIC = "NUMERIC"
    BLOB = "BLOB"


def affinity_of(declared_type: str | None) -> Affinity:
    """datatype3 §3.1 "Determination Of Column Affinity", rules in order:
    INT -> INTEGER; CHAR, CLOB or TEXT -> TEXT; BLOB or no type -> BLOB;
    REAL, FLOA or DOUB -> REAL; anything else NUMERIC."""
    t = (declared_type or "").upper()
    if "INT" in t:
        return Affinity.INTEGER
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return Affinity.TEXT
    if "BLOB" in t or not t:
        return Affinity.BLOB
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return Affinity.REAL
    return Affinity.NUMERIC


@dataclass(frozen=True)
class SchemaEntry:
    """One row of sqlite_schema (fileformat2 §2.6 "Storage Of The SQL Database Schema")."""

    type: str
    name: str
    tbl_name: str
    rootpage: int
    sql: str | None

    @classmethod
    def from_values(cls, values: Sequence) -> SchemaEntry:
        """From the decoded record of a sqlite_schema row (type, name, tbl_name,
        rootpage, sql). Raises FormatError when the values do not fit."""
        if len(values) < 5:
            values = list(values) + [None] * (5 - len(values))
        kind, name, tbl_name, rootpage, sql = values[:5]
        if not isinstance(kind, str) or not isinstance(name, str):
            raise FormatError(f"sqlite_schema row with type {kind!r} and name {name!r}")
        if not isinstance(tbl_name, str):
            raise FormatError(f"sqlite_schema row {name!r}: tbl_name {tbl_name!r}")
        if rootpage is None:
            rootpage = 0
        if not isinstance(rootpage, int) or isinstance(rootpage, bool):
            raise FormatError(f"sqlite_schema row {name!r}: rootpage {rootpage!r}")
        if sql is not None and not isinstance(sql, str):
            raise FormatError(f"sqlite_schema row {name!r}: sql {sql!r}")
        return cls(kind, name, tbl_name, rootpage, sql)

    def to_values(self) -> list:
        """The record values of this row, for encode_record."""
        return [self.type, self.name, self.tbl_name, self.rootpage, self.sql]


@dataclass(frozen=True)
class Column:
    """A declared column. ``declared_type`` is the type as PRAGMA table_xinfo
    shows it ("" for none); ``generated`` is None, "virtual" or "stored"."""

    name: str
    declared_type: str
    affinity: Affinity
    generated: str | None = None


@dataclass(frozen=True)
class TableDefinition:
    """What pgfs needs of a CREATE TABLE.

    ``rowid_alias`` is the index in ``columns`` of the INTEGER PRIMARY KEY
    column (its record field is always NULL: the value is the rowid);
    ``primary_key`` the primary-key column names in key order.
    """

    name: str
    columns: tuple[Column, ...]
    rowid_alias: int | None
    without_rowid: bool
    primary_key: tuple[str, ...]

    @property
    def record_columns(self) -> tuple[Column, ...]:
        """The columns stored in a row's record, in record order.

        Rowid table: every column but VIRTUAL generated ones, in declaration
        order (STORED generated columns included where declared:
        sqlite3TableColumnToStorage). WITHOUT ROWID: the primary-key columns
        first, in key order, then the other non-VIRTUAL columns in declaration
        order (convertToWithoutRowidTable).
        """
        stored = [c for c in self.columns if c.generated != "virtual"]
        if not self.without_rowid:
            return tuple(stored)
        by_name = {c.name.casefold(): c for c in self.columns}
        keys = [by_name[n.casefold()] for n in self.primary_key]
        key_names = {c.name.casefold() for c in keys}
        return tuple(keys + [c for c in stored if c.name.casefold() not in key_names])

    def column_index(self, name: str) -> int:
        """Index of a column by name, case-insensitively as SQLite compares names."""
        folded = name.casefold()
        for i, column in enumerate(self.columns):
            if column.name.casefold() == folded:
                return i
        raise KeyError(name)
