"""The commit writer: the parts of one write, applied in one PostgreSQL transaction.

Two ways to send the same statements (`Writer` does not know which):

- *pipelined* (`PipelinedStatements`): a small commit with no schema change
  goes out in one pipeline: BEGIN, the lease fence, every row, chain, page
  and meta statement, the commit-log row, COMMIT — one network round trip.
  Nothing is read back: the emulator already knows which rows are new, so
  upserts need no lookups and the counts come from the changeset.
- *streamed* (`DirectStatements`): big parts (an import, a VACUUM), schema
  changes and `clear` run statement by statement, big row and page sets by
  binary COPY, each part applied as it arrives so memory stays bounded.

Either way the first statement after BEGIN is `fence(epoch)`: a writer that
lost its lease can never commit, and the commit-log row carries the commit
id, so a commit whose answer was lost can be looked up (README "Failures").
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.schema import SchemaEntry, TableDefinition
from pgfs.store.changeset import Changeset, PageRecord, TableRows
from pgfs.store.commit import PAGE_COLUMNS, WriteContext, WriterFrame, page_rows
from pgfs.store.errors import StoreError
from pgfs.store.postgres import ddl
from pgfs.store.postgres.catalog import Catalog
from pgfs.store.values import (
    HIDDEN_FIELDS,
    HIDDEN_RECORD,
    TableLayout,
    layout_of,
    payload_from_pg,
    to_pg_row,
)

_STATEMENTS: dict[tuple, str] = {}
"""Statement texts by (catalog, shape): see `Writer._sql`."""
SMALL_BATCH = 256
"""Up to this many rows (or pages) per statement kind: executemany; more: binary COPY."""
DELETE_CHUNK = 50_000
ANALYZE_ROWS = 10_000
FETCH_SIZE = 2_000
PAGE_TYPES = ["int8", "text", "text", "int8", "int8", "int4", "bytea"]


class Statements(Protocol):
    """Where the writer's statements go: executed now, or queued in a pipeline."""

    bulk: bool
    """Whether big row and page sets may use COPY (not in a pipeline)."""

    def execute(self, query: sql.Composable | str, params: Any = None) -> None: ...

    def executemany(self, query: sql.Composable | str, rows: Sequence[Sequence[Any]]) -> None: ...

    def scalar(self, query: sql.Composable, params: Any = None) -> Any:
        """Run a query now and return its first column of the first row."""
        ...


class DirectStatements:
    """Statements executed one by one (big writes, schema changes)."""

    bulk = True

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, query: sql.Composable | str, params: Any = None) -> None:
        self.conn.execute(query, params)

    def executemany(self, query: sql.Composable | str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(query, rows)

    def scalar(self, query: sql.Composable, params: Any = None) -> Any:
        row = self.conn.execute(query, params).fetchone()
        return row[0] if row else None


class PipelinedStatements(DirectStatements):
    """Statements queued in a pipeline: sent together, answered at the sync."""

    bulk = False

    def scalar(self, query: sql.Composable, params: Any = None) -> Any:
        raise StoreError("internal error: a read inside a pipelined commit")


def _on_conflict_update(columns: list[str], key: list[str]) -> sql.Composed:
    """ON CONFLICT (key) DO UPDATE SET every other column to the incoming value."""
    updates = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in columns
        if c not in key
    )
    return sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(ddl.identifiers(key), updates)


def is_small(part: Changeset) -> bool:
    """A part that goes out in one pipeline: no DDL, no wholesale replacement, few rows."""
    if part.schema_entries is not None or not part.schema.is_empty():
        return False
    if any(rows.replace_all for rows in part.rows.values()):
        return False
    if any(len(rows.inserted) + len(rows.updated) > SMALL_BATCH for rows in part.rows.values()):
        return False
    return len(part.pages) <= 4 * SMALL_BATCH and len(part.chains) <= SMALL_BATCH


class Writer(WriterFrame):
    """Applies the parts of one write; the caller owns the transaction."""

    catalog: Catalog
    _names = itertools.count(1)

    def __init__(
        self,
        conn: psycopg.Connection,
        out: Statements,
        context: WriteContext,
        tables: dict[str, TableDefinition],
    ) -> None:
        super().__init__(context, tables)
        self.conn = conn
        self.out = out
        self._refilled: set[str] = set()
        self._bulk_loaded: dict[tuple[str, str], int] = {}
        self._pages_written = bytearray()
        """1 at the page numbers this write has written (see `_pages_are_new`)."""
        self._pages_started_empty: bool | None = None

    # -------------------------------------------------------------- the frame

    def fence(self) -> None:
        query = self._sql(
            ("fence",), lambda: sql.SQL("SELECT {}(%s)").format(self.catalog.meta("fence"))
        )
        self.out.execute(query, (self.context.epoch,))

    def finish(self) -> None:
        """The meta rows of the last part, ANALYZE after bulk loads, the commit-log row."""
        if self._last is None:
            raise StoreError("a write with no parts")
        self._apply_meta(self._last)
        self._analyze()
        self._log_commit()

    # -------------------------------------------------------------- helpers

    def _sql(self, key: tuple, build: Callable[[], sql.Composable]) -> str:
        """The text of a statement, composed once per store and shape: composing
        identifiers costs more than a small commit's own work."""
        full = (self.catalog, *key)
        text = _STATEMENTS.get(full)
        if text is None:
            text = _STATEMENTS[full] = build().as_string(None)
        return text

    def _temp_name(self, prefix: str) -> str:
        return f"_pgfs_{prefix}_{os.getpid()}_{next(self._names)}"

    def _count_bulk(self, schema: str, table: str, rows: int) -> None:
        key = (schema, table)
        self._bulk_loaded[key] = self._bulk_loaded.get(key, 0) + rows

    def _analyze(self) -> None:
        """ANALYZE tables that took many rows by COPY, so that the planner's first
        queries after an import or a VACUUM see their real sizes. A small sample
        (statistics target 10) tells sizes as well as the default, in a tenth of the
        time; autovacuum refines it later."""
        loaded = [
            (schema, name)
            for (schema, name), rows in sorted(self._bulk_loaded.items())
            if rows >= ANALYZE_ROWS
            and not (schema == self.catalog.data_schema and name not in self.tables)
        ]
        if not loaded:
            return
        self.out.execute("SET LOCAL default_statistics_target = 10")
        for schema, name in loaded:
            self.out.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))

    def clear(self) -> None:
        """Drop the data tables (those of the mirror, and any table carrying the pgfs
        comment) and empty the meta tables, keeping the commit log and the lease."""
        marked = {
            row[0]
            for row in self.conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'"
                " AND starts_with(coalesce(obj_description(c.oid, 'pg_class'), ''), %s)",
                (self.catalog.data_schema, ddl.COMMENT),
            )
        }
        for name in sorted(set(self.tables) | marked):
            self.out.execute(ddl.drop_table(self.catalog.data_schema, name))
        self.tables.clear()
        self.entries = []
        self._refilled.clear()
        for table in ("pages", "overflow_chain", "sqlite_schema"):
            self.out.execute(sql.SQL("TRUNCATE {}").format(self.catalog.meta(table)))
        self._pages_written = bytearray()
        self._pages_started_empty = True
        self.out.execute(
            sql.SQL(
                "DELETE FROM {} WHERE key NOT IN ('format', 'lease_epoch', 'lease_holder',"
                " 'commit_seq', 'store_id')"
            ).format(self.catalog.meta("meta"))
        )

    # -------------------------------------------------------------- DDL

    def _drop_table(self, name: str) -> None:
        self.out.execute(ddl.drop_table(self.catalog.data_schema, name))

    def _create_table(self, definition: TableDefinition) -> None:
        schema = self.catalog.data_schema
        self.out.execute(ddl.drop_table(schema, definition.name))
        self._delete_chains_of(definition.name)
        self.out.execute(ddl.create_table(schema, definition))
        self.out.execute(ddl.comment_table(schema, definition))

    def _rename(self, old: str, new: str) -> None:
        definition = self.tables.pop(old, None)
        if definition is not None:
            self.out.execute(ddl.rename_table(self.catalog.data_schema, old, new))
            self.tables[new] = dataclasses.replace(definition, name=new)
        for table in ("pages", "overflow_chain"):
            self.out.execute(
                sql.SQL("UPDATE {} SET owner = %s WHERE owner = %s").format(
                    self.catalog.meta(table)
                ),
                (new, old),
            )

    def _apply_alter(
        self, old: TableDefinition, new: TableDefinition, encoding: TextEncoding, fmt: int
    ) -> None:
        name = new.name
        if name not in self.tables:
            return
        ddl.check_table(new)
        plan = ddl.alter_plan(old, new)
        schema = self.catalog.data_schema
        if plan is None:
            self._rewrite(old, new, encoding, fmt)
        else:
            self._rename_columns(name, plan.renames)
            for column in plan.dropped:
                self.out.execute(ddl.drop_column(schema, name, column))
            if plan.added:
                for column in plan.added:
                    self.out.execute(ddl.add_column(schema, name, column))
                # Rows written before ADD COLUMN keep their short records
                # (SQLite does not rewrite them): remember their field count.
                self.out.execute(
                    sql.SQL("UPDATE {} SET {} = %s WHERE {} IS NULL").format(
                        self.catalog.data(name),
                        sql.Identifier(HIDDEN_FIELDS),
                        sql.Identifier(HIDDEN_FIELDS),
                    ),
                    (layout_of(old).field_count,),
                )
        self.tables[name] = new

    def _rename_columns(self, table: str, renames: list[tuple[str, str]]) -> None:
        schema = self.catalog.data_schema
        olds = {old for old, _ in renames}
        if any(new in olds for _, new in renames):
            parked = [(old, self._temp_name("column")) for old, _ in renames]
            for old, temp in parked:
                self.out.execute(ddl.rename_column(schema, table, old, temp))
            renames = [(temp, new) for (_, temp), (_, new) in zip(parked, renames, strict=True)]
        for old, new in renames:
            self.out.execute(ddl.rename_column(schema, table, old, new))

    def _rewrite(
        self, old: TableDefinition, new: TableDefinition, encoding: TextEncoding, fmt: int
    ) -> None:
        """Rebuild a data table whose definition changed beyond RENAME/ADD/DROP
        COLUMN: every row's record is rendered under the old definition and
        stored again under the new one (still lossless)."""
        schema = self.catalog.data_schema
        parked = self._temp_name("rewrite")
        self.out.execute(ddl.rename_table(schema, new.name, parked))
        self.out.execute(ddl.create_table(schema, new))
        self.out.execute(ddl.comment_table(schema, new))
        before = layout_of(old)
        rowid = sql.Identifier(before.rowid_column) if before.rowid_column else sql.SQL("0")
        names = [c.name for c in before.columns] + [HIDDEN_RECORD, HIDDEN_FIELDS]
        query = sql.SQL("SELECT {}, {} FROM {}").format(
            rowid, ddl.identifiers(names), self.catalog.data(parked)
        )
        after = layout_of(new)
        insert = self._upsert_query(new.name, after)
        with self.conn.cursor(name=self._temp_name("cursor"), binary=True) as cur:
            cur.execute(query)
            while batch := cur.fetchmany(FETCH_SIZE):
                rows = [
                    to_pg_row(
                        after,
                        row[0],
                        payload_from_pg(before, row[1:], encoding, fmt),
                        encoding,
                        fmt,
                    )
                    for row in batch
                ]
                with self.conn.cursor() as writer:
                    writer.executemany(insert, rows)
        self.out.execute(ddl.drop_table(schema, parked))

    # -------------------------------------------------------------- rows

    def _upsert_query(self, table: str, layout: TableLayout) -> str:
        return self._sql(("upsert", table, layout), lambda: self._compose_upsert(table, layout))

    def _compose_upsert(self, table: str, layout: TableLayout) -> sql.Composed:
        names = layout.column_names()
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self.catalog.data(table),
            ddl.identifiers(names),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
        )
        if layout.rowid_column is None:
            return query
        return sql.SQL("{} {}").format(query, _on_conflict_update(names, [layout.rowid_column]))

    def _copy_rows(
        self,
        target: sql.Composable,
        definition: TableDefinition,
        items: Iterable[tuple[int, bytes]],
        count: int,
        encoding: TextEncoding,
        fmt: int,
    ) -> None:
        """Binary COPY of converted rows: streams, one row in memory at a time."""
        layout = layout_of(definition)
        self._count_bulk(self.catalog.data_schema, definition.name, count)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            target, ddl.identifiers(layout.column_names())
        )
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(ddl.copy_types(layout))
            for rowid, payload in items:
                copy.write_row(to_pg_row(layout, rowid, payload, encoding, fmt))

    def _apply_rows(
        self, definition: TableDefinition, rows: TableRows, encoding: TextEncoding, fmt: int
    ) -> None:
        name = definition.name
        layout = layout_of(definition)
        target = self.catalog.data(name)
        if layout.rowid_column is None or rows.replace_all:
            before = 0
            if layout.rowid_column is None:
                # A mirror is refilled once per write; later parts append to it.
                if name not in self._refilled:
                    self.out.execute(sql.SQL("DELETE FROM {}").format(target))
                    self._refilled.add(name)
            elif name not in self._refilled:
                before = self.out.scalar(sql.SQL("SELECT count(*) FROM {}").format(target)) or 0
                self.out.execute(sql.SQL("TRUNCATE {}").format(target))
                self._delete_chains_of(name)
                self._refilled.add(name)
            items = sorted(rows.inserted.items())
            self._insert_rows(target, definition, layout, items, encoding, fmt)
            self.stats.count(name, inserted=len(items), deleted=before)
            return
        rowid = sql.Identifier(layout.rowid_column)
        if rows.deleted:
            doomed = sorted(rows.deleted)
            for start in range(0, len(doomed), DELETE_CHUNK):
                chunk = doomed[start : start + DELETE_CHUNK]
                self.out.execute(
                    self._sql(
                        ("delete", name, layout),
                        lambda: sql.SQL("DELETE FROM {} WHERE {} = ANY(%s::bigint[])").format(
                            target, rowid
                        ),
                    ),
                    (chunk,),
                )
                self.out.execute(
                    self._sql(
                        ("delete chains",),
                        lambda: sql.SQL(
                            "DELETE FROM {} WHERE owner = %s AND rowid = ANY(%s::bigint[])"
                        ).format(self.catalog.meta("overflow_chain")),
                    ),
                    (name, chunk),
                )
        items = sorted({**rows.inserted, **rows.updated}.items())
        if items:
            if len(items) > SMALL_BATCH and self.out.bulk:
                self._upsert_staged(definition, items, encoding, fmt)
            else:
                self.out.executemany(
                    self._upsert_query(name, layout),
                    [to_pg_row(layout, r, p, encoding, fmt) for r, p in items],
                )
        self.stats.count(
            name, inserted=len(rows.inserted), updated=len(rows.updated), deleted=len(rows.deleted)
        )

    def _insert_rows(
        self,
        target: sql.Composable,
        definition: TableDefinition,
        layout: TableLayout,
        items: list[tuple[int, bytes]],
        encoding: TextEncoding,
        fmt: int,
    ) -> None:
        if len(items) > SMALL_BATCH and self.out.bulk:
            self._copy_rows(target, definition, items, len(items), encoding, fmt)
        elif items:
            self.out.executemany(
                self._upsert_query(definition.name, layout),
                [to_pg_row(layout, r, p, encoding, fmt) for r, p in items],
            )

    def _upsert_staged(
        self,
        definition: TableDefinition,
        items: list[tuple[int, bytes]],
        encoding: TextEncoding,
        fmt: int,
    ) -> None:
        """COPY into a temporary table, then one INSERT ... ON CONFLICT DO UPDATE."""
        layout = layout_of(definition)
        assert layout.rowid_column is not None
        target = self.catalog.data(definition.name)
        stage = sql.Identifier(self._temp_name("stage"))
        names = layout.column_names()
        self.out.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target)
        )
        self._copy_rows(stage, definition, items, len(items), encoding, fmt)
        self._upsert_from_stage(target, stage, names, [layout.rowid_column])

    # -------------------------------------------------------------- chains, pages, meta

    def _delete_chains_of(self, owner: str) -> None:
        self.out.execute(
            sql.SQL("DELETE FROM {} WHERE owner = %s").format(self.catalog.meta("overflow_chain")),
            (owner,),
        )

    def _upsert_meta_table(
        self,
        table: str,
        columns: list[str],
        key: list[str],
        types: list[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """INSERT ... ON CONFLICT DO UPDATE into a meta table: for a few rows one
        statement over arrays (`unnest`, one per column, sent binary: a commit's page
        records cost the server one statement, not one each), or executemany where a
        column is itself an array; binary COPY into a staging table for many. `rows`
        hold each key once (ON CONFLICT may not touch a row twice in one statement).
        The statements of few rows are composed once (`_sql`): they are on every
        commit's path."""
        if not rows:
            return
        target = self.catalog.meta(table)
        if len(rows) > SMALL_BATCH and self.out.bulk:
            self._copy_upsert_meta_rows(table, columns, key, types, rows)
        elif not any(t.endswith("[]") for t in types):
            statement = self._sql(
                ("meta upsert arrays", table),
                lambda: sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}) {}").format(
                    target,
                    ddl.identifiers(columns),
                    sql.SQL(", ").join(
                        sql.SQL("{}::{}[]").format(sql.Placeholder(format="b"), sql.SQL(t))
                        for t in types
                    ),
                    _on_conflict_update(columns, key),
                ),
            )
            self.out.execute(statement, [list(column) for column in zip(*rows, strict=True)])
        else:
            statement = self._sql(
                ("meta upsert", table),
                lambda: sql.SQL("INSERT INTO {} ({}) VALUES ({}) {}").format(
                    target,
                    ddl.identifiers(columns),
                    sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    _on_conflict_update(columns, key),
                ),
            )
            self.out.executemany(statement, rows)

    def _copy_upsert_meta_rows(
        self,
        table: str,
        columns: list[str],
        key: list[str],
        types: list[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Many rows of a meta table: binary COPY into a staging table, then one upsert."""
        target = self.catalog.meta(table)
        stage = sql.Identifier(self._temp_name("stage"))
        self.out.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                stage, ddl.identifiers(columns), target
            )
        )
        self._copy_meta_rows(table, stage, columns, types, rows)
        self._upsert_from_stage(target, stage, columns, key)

    def _upsert_from_stage(
        self, target: sql.Composable, stage: sql.Composable, columns: list[str], key: list[str]
    ) -> None:
        """Upsert every row of the staging table into `target`, then drop the stage."""
        self.out.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(
                target,
                ddl.identifiers(columns),
                ddl.identifiers(columns),
                stage,
                _on_conflict_update(columns, key),
            )
        )
        self.out.execute(sql.SQL("DROP TABLE {}").format(stage))

    def _apply_chains(self, chains: dict[tuple[str, int], list[int]]) -> None:
        cleared = [(owner, rowid) for (owner, rowid), pages in chains.items() if not pages]
        if cleared:
            self.out.execute(
                sql.SQL(
                    "DELETE FROM {} c USING unnest(%s::text[], %s::bigint[]) AS d(owner, rowid)"
                    " WHERE c.owner = d.owner AND c.rowid = d.rowid"
                ).format(self.catalog.meta("overflow_chain")),
                ([o for o, _ in cleared], [r for _, r in cleared]),
            )
        rows = [(owner, rowid, list(pages)) for (owner, rowid), pages in chains.items() if pages]
        self._upsert_meta_table(
            "overflow_chain",
            ["owner", "rowid", "pages"],
            ["owner", "rowid"],
            ["text", "int8", "int8[]"],
            rows,
        )

    def _copy_meta_rows(
        self,
        table: str,
        target: sql.Composable,
        columns: list[str],
        types: list[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Binary COPY of rows of the meta `table` into `target` (it or its stage)."""
        self._count_bulk(self.catalog.meta_schema, table, len(rows))
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            target, ddl.identifiers(columns)
        )
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def _pages_are_new(self, pgnos: list[int]) -> bool:
        """Whether none of `pgnos` can already be in the pages table: it was empty
        when this write first looked (or `clear` emptied it) and no earlier part of
        this write wrote any of them. Then the rows go straight in by COPY, without
        the staging table and the upsert (an import writes each page once). In such a
        write every page number written is remembered, whichever way it went; other
        writes remember nothing (a small commit's cost must not grow with the file)."""
        if not self.out.bulk:  # a pipelined write is small: it never copies
            return False
        if self._pages_started_empty is None:
            query = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(
                self.catalog.meta("pages")
            )
            self._pages_started_empty = bool(self.out.scalar(query))
        if not self._pages_started_empty:
            return False
        written = self._pages_written
        top = max(pgnos, default=0)
        if top >= len(written):
            written.extend(bytes(top + 1 - len(written)))
        new = not any(written[pgno] for pgno in pgnos)
        for pgno in pgnos:
            written[pgno] = 1
        return new and len(pgnos) > SMALL_BATCH

    def _apply_pages(self, pages: list[PageRecord], removed_from: int | None) -> int:
        rows = page_rows(pages)
        if self._pages_are_new([row[0] for row in rows]):
            target = self.catalog.meta("pages")
            self._copy_meta_rows("pages", target, PAGE_COLUMNS, PAGE_TYPES, rows)
        else:
            self._upsert_meta_table("pages", PAGE_COLUMNS, ["pgno"], PAGE_TYPES, rows)
        if removed_from is not None:
            self.out.execute(
                sql.SQL("DELETE FROM {} WHERE pgno >= %s").format(self.catalog.meta("pages")),
                (removed_from,),
            )
        return len(rows)

    def _apply_schema_mirror(self, entries: list[SchemaEntry]) -> None:
        self.out.execute(sql.SQL("DELETE FROM {}").format(self.catalog.meta("sqlite_schema")))
        self.out.executemany(
            sql.SQL(
                "INSERT INTO {} (position, type, name, tbl_name, rootpage, sql)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
            ).format(self.catalog.meta("sqlite_schema")),
            [
                (position, e.type, e.name, e.tbl_name, e.rootpage, e.sql)
                for position, e in enumerate(entries)
            ],
        )

    def _apply_meta(self, part: Changeset) -> None:
        values = self._meta_rows(part)
        self.out.execute(
            self._sql(
                ("meta",),
                lambda: sql.SQL(
                    "INSERT INTO {} (key, value, data) SELECT * FROM unnest(%s::text[],"
                    " %s::text[], %s::bytea[]) ON CONFLICT (key) DO UPDATE SET"
                    " value = EXCLUDED.value, data = EXCLUDED.data"
                ).format(self.catalog.meta("meta")),
            ),
            ([v[0] for v in values], [v[1] for v in values], [v[2] for v in values]),
        )

    def _log_commit(self) -> None:
        self.out.execute(
            self._sql(
                ("log",),
                lambda: sql.SQL(
                    "INSERT INTO {} (commit_id, seq, epoch, source, inserted, updated, deleted,"
                    " pages, ms, tables) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(self.catalog.meta("commit_log")),
            ),
            self._log_row(self.context.commit_id, Jsonb(self.stats.per_table())),
        )
