"""The schema of a database as the generator needs it, read from a connection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from .clients import Connection


class TableKind(Enum):
    PLAIN = "plain"  # rowid table without a declared primary key
    INTEGER_PK = "integer_pk"  # INTEGER PRIMARY KEY: the rowid has a name
    AUTOINCREMENT = "autoincrement"
    TEXT_PK = "text_pk"  # rowid table whose PRIMARY KEY is an index
    WITHOUT_ROWID = "without_rowid"


@dataclass(frozen=True)
class Column:
    name: str
    decl_type: str
    primary_key: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    kind: TableKind
    columns: tuple[Column, ...]
    rows: int = 0

    @property
    def has_rowid(self) -> bool:
        return self.kind is not TableKind.WITHOUT_ROWID

    @property
    def key(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.primary_key)

    @property
    def data_columns(self) -> tuple[Column, ...]:
        """Columns a generated INSERT may fill with any value."""
        if self.kind in (TableKind.INTEGER_PK, TableKind.AUTOINCREMENT):
            return tuple(c for c in self.columns if not c.primary_key)
        return self.columns


@dataclass(frozen=True)
class Schema:
    tables: tuple[Table, ...] = ()
    indexes: tuple[tuple[str, str], ...] = ()  # (index, table), explicit indexes only
    views: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()

    @property
    def names(self) -> set[str]:
        found = {t.name.lower() for t in self.tables}
        found |= {i.lower() for i, _ in self.indexes}
        return found | {v.lower() for v in self.views} | {t.lower() for t in self.triggers}

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def with_table(self, table: Table) -> Schema:
        others = tuple(t for t in self.tables if t.name != table.name)
        return replace(self, tables=(*others, table))

    def without_table(self, name: str) -> Schema:
        return replace(
            self,
            tables=tuple(t for t in self.tables if t.name != name),
            indexes=tuple(i for i in self.indexes if i[1] != name),
        )


def read_schema(conn: Connection) -> Schema:
    """The schema `conn` sees, with each table's row count."""
    tables: list[Table] = []
    indexes: list[tuple[str, str]] = []
    views: list[str] = []
    triggers: list[str] = []
    rows = conn.query("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name")
    for kind, name, table_name, sql in rows:
        if str(name).startswith("sqlite_"):
            continue
        if kind == "table":
            tables.append(_table(conn, name, sql or ""))
        elif kind == "index" and sql:
            indexes.append((name, table_name))
        elif kind == "view":
            views.append(name)
        elif kind == "trigger":
            triggers.append(name)
    return Schema(tuple(tables), tuple(indexes), tuple(views), tuple(triggers))


def _table(conn: Connection, name: str, sql: str) -> Table:
    quoted = '"' + name.replace('"', '""') + '"'
    info = conn.query(f"PRAGMA table_info({quoted})")
    columns = tuple(Column(str(r[1]), str(r[2]), bool(r[5])) for r in info)
    text = " ".join(sql.upper().split())
    keys = [c for c in columns if c.primary_key]
    if "WITHOUT ROWID" in text:
        kind = TableKind.WITHOUT_ROWID
    elif "AUTOINCREMENT" in text:
        kind = TableKind.AUTOINCREMENT
    elif len(keys) == 1 and keys[0].decl_type.upper() == "INTEGER":
        kind = TableKind.INTEGER_PK
    elif keys:
        kind = TableKind.TEXT_PK
    else:
        kind = TableKind.PLAIN
    count = int(conn.query(f"SELECT count(*) FROM {quoted}")[0][0])
    return Table(name, kind, columns, count)
