"""MariaDB DDL for data tables: the SQLite column names in backticks, types by affinity.

- INTEGER -> BIGINT, TEXT -> LONGTEXT, REAL and NUMERIC -> DOUBLE, BLOB/none ->
  LONGBLOB. Text is utf8mb4 with the `utf8mb4_nopad_bin` collation: compared
  byte for byte, no case folding and no trailing-space padding (the plain
  `_bin` collations pad). NUMERIC is DOUBLE because MariaDB's DECIMAL holds at
  most 65 digits (SQLite's NUMERIC holds any double): an integer beyond 2^53
  makes its row inexact (the record is kept either way).
- the rowid: the INTEGER PRIMARY KEY column as `BIGINT PRIMARY KEY`, else a
  hidden `_rowid BIGINT PRIMARY KEY`; a WITHOUT ROWID table gets a mirror
  with no key. Hidden `_pgfs_record LONGBLOB`, `_pgfs_fields SMALLINT`,
  `_pgfs_inexact BOOLEAN`. No other constraint.
- names: MariaDB table names are case-sensitive here (Linux,
  lower_case_table_names=0) and column names are not, as in SQLite, where
  two columns of a table can never differ only by case. MariaDB refuses names
  longer than 64 characters and names ending in a space: pgfs refuses those
  tables clearly instead of renaming them.
"""

from __future__ import annotations

from pgfs.sqlite.errors import UnsupportedFeatureError
from pgfs.sqlite.schema import Affinity, Column, TableDefinition
from pgfs.store.mariadb.connection import qualified, quote
from pgfs.store.values import (
    HIDDEN_FIELDS,
    HIDDEN_INEXACT,
    HIDDEN_RECORD,
    HIDDEN_ROWID,
    TableLayout,
    layout_of,
)

COLLATION = "utf8mb4_nopad_bin"
TEXT_TYPE = f"LONGTEXT CHARACTER SET utf8mb4 COLLATE {COLLATION}"
MARIADB_TYPES = {
    Affinity.INTEGER: "BIGINT",
    Affinity.TEXT: TEXT_TYPE,
    Affinity.REAL: "DOUBLE",
    Affinity.NUMERIC: "DOUBLE",
    Affinity.BLOB: "LONGBLOB",
}
"""MariaDB type of a column by SQLite affinity (datatype3 §3.1)."""
TABLE_OPTIONS = f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={COLLATION} ROW_FORMAT=DYNAMIC"
MAX_IDENTIFIER_CHARS = 64
COMMENT = "pgfs data table"
"""Comment on every data table: marks what `clear` may drop."""
STAGING_PREFIX = "_pgfs_s_"
"""Tables a write fills before they take their SQLite name (after its COMMIT)."""
RETIRED_PREFIX = "_pgfs_old_"
"""Tables a committed write retired: dropped after the COMMIT, or by the next write."""
MARKER_PREFIX = "_pgfs_ddl_"
"""Empty tables whose rename says that a write's renames happened (`catalog.finish_ddl`)."""
WORK_PREFIXES = (STAGING_PREFIX, RETIRED_PREFIX, MARKER_PREFIX)


def check_identifier(name: str, what: str) -> None:
    """Raise UnsupportedFeatureError for names MariaDB cannot hold unchanged."""
    if not name:
        raise UnsupportedFeatureError(f"{what} has an empty name")
    if "\x00" in name:
        raise UnsupportedFeatureError(f"{what} {name!r} contains a NUL character")
    if len(name) > MAX_IDENTIFIER_CHARS:
        raise UnsupportedFeatureError(
            f"{what} {name!r} is longer than MariaDB's {MAX_IDENTIFIER_CHARS}-character limit"
        )
    if name.endswith(" "):
        raise UnsupportedFeatureError(f"{what} {name!r} ends with a space, which MariaDB refuses")
    if any(0xD800 <= ord(c) <= 0xDFFF or ord(c) > 0xFFFF for c in name):
        raise UnsupportedFeatureError(
            f"{what} {name!r} has characters outside the Basic Multilingual Plane, "
            "which MariaDB identifiers cannot hold"
        )


def check_table(table: TableDefinition) -> TableLayout:
    """Validate every name of `table` for MariaDB; return its layout."""
    check_identifier(table.name, "table")
    if table.name.startswith(WORK_PREFIXES):
        raise UnsupportedFeatureError(
            f"table {table.name!r} starts with a prefix pgfs uses for its own work tables"
        )
    layout = layout_of(table)
    hidden = {HIDDEN_RECORD, HIDDEN_FIELDS, HIDDEN_INEXACT}
    if layout.hidden_rowid:
        hidden.add(HIDDEN_ROWID)
    for column in layout.columns:
        check_identifier(column.name, f"column of table {table.name!r}")
        if column.name.lower() in hidden:
            raise UnsupportedFeatureError(
                f"table {table.name!r} has a column named {column.name!r}, "
                "which pgfs uses for its hidden columns"
            )
    return layout


def column_type(column: Column) -> str:
    return MARIADB_TYPES[column.affinity]


def create_table(database: str, physical: str, table: TableDefinition) -> str:
    """CREATE TABLE for the data table of `table`, named `physical` (see module doc)."""
    layout = check_table(table)
    parts = []
    for index, column in enumerate(layout.columns):
        definition = f"{quote(column.name)} {column_type(column)}"
        if index == layout.ipk_index:
            definition += " NOT NULL PRIMARY KEY"
        parts.append(definition)
    parts.append(f"{quote(HIDDEN_RECORD)} LONGBLOB")
    parts.append(f"{quote(HIDDEN_FIELDS)} SMALLINT")
    parts.append(f"{quote(HIDDEN_INEXACT)} BOOLEAN")
    if layout.hidden_rowid:
        parts.append(f"{quote(HIDDEN_ROWID)} BIGINT NOT NULL PRIMARY KEY")
    kind = "WITHOUT ROWID mirror" if table.without_rowid else "rowid table"
    comment = f"{COMMENT} ({kind})"
    return (
        f"CREATE TABLE {qualified(database, physical)} ({', '.join(parts)}) {TABLE_OPTIONS}"
        f" COMMENT '{comment}'"
    )


def drop_table(database: str, name: str) -> str:
    return f"DROP TABLE IF EXISTS {qualified(database, name)}"


def identifiers(names: list[str]) -> str:
    return ", ".join(quote(n) for n in names)
