"""`pgfs inspect`: what a PostgreSQL store holds, as one JSON-serialisable report."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgfs.sqlite.schema import table_definitions
from pgfs.store.postgres.catalog import Catalog
from pgfs.store.stored import commit_log_entry, inspect_report
from pgfs.store.values import HIDDEN_FIELDS, HIDDEN_INEXACT, HIDDEN_RECORD

LAST_COMMITS = 10


def inspect(conn: psycopg.Connection, catalog: Catalog) -> dict[str, Any]:
    """Header fields, tables (rows, pages by kind, side records, short records),
    pages by kind, the lease and the last commits."""
    page_counts = conn.execute(
        sql.SQL("SELECT owner, kind, count(*) FROM {} GROUP BY owner, kind").format(
            catalog.meta("pages")
        )
    ).fetchall()
    definitions = table_definitions(catalog.entries(conn))
    existing = catalog.tables(conn, catalog.data_schema)
    counts = {}
    for name in sorted(set(definitions) & existing):
        counts[name] = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE {inexact} OR ({inexact} IS NULL AND"
                " {record} IS NOT NULL)), count({fields}) FROM {table}"
            ).format(
                inexact=sql.Identifier(HIDDEN_INEXACT),
                record=sql.Identifier(HIDDEN_RECORD),
                fields=sql.Identifier(HIDDEN_FIELDS),
                table=catalog.data(name),
            )
        ).fetchone() or (0, 0, 0)
    return inspect_report(
        catalog.meta_values(conn), page_counts, definitions, counts, _last_commits(conn, catalog)
    )


def _last_commits(conn: psycopg.Connection, catalog: Catalog) -> list[dict[str, Any]]:
    return [
        commit_log_entry(row, row[9])
        for row in conn.execute(
            sql.SQL(
                "SELECT id, seq, committed_at, source, inserted, updated, deleted, pages, ms,"
                " tables FROM {} ORDER BY id DESC LIMIT %s"
            ).format(catalog.meta("commit_log")),
            (LAST_COMMITS,),
        )
    ]
