"""`pgfs inspect`: what a PostgreSQL store holds, as one JSON-serialisable report."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql

from pgfs.sqlite.schema import table_definitions
from pgfs.store.postgres.catalog import Catalog, parse_header
from pgfs.store.values import HIDDEN_FIELDS, HIDDEN_INEXACT, HIDDEN_RECORD

LAST_COMMITS = 10


def inspect(conn: psycopg.Connection, catalog: Catalog) -> dict[str, Any]:
    """Header fields, tables (rows, pages by kind, side records, short records),
    pages by kind, the lease and the last commits."""
    meta = catalog.meta_values(conn)
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
    for owner, kind, n in conn.execute(
        sql.SQL("SELECT owner, kind, count(*) FROM {} GROUP BY owner, kind").format(
            catalog.meta("pages")
        )
    ):
        by_kind[kind] = by_kind.get(kind, 0) + n
        pages.setdefault(owner or "", {})[kind] = n
    definitions = table_definitions(catalog.entries(conn))
    existing = catalog.relations(conn, catalog.data_schema)
    tables = []
    side_total = 0
    for name, definition in sorted(definitions.items()):
        if name not in existing:
            continue
        rows, side, short = conn.execute(
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
        side_total += side
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
    raw_owners = {o: kinds for o, kinds in sorted(pages.items()) if o not in definitions}
    return {
        "format": meta.get("format", (None, None))[0],
        "page_size": header.page_size if header else None,
        "page_count": int(meta.get("page_count", ("0", None))[0] or 0),
        "commit_seq": int(meta.get("commit_seq", ("0", None))[0] or 0),
        "lease_epoch": int(meta.get("lease_epoch", ("0", None))[0] or 0),
        "lease_holder": meta.get("lease_holder", (None, None))[0],
        "header": header_fields,
        "tables": tables,
        "other_objects": raw_owners,
        "pages_by_kind": dict(sorted(by_kind.items())),
        "page_records": sum(by_kind.values()),
        "inexact_rows": side_total,
        "last_commits": _last_commits(conn, catalog),
    }


def _last_commits(conn: psycopg.Connection, catalog: Catalog) -> list[dict[str, Any]]:
    return [
        {
            "id": row[0],
            "seq": row[1],
            "committed_at": row[2].isoformat(),
            "source": row[3],
            "inserted": row[4],
            "updated": row[5],
            "deleted": row[6],
            "pages": row[7],
            "ms": round(row[8], 3),
            "tables": row[9],
        }
        for row in conn.execute(
            sql.SQL(
                "SELECT id, seq, committed_at, source, inserted, updated, deleted, pages, ms,"
                " tables FROM {} ORDER BY id DESC LIMIT %s"
            ).format(catalog.meta("commit_log")),
            (LAST_COMMITS,),
        )
    ]
