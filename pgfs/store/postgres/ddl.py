"""PostgreSQL DDL for data-schema tables, built with psycopg.sql only.

The SQLite CREATE text is parsed by `pgfs.sqlite.schema` (sqlglot); pgfs
decides the PostgreSQL DDL itself from the resulting `TableDefinition`:

- the SQLite column names, types by affinity (`PG_TYPES`);
- the rowid: the INTEGER PRIMARY KEY column as `bigint PRIMARY KEY`, else a
  hidden `_rowid bigint PRIMARY KEY`; a WITHOUT ROWID table gets a mirror
  table with no primary key (its rows are replaced wholesale);
- the hidden `_pgfs_record bytea` and `_pgfs_fields smallint` (see values.py);
- no other constraint: no NOT NULL, CHECK, UNIQUE, DEFAULT or FOREIGN KEY.
  SQLite enforces its own constraints when it commits; PostgreSQL must never
  reject a commit SQLite already made.
"""

from __future__ import annotations

import secrets

from psycopg import sql

from pgfs.sqlite.errors import UnsupportedFeatureError
from pgfs.sqlite.schema import Affinity, Column, TableDefinition
from pgfs.store.alter import AlterPlan as AlterPlan  # re-exported
from pgfs.store.alter import alter_plan as alter_plan  # re-exported
from pgfs.store.values import (
    HIDDEN_FIELDS,
    HIDDEN_INEXACT,
    HIDDEN_RECORD,
    HIDDEN_ROWID,
    TableLayout,
    layout_of,
)

PG_TYPES = {
    Affinity.INTEGER: "bigint",
    Affinity.TEXT: "text",
    Affinity.REAL: "double precision",
    Affinity.NUMERIC: "numeric",
    Affinity.BLOB: "bytea",
}
"""PostgreSQL type of a column by SQLite affinity (datatype3 §3.1)."""

COPY_TYPES = {
    Affinity.INTEGER: "int8",
    Affinity.TEXT: "text",
    Affinity.REAL: "float8",
    Affinity.NUMERIC: "numeric",
    Affinity.BLOB: "bytea",
}
"""Type names for binary COPY (`Copy.set_types`)."""

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are truncated


def check_identifier(name: str, what: str) -> None:
    """Raise UnsupportedFeatureError for names PostgreSQL cannot hold unchanged."""
    if not name:
        raise UnsupportedFeatureError(f"{what} has an empty name")
    if "\x00" in name:
        raise UnsupportedFeatureError(f"{what} {name!r} contains a NUL character")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise UnsupportedFeatureError(
            f"{what} {name!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte limit"
        )


def check_table(table: TableDefinition) -> TableLayout:
    """Validate every name of `table` for PostgreSQL; return its layout."""
    check_identifier(table.name, "table")
    layout = layout_of(table)
    hidden = {HIDDEN_RECORD, HIDDEN_FIELDS, HIDDEN_INEXACT}
    if layout.hidden_rowid:
        hidden.add(HIDDEN_ROWID)
    for column in layout.columns:
        check_identifier(column.name, f"column of table {table.name!r}")
        if column.name in hidden:
            raise UnsupportedFeatureError(
                f"table {table.name!r} has a column named {column.name!r}, "
                "which pgfs uses for its hidden columns"
            )
    return layout


def qualified(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def column_type(column: Column) -> sql.SQL:
    return sql.SQL(PG_TYPES[column.affinity])


def create_table(schema: str, table: TableDefinition) -> sql.Composed:
    """CREATE TABLE for the data table of `table` (see module docstring)."""
    layout = check_table(table)
    key = sql.SQL("CONSTRAINT {} PRIMARY KEY").format(sql.Identifier(primary_key_name()))
    parts = []
    for index, column in enumerate(layout.columns):
        definition = sql.SQL("{} {}").format(sql.Identifier(column.name), column_type(column))
        if index == layout.ipk_index:
            definition = sql.SQL("{} {}").format(definition, key)
        parts.append(definition)
    parts.append(sql.SQL("{} bytea").format(sql.Identifier(HIDDEN_RECORD)))
    parts.append(sql.SQL("{} smallint").format(sql.Identifier(HIDDEN_FIELDS)))
    parts.append(sql.SQL("{} boolean").format(sql.Identifier(HIDDEN_INEXACT)))
    if layout.hidden_rowid:
        parts.append(sql.SQL("{} bigint {}").format(sql.Identifier(HIDDEN_ROWID), key))
    return sql.SQL("CREATE TABLE {} ({})").format(
        qualified(schema, table.name), sql.SQL(", ").join(parts)
    )


COMMENT = "pgfs data table"
"""Comment on every data table (`COMMENT ON TABLE`): marks what `clear()` may drop."""


def comment_table(schema: str, table: TableDefinition) -> sql.Composed:
    kind = "WITHOUT ROWID mirror" if table.without_rowid else "rowid table"
    return sql.SQL("COMMENT ON TABLE {} IS {}").format(
        qualified(schema, table.name), sql.Literal(f"{COMMENT} ({kind})")
    )


def primary_key_name() -> str:
    """A fresh name for a data table's primary-key index.

    PostgreSQL would call it `<table>_pkey`, a relation name that a later
    SQLite table could legitimately want (`CREATE TABLE "t_pkey"`), and it
    keeps that name when the table is renamed. A random name never collides
    with another data table's, and needs no catalog lookup inside a commit.
    """
    return f"_pgfs_pk_{secrets.token_hex(8)}"


def drop_table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(schema, name))


def rename_table(schema: str, old: str, new: str) -> sql.Composed:
    check_identifier(new, "table")
    return sql.SQL("ALTER TABLE {} RENAME TO {}").format(
        qualified(schema, old), sql.Identifier(new)
    )


def add_inexact_column(schema: str, table: str) -> sql.Composed:
    """Format 2 -> 3: the flag of rows whose typed columns cannot hold every value."""
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} boolean").format(
        qualified(schema, table), sql.Identifier(HIDDEN_INEXACT)
    )


def add_column(schema: str, table: str, column: Column) -> sql.Composed:
    check_identifier(column.name, f"column of table {table!r}")
    return sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
        qualified(schema, table), sql.Identifier(column.name), column_type(column)
    )


def drop_column(schema: str, table: str, column: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
        qualified(schema, table), sql.Identifier(column)
    )


def rename_column(schema: str, table: str, old: str, new: str) -> sql.Composed:
    check_identifier(new, f"column of table {table!r}")
    return sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
        qualified(schema, table), sql.Identifier(old), sql.Identifier(new)
    )


def identifiers(names: list[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def copy_types(layout: TableLayout) -> list[str]:
    """Binary COPY types of `layout.column_names()`."""
    types = [COPY_TYPES[c.affinity] for c in layout.columns] + ["bytea", "int2", "bool"]
    if layout.hidden_rowid:
        types.append("int8")
    return types
