"""Schema: sqlite_schema rows, column affinity, CREATE TABLE parsing, and which
objects the store keeps as rows.

The records live in `definitions.py`, the CREATE TABLE parser in
`create_table.py`; both are re-exported here, so the rest of pgfs imports
every schema name from this module.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable

from pgfs.sqlite.create_table import parse_create_table
from pgfs.sqlite.definitions import (
    Affinity,
    Column,
    SchemaEntry,
    TableDefinition,
    affinity_of,
)
from pgfs.sqlite.errors import FormatError

__all__ = [
    "Affinity",
    "Column",
    "SchemaEntry",
    "TableDefinition",
    "affinity_of",
    "declares_without_rowid",
    "definition_of",
    "has_data_table",
    "parse_create_table",
    "table_definitions",
]


# ---------------------------------------------------------------- which objects get rows


def has_data_table(entry: SchemaEntry) -> bool:
    """True when a `sqlite_schema` row is a table whose rows the store keeps as rows.

    Only tables with real pages: not views, indexes, triggers, virtual tables
    (their shadow tables are ordinary tables and do qualify), nor SQLite's
    internal `sqlite_*` tables (sqlite_sequence, sqlite_stat1, ...), whose
    pages are kept raw.
    """
    if entry.type != "table" or not entry.rootpage or entry.rootpage <= 0:
        return False
    if entry.name.lower().startswith("sqlite_"):
        return False
    text = (entry.sql or "").lstrip().upper()
    return text.startswith("CREATE") and not text.startswith("CREATE VIRTUAL")


@functools.lru_cache(maxsize=4096)
def _cached_definition(name: str, sql: str) -> TableDefinition | None:
    try:
        definition = parse_create_table(sql)
    except FormatError:
        return None
    if definition.name != name:
        definition = dataclasses.replace(definition, name=name)
    return definition


def definition_of(entry: SchemaEntry) -> TableDefinition | None:
    """The parsed definition of a table that has a data table, else None.

    A CREATE text pgfs cannot describe (FormatError) leaves the table as raw
    pages: its rows are then not kept as rows, but nothing is lost. The name
    is the schema row's, whatever the CREATE text spells.
    """
    if not has_data_table(entry):
        return None
    return _cached_definition(entry.name, entry.sql or "")


def table_definitions(entries: Iterable[SchemaEntry]) -> dict[str, TableDefinition]:
    """Definitions of the schema's tables that have data tables, by name."""
    found: dict[str, TableDefinition] = {}
    for entry in entries:
        definition = definition_of(entry)
        if definition is not None:
            found[entry.name] = definition
    return found


_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b[\s,A-Z]*;?\s*$", re.IGNORECASE)


def declares_without_rowid(sql: str | None) -> bool:
    """Whether a CREATE TABLE text ends in WITHOUT ROWID (table options, lang_createtable)."""
    return bool(sql and _WITHOUT_ROWID.search(sql))
