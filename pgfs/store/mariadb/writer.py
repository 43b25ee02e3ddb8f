"""The commit writer: the parts of one write, applied in one InnoDB transaction.

The first statement of the transaction reads the lease epoch with a share lock
(`fence`): a writer that lost its lease can never commit, and a takeover (which
updates the epoch) waits for a commit in flight. The commit-log row carries the
commit id, so a commit whose answer was lost can be looked up.

No DDL runs inside the transaction (MariaDB would commit it implicitly). A
table the write creates, rebuilds (ALTER, a wholesale replacement) or fills
from scratch is created beforehand under a work name, on a separate
connection (`side`), and filled inside the transaction; renames and drops are
owed DDL, recorded in `ddl_pending` inside the transaction and run after the
COMMIT (`catalog.finish_ddl`, README "What the server holds"). While the
write runs, `physical` says which table holds each SQLite table's rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import secrets
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any

import mariadb

from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.schema import Affinity, SchemaEntry, TableDefinition
from pgfs.store.alter import alter_plan
from pgfs.store.changeset import Changeset, PageRecord, TableRows
from pgfs.store.commit import PAGE_COLUMNS, WriteContext, WriterFrame, page_rows
from pgfs.store.errors import StoreError
from pgfs.store.mariadb import ddl, reads
from pgfs.store.mariadb.catalog import Catalog, DdlSteps
from pgfs.store.mariadb.connection import literal, plain_identifier, quote
from pgfs.store.values import (
    HIDDEN_FIELDS,
    HIDDEN_INEXACT,
    HIDDEN_RECORD,
    HIDDEN_ROWID,
    TableLayout,
    layout_of,
    payload_from_pg,
    to_pg_row,
)

BATCH_ROWS = 1_000
BATCH_BYTES = 4 << 20
"""Rows per executemany, and about how many bytes (under the server's max_allowed_packet)."""
EXACT_INT = 1 << 53
KEPT_META_KEYS = ("format", "lease_epoch", "lease_holder", "commit_seq", "store_id")


class FenceError(StoreError):
    """The store's lease epoch is not this writer's: another writer took over."""


@lru_cache(maxsize=4096)
def _double_indices(layout: TableLayout) -> tuple[int, ...]:
    doubles = (Affinity.REAL, Affinity.NUMERIC)
    return tuple(i for i, c in enumerate(layout.columns) if c.affinity in doubles)


def to_row(
    layout: TableLayout, rowid: int, payload: bytes, encoding: TextEncoding, fmt: int
) -> list[Any]:
    """`values.to_pg_row` for MariaDB. REAL and NUMERIC columns are DOUBLE, which holds no
    infinity and no integer beyond 2^53 exactly: such a value makes its row inexact (a
    typed NULL for an infinity; the record is kept either way)."""
    row = to_pg_row(layout, rowid, payload, encoding, fmt)
    flag = len(layout.columns) + 2
    for index in _double_indices(layout):
        value = row[index]
        if isinstance(value, Decimal):
            number = float(value)
            row[index] = number
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int) and exponent >= 0 and abs(value) > EXACT_INT:
                row[flag] = True
        elif isinstance(value, float) and not math.isfinite(value):
            row[index] = None
            row[flag] = True
    return row


def _batches(rows: Iterable[list[Any] | tuple[Any, ...]]) -> Iterable[list[Any]]:
    """Rows in groups of at most BATCH_ROWS and about BATCH_BYTES."""
    batch: list[Any] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += sum(len(v) for v in row if isinstance(v, bytes | str))
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class Writer(WriterFrame):
    """Applies the parts of one write; the caller owns the transaction."""

    catalog: Catalog
    _names = itertools.count(1)

    def __init__(
        self,
        conn: mariadb.Connection,
        side: Callable[[], mariadb.Connection],
        context: WriteContext,
        tables: dict[str, TableDefinition],
    ) -> None:
        super().__init__(context, tables)
        self.conn = conn
        self.cur = conn.cursor()
        self.side = side
        self.physical = {name: name for name in tables}
        """SQLite table name -> the data table holding its rows in this write."""
        self.originals = set(tables)
        """Data tables that exist under their own name at the start."""
        self.fresh: set[str] = set()
        """Names whose rows are in a work table this write created."""
        self.abandoned: list[str] = []
        self.created: list[str] = []
        self._refilled: set[str] = set()
        self._tag = f"{context.seq}_{secrets.token_hex(4)}_"
        self.steps = DdlSteps()

    # -------------------------------------------------------------- the frame

    def fence(self) -> None:
        self.cur.execute(
            f"SELECT value FROM {self.catalog.meta('meta')} WHERE `key` = 'lease_epoch'"
            " LOCK IN SHARE MODE"
        )
        row = self.cur.fetchone()
        current = int(row[0]) if row and row[0] is not None else None
        if current != self.context.epoch:
            raise FenceError(
                f"pgfs lease lost: this writer holds epoch {self.context.epoch}, the store is at"
                f" epoch {current} (another mount took over)"
            )

    def finish(self) -> None:
        """The meta rows of the last part, the owed DDL, the commit-log row."""
        if self._last is None:
            raise StoreError("a write with no parts")
        self._apply_meta(self._last)
        self.steps = self._owed_ddl()
        if not self.steps.is_empty():
            self.cur.execute(
                f"INSERT INTO {self.catalog.meta('ddl_pending')} (seq, steps) VALUES (?, ?)",
                (self.context.seq, self.steps.to_json()),
            )
        self._log_commit()

    def _owed_ddl(self) -> DdlSteps:
        """One RENAME TABLE: tables leaving their name first (to retired names), then
        tables taking theirs; then drops of what was retired or abandoned."""
        vacated = sorted(o for o in self.originals if self.physical.get(o) != o)
        retired = {o: self._work_name(ddl.RETIRED_PREFIX) for o in vacated}
        renames = [(o, retired[o]) for o in vacated]
        taken = set()
        for name, table in sorted(self.physical.items()):
            if table != name:
                source = retired.get(table, table)
                renames.append((source, name))
                taken.add(source)
        drops = [t for t in retired.values() if t not in taken] + self.abandoned
        if not renames:
            return DdlSteps(drops=drops)
        marker = self._work_name(ddl.MARKER_PREFIX)
        self._side_execute(
            f"CREATE TABLE {self.catalog.data(marker + 'a')} (x INT) {ddl.TABLE_OPTIONS}"
        )
        self.created.append(marker + "a")
        return DdlSteps(renames, drops, marker)

    # -------------------------------------------------------------- helpers

    def _work_name(self, prefix: str) -> str:
        return f"{prefix}{self._tag}{next(self._names)}"

    def _temp_name(self, prefix: str) -> str:
        return self._work_name(f"_pgfs_{prefix}_")

    def _side_execute(self, statement: str) -> None:
        """DDL outside the transaction (it would commit the transaction implicitly)."""
        cur = self.side().cursor()
        try:
            cur.execute(statement)
        finally:
            cur.close()

    def _staging(self, definition: TableDefinition) -> str:
        """A new, empty data table for `definition` under a work name."""
        name = self._work_name(ddl.STAGING_PREFIX)
        self._side_execute(ddl.create_table(self.catalog.data_schema, name, definition))
        self.created.append(name)
        return name

    def _replace_physical(self, name: str, table: str) -> None:
        """`name`'s rows now live in the work table `table`."""
        if name in self.fresh:
            self.abandoned.append(self.physical[name])
        self.physical[name] = table
        self.fresh.add(name)

    def _target(self, name: str) -> str:
        return self.catalog.data(self.physical[name])

    def _executemany(self, statement: str, rows: Iterable[Any]) -> None:
        for batch in _batches(rows):
            self.cur.executemany(statement, batch)

    def clear(self) -> None:
        """Retire the data tables (the mirror's, and any carrying the pgfs comment) and
        empty the meta tables, keeping the commit log and the lease."""
        marked = {
            name
            for name in self.catalog.marked_tables(self.conn)
            if not name.startswith(ddl.WORK_PREFIXES)
        }
        self.originals |= marked
        for name in list(self.physical):
            if name in self.fresh:
                self.abandoned.append(self.physical[name])
        self.physical.clear()
        self.fresh.clear()
        self.tables.clear()
        self.entries = []
        self._refilled.clear()
        for table in ("pages", "overflow_chain", "sqlite_schema"):
            self.cur.execute(f"DELETE FROM {self.catalog.meta(table)}")
        keys = ", ".join(f"'{k}'" for k in KEPT_META_KEYS)
        self.cur.execute(f"DELETE FROM {self.catalog.meta('meta')} WHERE `key` NOT IN ({keys})")

    # -------------------------------------------------------------- DDL

    def _drop_table(self, name: str) -> None:
        if name in self.fresh:
            self.abandoned.append(self.physical[name])
        self.physical.pop(name, None)
        self.fresh.discard(name)

    def _create_table(self, definition: TableDefinition) -> None:
        ddl.check_table(definition)
        self._delete_chains_of(definition.name)
        if definition.name not in self.fresh:
            self.physical.pop(definition.name, None)
        self._replace_physical(definition.name, self._staging(definition))
        self._refilled.add(definition.name)

    def _rename(self, old: str, new: str) -> None:
        definition = self.tables.pop(old, None)
        if definition is not None:
            ddl.check_identifier(new, "table")
            self.physical[new] = self.physical.pop(old)
            if old in self.fresh:
                self.fresh.discard(old)
                self.fresh.add(new)
            if old in self._refilled:
                self._refilled.discard(old)
                self._refilled.add(new)
            self.tables[new] = dataclasses.replace(definition, name=new)
        for table in ("pages", "overflow_chain"):
            self.cur.execute(
                f"UPDATE {self.catalog.meta(table)} SET owner = ? WHERE owner = ?", (new, old)
            )

    def _apply_alter(
        self, old: TableDefinition, new: TableDefinition, encoding: TextEncoding, fmt: int
    ) -> None:
        """Any change of a table's columns fills a new table from the old one (inside the
        transaction); the new one takes the name after the COMMIT."""
        name = new.name
        if name not in self.tables:
            return
        ddl.check_table(new)
        source = self.physical[name]
        staging = self._staging(new)
        before, after = layout_of(old), layout_of(new)
        plan = alter_plan(old, new)
        if plan is None:
            self._rewrite(before, after, source, staging, encoding, fmt)
        else:
            origin = {n: o for o, n in plan.renames}
            added = {c.name for c in plan.added}
            columns = [
                "NULL" if c.name in added else quote(origin.get(c.name, c.name))
                for c in after.columns
            ]
            fields = quote(HIDDEN_FIELDS)
            if plan.added:
                fields = f"COALESCE({fields}, {before.field_count})"
            columns += [quote(HIDDEN_RECORD), fields, quote(HIDDEN_INEXACT)]
            if after.hidden_rowid:
                columns.append(quote(HIDDEN_ROWID))
            names = ddl.identifiers(after.column_names())
            self.cur.execute(
                f"INSERT INTO {self.catalog.data(staging)} ({names})"
                f" SELECT {', '.join(columns)} FROM {self.catalog.data(source)}"
            )
        self._replace_physical(name, staging)
        self.tables[name] = new

    def _rewrite(
        self,
        before: TableLayout,
        after: TableLayout,
        source: str,
        staging: str,
        encoding: TextEncoding,
        fmt: int,
    ) -> None:
        """Every row's record, rendered under the old definition, stored under the new."""
        self.cur.execute(reads.select_rows(self.catalog, before, source))
        rows = self.cur.fetchall()
        self._write_rows(
            staging,
            after,
            (
                to_row(after, r[0], payload_from_pg(before, r[1:], encoding, fmt), encoding, fmt)
                for r in rows
            ),
        )

    # -------------------------------------------------------------- rows

    def _write_rows(
        self, table: str, layout: TableLayout, rows: Iterable[list[Any]], *, upsert: bool = False
    ) -> None:
        """INSERT (or, with `upsert`, INSERT ... ON DUPLICATE KEY UPDATE) rows into the data
        table `table`: by executemany, or as literals when a name would confuse the driver."""
        names = layout.column_names()
        prefix = f"INSERT INTO {self.catalog.data(table)} ({ddl.identifiers(names)}) VALUES "
        suffix = ""
        if upsert and layout.rowid_column is not None:
            others = [n for n in names if n != layout.rowid_column]
            updates = ", ".join(f"{quote(n)} = VALUES({quote(n)})" for n in others)
            suffix = f" ON DUPLICATE KEY UPDATE {updates}"
        if all(map(plain_identifier, [table, *names])):
            self._executemany(f"{prefix}({', '.join('?' * len(names))}){suffix}", rows)
            return
        for batch in _batches(rows):
            values = ", ".join("(" + ", ".join(map(literal, row)) + ")" for row in batch)
            self.cur.execute(prefix + values + suffix)

    def _apply_rows(
        self, definition: TableDefinition, rows: TableRows, encoding: TextEncoding, fmt: int
    ) -> None:
        name = definition.name
        layout = layout_of(definition)
        if layout.rowid_column is None or rows.replace_all:
            before = 0
            if name not in self._refilled:
                self._refilled.add(name)
                if layout.rowid_column is None:
                    # A mirror is refilled once per write; later parts append to it.
                    self.cur.execute(f"DELETE FROM {self._target(name)}")
                else:
                    self.cur.execute(f"SELECT COUNT(*) FROM {self._target(name)}")
                    before = int(self.cur.fetchone()[0])
                    self._delete_chains_of(name)
                    self._replace_physical(name, self._staging(definition))
            items = sorted(rows.inserted.items())
            self._write_rows(
                self.physical[name], layout, (to_row(layout, r, p, encoding, fmt) for r, p in items)
            )
            self.stats.count(name, inserted=len(items), deleted=before)
            return
        rowid = quote(layout.rowid_column)
        if rows.deleted:
            doomed = sorted(rows.deleted)
            for start in range(0, len(doomed), reads.CHUNK):
                numbers = ", ".join(str(int(r)) for r in doomed[start : start + reads.CHUNK])
                self.cur.execute(f"DELETE FROM {self._target(name)} WHERE {rowid} IN ({numbers})")
                self.cur.execute(
                    f"DELETE FROM {self.catalog.meta('overflow_chain')}"
                    f" WHERE owner = ? AND rowid IN ({numbers})",
                    (name,),
                )
        items = sorted({**rows.inserted, **rows.updated}.items())
        if items:
            self._write_rows(
                self.physical[name],
                layout,
                (to_row(layout, r, p, encoding, fmt) for r, p in items),
                upsert=True,
            )
        self.stats.count(
            name, inserted=len(rows.inserted), updated=len(rows.updated), deleted=len(rows.deleted)
        )

    # -------------------------------------------------------------- chains, pages, meta

    def _delete_chains_of(self, owner: str) -> None:
        self.cur.execute(
            f"DELETE FROM {self.catalog.meta('overflow_chain')} WHERE owner = ?", (owner,)
        )

    def _apply_chains(self, chains: dict[tuple[str, int], list[int]]) -> None:
        table = self.catalog.meta("overflow_chain")
        cleared = [(owner, rowid) for (owner, rowid), pages in chains.items() if not pages]
        self._executemany(f"DELETE FROM {table} WHERE owner = ? AND rowid = ?", cleared)
        self._executemany(
            f"INSERT INTO {table} (owner, rowid, pages) VALUES (?, ?, ?)"
            " ON DUPLICATE KEY UPDATE pages = VALUES(pages)",
            (
                (owner, rowid, json.dumps(list(pages)))
                for (owner, rowid), pages in chains.items()
                if pages
            ),
        )

    def _apply_pages(self, pages: list[PageRecord], removed_from: int | None) -> int:
        rows = page_rows(pages)
        updates = ", ".join(f"{c} = VALUES({c})" for c in PAGE_COLUMNS[1:])
        self._executemany(
            f"INSERT INTO {self.catalog.meta('pages')} ({', '.join(PAGE_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(PAGE_COLUMNS))}) ON DUPLICATE KEY UPDATE {updates}",
            rows,
        )
        if removed_from is not None:
            self.cur.execute(
                f"DELETE FROM {self.catalog.meta('pages')} WHERE pgno >= ?", (removed_from,)
            )
        return len(rows)

    def _apply_schema_mirror(self, entries: list[SchemaEntry]) -> None:
        self.cur.execute(f"DELETE FROM {self.catalog.meta('sqlite_schema')}")
        self._executemany(
            f"INSERT INTO {self.catalog.meta('sqlite_schema')}"
            " (position, type, name, tbl_name, rootpage, `sql`) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (position, e.type, e.name, e.tbl_name, e.rootpage, e.sql)
                for position, e in enumerate(entries)
            ),
        )

    def _apply_meta(self, part: Changeset) -> None:
        self.cur.executemany(
            f"INSERT INTO {self.catalog.meta('meta')} (`key`, value, data) VALUES (?, ?, ?)"
            " ON DUPLICATE KEY UPDATE value = VALUES(value), data = VALUES(data)",
            self._meta_rows(part),
        )

    def _log_commit(self) -> None:
        self.cur.execute(
            f"INSERT INTO {self.catalog.meta('commit_log')} (commit_id, seq, epoch, source,"
            " inserted, updated, deleted, pages, ms, tables)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._log_row(str(self.context.commit_id), json.dumps(self.stats.per_table())),
        )
