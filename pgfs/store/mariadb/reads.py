"""Reads for rendering and reports: page records, rows of leaves, payloads, chains.

Every function takes an open connection and the catalog; none writes. Row
numbers and page numbers are integers and go into the statements as literals
(lists of any length, no placeholders to count); names go in backticks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import mariadb

from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.schema import TableDefinition
from pgfs.store.changeset import PageKind, PageRecord
from pgfs.store.interface import LeafRow
from pgfs.store.mariadb import ddl
from pgfs.store.mariadb.catalog import Catalog
from pgfs.store.mariadb.connection import literal, quote
from pgfs.store.values import HIDDEN_FIELDS, HIDDEN_RECORD, TableLayout, layout_of, payload_from_pg

CHUNK = 5_000
"""Row or page numbers per statement."""


def _numbers(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


def _chunks(values: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _record(row: tuple) -> PageRecord:
    pgno, kind, owner, lo, hi, seq, data = row
    return PageRecord(pgno, PageKind(kind), owner, lo, hi, seq, data)


def page_records(
    conn: mariadb.Connection, catalog: Catalog, pgnos: Iterable[int]
) -> dict[int, PageRecord]:
    wanted = sorted(set(pgnos))
    out: dict[int, PageRecord] = {}
    cur = conn.cursor()
    for chunk in _chunks(wanted):
        cur.execute(
            f"SELECT pgno, kind, owner, lo, hi, seq, data FROM {catalog.meta('pages')}"
            f" WHERE pgno IN ({_numbers(chunk)})"
        )
        out.update((row[0], _record(row)) for row in cur.fetchall())
    return out


def pages_of(conn: mariadb.Connection, catalog: Catalog, owner: str) -> list[PageRecord]:
    cur = conn.cursor()
    cur.execute(
        f"SELECT pgno, kind, owner, lo, hi, seq, data FROM {catalog.meta('pages')}"
        " WHERE owner = ? ORDER BY pgno",
        (owner,),
    )
    return [_record(row) for row in cur.fetchall()]


def first_page(pages: str | None) -> int | None:
    """The first page number of a stored chain (JSON list)."""
    if not pages:
        return None
    chain = json.loads(pages)
    return int(chain[0]) if chain else None


def leaf_rows(
    conn: mariadb.Connection,
    catalog: Catalog,
    layout: TableLayout,
    ranges: list[tuple[int, int]],
    encoding: TextEncoding | None = None,
    schema_format: int = 4,
) -> list[LeafRow]:
    """Rows with rowid in any of the inclusive `ranges` (which must not overlap). Every
    row keeps its record (`encoding` and `schema_format` are not needed)."""
    if not ranges:
        return []
    rowid = "t." + quote(layout.rowid_column or "")
    where = " OR ".join(f"{rowid} BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in ranges)
    cur = conn.cursor()
    cur.execute(
        f"SELECT {rowid}, t.{quote(HIDDEN_RECORD)}, c.pages FROM {catalog.data(layout.name)} AS t"
        f" LEFT JOIN {catalog.meta('overflow_chain')} AS c"
        f" ON c.owner = {literal(layout.name)} AND c.rowid = {rowid}"
        f" WHERE {where} ORDER BY {rowid}"
    )
    return [LeafRow(r, bytes(record), first_page(pages)) for r, record, pages in cur.fetchall()]


def leaf_rows_of(
    conn: mariadb.Connection,
    catalog: Catalog,
    requests: list[tuple[TableLayout, list[tuple[int, int]]]],
    encoding: TextEncoding | None = None,
    schema_format: int = 4,
) -> dict[str, list[LeafRow]]:
    """`leaf_rows` of several tables, one query each (the driver has no pipeline)."""
    return {
        layout.name: leaf_rows(conn, catalog, layout, ranges, encoding, schema_format)
        for layout, ranges in requests
    }


def row_payloads(
    conn: mariadb.Connection,
    catalog: Catalog,
    layout: TableLayout,
    rowids: Iterable[int],
    encoding: TextEncoding | None = None,
    schema_format: int = 4,
) -> dict[int, bytes]:
    rowid = quote(layout.rowid_column or "")
    out: dict[int, bytes] = {}
    cur = conn.cursor()
    for chunk in _chunks(sorted(set(rowids))):
        cur.execute(
            f"SELECT {rowid}, {quote(HIDDEN_RECORD)} FROM {catalog.data(layout.name)}"
            f" WHERE {rowid} IN ({_numbers(chunk)})"
        )
        out.update((r, bytes(record)) for r, record in cur.fetchall())
    return out


def overflow_chains(
    conn: mariadb.Connection, catalog: Catalog, table: str, rowids: Iterable[int]
) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    cur = conn.cursor()
    for chunk in _chunks(sorted(set(rowids))):
        cur.execute(
            f"SELECT rowid, pages FROM {catalog.meta('overflow_chain')}"
            f" WHERE owner = ? AND rowid IN ({_numbers(chunk)})",
            (table,),
        )
        out.update((r, json.loads(pages)) for r, pages in cur.fetchall())
    return out


def select_rows(catalog: Catalog, layout: TableLayout, physical: str | None = None) -> str:
    """Every row of a data table as (rowid or 0, typed columns, record, fields)."""
    names = [c.name for c in layout.columns] + [HIDDEN_RECORD, HIDDEN_FIELDS]
    table = catalog.data(physical or layout.name)
    if layout.rowid_column is None:
        return f"SELECT 0, {ddl.identifiers(names)} FROM {table}"
    rowid = quote(layout.rowid_column)
    return f"SELECT {rowid}, {ddl.identifiers(names)} FROM {table} ORDER BY {rowid}"


def table_rows(
    conn: mariadb.Connection,
    catalog: Catalog,
    definition: TableDefinition,
    encoding: TextEncoding,
    schema_format: int,
) -> Iterator[tuple[int, bytes]]:
    """Every row as (rowid, payload) in rowid order, streamed (an unbuffered cursor).

    A WITHOUT ROWID mirror yields its rows in storage order, numbered from 0.
    """
    layout = layout_of(definition)
    cur = conn.cursor(buffered=False)
    try:
        cur.execute(select_rows(catalog, layout))
        number = 0
        while batch := cur.fetchmany(2_000):
            for row in batch:
                payload = payload_from_pg(layout, row[1:], encoding, schema_format)
                yield (row[0] if layout.rowid_column is not None else number), payload
                number += 1
    finally:
        cur.close()
