"""`pgfs inspect`: what a MariaDB store holds, as one JSON-serialisable report."""

from __future__ import annotations

import json
from typing import Any

import mariadb

from pgfs.sqlite.schema import table_definitions
from pgfs.store.mariadb.catalog import Catalog
from pgfs.store.mariadb.connection import quote
from pgfs.store.stored import commit_log_entry, inspect_report
from pgfs.store.values import HIDDEN_FIELDS, HIDDEN_INEXACT, HIDDEN_RECORD

LAST_COMMITS = 10


def inspect(conn: mariadb.Connection, catalog: Catalog) -> dict[str, Any]:
    """Header fields, tables (rows, pages by kind, side records, short records),
    pages by kind, the lease and the last commits."""
    cur = conn.cursor()
    cur.execute(f"SELECT owner, kind, COUNT(*) FROM {catalog.meta('pages')} GROUP BY owner, kind")
    page_counts = cur.fetchall()
    definitions = table_definitions(catalog.entries(conn))
    existing = catalog.tables(conn, catalog.data_schema)
    inexact, record = quote(HIDDEN_INEXACT), quote(HIDDEN_RECORD)
    counts = {}
    for name in sorted(set(definitions) & existing):
        cur.execute(
            f"SELECT COUNT(*), COALESCE(SUM({inexact} OR ({inexact} IS NULL AND {record} IS NOT"
            f" NULL)), 0), COUNT({quote(HIDDEN_FIELDS)}) FROM {catalog.data(name)}"
        )
        rows, side, short = cur.fetchone()
        counts[name] = (int(rows), int(side), int(short))
    cur.execute(
        "SELECT id, seq, committed_at, source, inserted, updated, deleted, pages, ms, tables"
        f" FROM {catalog.meta('commit_log')} ORDER BY id DESC LIMIT {LAST_COMMITS}"
    )
    last = [commit_log_entry(row, json.loads(row[9])) for row in cur.fetchall()]
    return inspect_report(catalog.meta_values(conn), page_counts, definitions, counts, last)
