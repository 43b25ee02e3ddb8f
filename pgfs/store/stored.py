"""What every backend's meta tables hold, read back the same way: the header, the
store state, and the `pgfs inspect` report built from counts a backend queried."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.header import DatabaseHeader
from pgfs.sqlite.schema import SchemaEntry, TableDefinition, table_definitions
from pgfs.store.errors import StoreError
from pgfs.store.interface import StoreState
from pgfs.store.values import TableLayout, layout_of

MetaValues = dict[str, tuple[str | None, bytes | None]]
"""The meta table: key -> (value, data)."""


def parse_header(header: bytes | None) -> DatabaseHeader | None:
    if not header:
        return None
    try:
        return DatabaseHeader.parse(header)
    except FormatError as exc:
        raise StoreError(f"the database header is not valid: {exc}") from None


def _int(meta: MetaValues, key: str) -> int:
    return int(meta.get(key, ("0", None))[0] or 0)


def state_of(meta: MetaValues, entries: Iterable[SchemaEntry]) -> StoreState:
    """The StoreState the meta rows and the sqlite_schema mirror describe."""
    entries = tuple(entries)
    header_bytes = meta.get("header", (None, None))[1]
    store_id = meta.get("store_id", ("", None))[0] or ""
    header = parse_header(header_bytes)
    if header is None:
        return StoreState.empty(store_id)
    return StoreState(
        bytes(header_bytes or b""),
        header.page_size,
        _int(meta, "page_count"),
        header.text_encoding,
        header.schema_format,
        entries,
        table_definitions(entries),
        _int(meta, "commit_seq"),
        store_id,
    )


def commit_log_entry(row: Any, tables: Any) -> dict[str, Any]:
    """One commit_log row (id, seq, committed_at, source, inserted, updated, deleted,
    pages, ms, ...) as the `pgfs inspect` report lists it; `tables` is its decoded
    tables column, which each backend reads back in its own way."""
    return {
        "id": row[0],
        "seq": row[1],
        "committed_at": row[2].isoformat(),
        "source": row[3],
        "inserted": row[4],
        "updated": row[5],
        "deleted": row[6],
        "pages": row[7],
        "ms": round(row[8], 3),
        "tables": tables,
    }


def inspect_report(
    meta: MetaValues,
    page_counts: Iterable[tuple[str | None, str, int]],
    definitions: dict[str, TableDefinition],
    table_counts: dict[str, tuple[int, int, int]],
    last_commits: list[dict[str, Any]],
) -> dict[str, Any]:
    """The `pgfs inspect` report: `page_counts` is (owner, kind, pages) per owner and kind,
    `table_counts` (rows, inexact rows, short records) per data table that exists."""
    header = parse_header(meta.get("header", (None, None))[1])
    header_fields = None
    if header is not None:
        header_fields = {
            f.name: getattr(header, f.name)
            for f in dataclasses.fields(header)
            if f.name != "reserved_expansion"
        }
        header_fields["text_encoding"] = header.text_encoding.name
    pages: dict[str, dict[str, int]] = {}
    by_kind: dict[str, int] = {}
    for owner, kind, n in page_counts:
        by_kind[kind] = by_kind.get(kind, 0) + n
        pages.setdefault(owner or "", {})[kind] = n
    tables = []
    for name, definition in sorted(definitions.items()):
        if name not in table_counts:
            continue
        rows, side, short = table_counts[name]
        tables.append(
            {
                "name": name,
                "without_rowid": definition.without_rowid,
                "rows": rows,
                "inexact_rows": side,
                "short_records": short,
                "pages": pages.get(name, {}),
            }
        )
    return {
        "format": meta.get("format", (None, None))[0],
        "page_size": header.page_size if header else None,
        "page_count": _int(meta, "page_count"),
        "commit_seq": _int(meta, "commit_seq"),
        "lease_epoch": _int(meta, "lease_epoch"),
        "lease_holder": meta.get("lease_holder", (None, None))[0],
        "header": header_fields,
        "tables": tables,
        "other_objects": {o: k for o, k in sorted(pages.items()) if o not in definitions},
        "pages_by_kind": dict(sorted(by_kind.items())),
        "page_records": sum(by_kind.values()),
        "inexact_rows": sum(t["inexact_rows"] for t in tables),
        "last_commits": last_commits,
    }


def rowid_layout(tables: dict[str, TableDefinition], table: str) -> TableLayout:
    """The layout of a table whose rows render its leaves (StoreError otherwise)."""
    definition = tables.get(table)
    if definition is None:
        raise StoreError(f"table {table!r} keeps no rows in the store")
    layout = layout_of(definition)
    if layout.rowid_column is None:
        raise StoreError(f"table {table!r} is WITHOUT ROWID: its pages are raw, not rendered")
    return layout


def _shape(table: TableDefinition) -> tuple:
    """What the data table of `table` looks like: columns, types, rowid, record order."""
    layout = layout_of(table)
    return (
        tuple((c.name, c.affinity) for c in layout.columns),
        layout.rowid_column,
        layout.record_order,
    )


def tables_after(
    tables: dict[str, TableDefinition], entries: list[SchemaEntry]
) -> dict[str, TableDefinition]:
    """The table definitions of `entries`, which a write's DDL must have produced exactly
    (`tables`), column for column: otherwise rendering would disagree with SQLite. A
    mismatch is an error in the changeset (StoreError), and nothing of it is applied."""
    expected = table_definitions(entries)
    problems = sorted(set(tables) ^ set(expected))
    for name in sorted(set(tables) & set(expected)):
        if _shape(tables[name]) != _shape(expected[name]):
            problems.append(name)
    if problems:
        raise StoreError(
            "the schema change does not match sqlite_schema for "
            + ", ".join(repr(p) for p in sorted(set(problems))[:10])
        )
    return expected
