"""The PostgreSQL store: meta tables, data tables, reads for rendering, apply().

What PostgreSQL holds is defined in README "Design / What PostgreSQL holds".
Meta schema (default `pgfs`):

- `meta(key, value, data)`: `format`, `header` (data = the 100 header bytes),
  `page_count`, `page_size`, `text_encoding`, `schema_format`;
- `sqlite_schema(position, type, name, tbl_name, rootpage, sql)`: the mirror;
- `pages(pgno, kind, owner, lo, hi, seq, data)`: one row per page number;
- `overflow_chain(owner, rowid, pages bigint[])`: overflow page numbers of a row;
- `commit_log(id, committed_at, source, inserted, updated, deleted, pages,
  ms, tables jsonb)`: one row per applied PostgreSQL transaction.

Data schema (default `jellyfin`): one table per SQLite table with real pages
(`ddl.has_data_table`), built by `ddl.create_table`, rows by `values`.

Every write goes through one PostgreSQL transaction (`StoreTransaction`):
either all of a commit is in PostgreSQL or none of it. Identifiers are only
ever composed with `psycopg.sql`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader, TextEncoding
from pgfs.sqlite.record import InvalidText, Value, decode_record
from pgfs.sqlite.schema import SchemaEntry, TableDefinition, parse_create_table
from pgfs.store import ddl
from pgfs.store.changeset import PAGE_KINDS, Changeset, PageRecord, SchemaChange, TableRows
from pgfs.store.dsn import describe_connect_error, describe_target, one_line, scrub
from pgfs.store.errors import (
    StoreConflictError,
    StoreError,
    StoreUnavailableError,
)
from pgfs.store.values import (
    HIDDEN_FIELDS,
    HIDDEN_RECORD,
    TableLayout,
    layout_of,
    payload_from_pg,
    to_pg_row,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
META_TABLES = ("meta", "sqlite_schema", "pages", "overflow_chain", "commit_log")
SMALL_BATCH = 256
"""Up to this many rows: executemany (pipelined); more: binary COPY (into a staging table)."""
DELETE_CHUNK = 50_000
ANALYZE_ROWS = 10_000
FETCH_SIZE = 2_000
CONNECT_TIMEOUT = 10
# How long a request waits for a pooled connection. While PostgreSQL is down the
# pool keeps reconnecting in the background; the SQLite call waiting on it fails
# with EIO after this long, well inside Jellyfin's own 30 s command timeout.
POOL_TIMEOUT = 10.0
_RELATION_KINDS = ("r", "p", "v", "m", "f")
T = TypeVar("T")


@dataclass
class StoreState:
    """What the store holds, as the emulator needs it.

    `tables` has every table that has a data-schema table (rendered from rows);
    every other object's pages are raw. Without a stored database, `header`
    is None, `page_count` 0 and the rest defaults.
    """

    header: bytes | None
    page_size: int
    page_count: int
    encoding: TextEncoding
    schema_format: int
    entries: list[SchemaEntry]
    tables: dict[str, TableDefinition]

    @property
    def usable_size(self) -> int:
        if self.header is None:
            return self.page_size
        return DatabaseHeader.parse(self.header).usable_size


@dataclass
class CommitStats:
    """Rows inserted/updated/deleted per table, page records written, milliseconds."""

    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    ms: float = 0.0
    source: str = ""

    def count(self, table: str, *, inserted: int = 0, updated: int = 0, deleted: int = 0) -> None:
        for target, n in (
            (self.inserted, inserted),
            (self.updated, updated),
            (self.deleted, deleted),
        ):
            if n:
                target[table] = target.get(table, 0) + n

    def merge(self, other: CommitStats) -> None:
        for table, n in other.inserted.items():
            self.count(table, inserted=n)
        for table, n in other.updated.items():
            self.count(table, updated=n)
        for table, n in other.deleted.items():
            self.count(table, deleted=n)
        self.pages += other.pages
        self.ms += other.ms
        self.source = self.source or other.source

    @property
    def total_inserted(self) -> int:
        return sum(self.inserted.values())

    @property
    def total_updated(self) -> int:
        return sum(self.updated.values())

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())

    def per_table(self) -> dict[str, dict[str, int]]:
        names = sorted(set(self.inserted) | set(self.updated) | set(self.deleted))
        return {
            name: {
                "inserted": self.inserted.get(name, 0),
                "updated": self.updated.get(name, 0),
                "deleted": self.deleted.get(name, 0),
            }
            for name in names
        }


@lru_cache(maxsize=2048)
def _parse_table(text: str) -> TableDefinition:
    return parse_create_table(text)


def table_definitions(
    entries: Iterable[SchemaEntry], existing: set[str]
) -> dict[str, TableDefinition]:
    """Definitions of the schema's tables that have a data table (`existing` names)."""
    tables: dict[str, TableDefinition] = {}
    for entry in entries:
        if entry.name not in existing or not ddl.has_data_table(entry):
            continue
        try:
            definition = _parse_table(entry.sql or "")
        except FormatError:
            continue
        if definition.name != entry.name:
            definition = dataclasses.replace(definition, name=entry.name)
        tables[entry.name] = definition
    return tables


def _parse_header(header: bytes | None) -> DatabaseHeader | None:
    if not header:
        return None
    try:
        return DatabaseHeader.parse(header)
    except FormatError as exc:
        raise StoreError(f"the database header is not valid: {exc}") from None


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _connect_kwargs(dsn: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(dsn)
    except psycopg.Error:
        given = {}
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given and not os.environ.get("PGAPPNAME"):
        kwargs["application_name"] = "pgfs"
    return kwargs


class Store:
    """PostgreSQL access for pgfs. Create with `Store.connect`; thread-safe."""

    def __init__(self, pool: ConnectionPool, dsn: str, meta_schema: str, data_schema: str):
        self._pool = pool
        self._dsn = dsn
        self.meta_schema = meta_schema
        self.data_schema = data_schema
        self._lock = threading.Lock()
        self._tables: dict[str, TableDefinition] | None = None
        self._format: tuple[TextEncoding, int] | None = None
        self._lock_key = zlib.crc32(f"pgfs:{meta_schema}".encode()) - (1 << 31)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        meta_schema: str = "pgfs",
        data_schema: str = "jellyfin",
        min_size: int = 1,
        max_size: int = 4,
    ) -> Store:
        """Open a connection pool; StoreUnavailableError (no password in it) if PostgreSQL
        cannot be reached."""
        if meta_schema == data_schema:
            raise StoreError(f"the meta and data schemas must differ (both {meta_schema!r})")
        for name in (meta_schema, data_schema):
            try:
                ddl.check_identifier(name, "schema")
            except FormatError as exc:
                raise StoreError(str(exc)) from None
        kwargs = _connect_kwargs(dsn)
        try:
            psycopg.connect(dsn, **kwargs).close()
        except psycopg.Error as exc:
            raise StoreUnavailableError(describe_connect_error(exc, dsn)) from None
        pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max(max_size, min_size),
            kwargs={**kwargs, "autocommit": True},
            open=False,
            timeout=POOL_TIMEOUT,
            name=f"pgfs-{meta_schema}",
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except PoolTimeout as exc:
            pool.close()
            raise StoreUnavailableError(describe_connect_error(exc, dsn)) from None
        return cls(pool, dsn, meta_schema, data_schema)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def target(self) -> str:
        """host/port/dbname/user of the server, for messages (no password)."""
        return describe_target(self._dsn)

    # ------------------------------------------------------------------ helpers

    def _meta(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.meta_schema, table)

    def _data(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.data_schema, table)

    def translate(self, exc: BaseException, doing: str) -> StoreError:
        """A StoreError (StoreUnavailableError for connection trouble) for `exc`."""
        if isinstance(exc, StoreError):
            return exc
        message = scrub(one_line(str(exc)) or type(exc).__name__, self._dsn)
        if _is_connection_error(exc):
            return StoreUnavailableError(
                f"PostgreSQL unavailable ({self.target}) while {doing}: {message}"
            )
        if isinstance(exc, psycopg.Error):
            return StoreError(f"PostgreSQL failed while {doing}: {message}")
        if isinstance(exc, FormatError):
            return StoreError(f"{doing}: {message}")
        return StoreError(f"{doing} failed: {type(exc).__name__}: {message}")

    def _run(self, doing: str, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` on a pooled connection; retry once on a dead connection
        (reads are idempotent; the pool replaces broken connections)."""
        for attempt in (0, 1):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except StoreError:
                raise
            except Exception as exc:
                error = self.translate(exc, doing)
                retry = isinstance(error, StoreUnavailableError) and not isinstance(
                    exc, PoolTimeout
                )
                if retry and attempt == 0:
                    log.info("retrying after a lost connection: %s", error)
                    continue
                raise error from exc
        raise AssertionError("unreachable")

    def _relation_exists(self, conn: psycopg.Connection, schema: str, name: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        ).fetchone()
        return row is not None

    def _initialised(self, conn: psycopg.Connection) -> bool:
        return self._relation_exists(conn, self.meta_schema, "pages")

    def _relations(self, conn: psycopg.Connection, schema: str) -> set[str]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = ANY(%s)",
            (schema, list(_RELATION_KINDS)),
        ).fetchall()
        return {r[0] for r in rows}

    def _entries(self, conn: psycopg.Connection) -> list[SchemaEntry]:
        rows = conn.execute(
            sql.SQL("SELECT type, name, tbl_name, rootpage, sql FROM {} ORDER BY position").format(
                self._meta("sqlite_schema")
            )
        ).fetchall()
        return [SchemaEntry(*row) for row in rows]

    def _table_definitions(self, conn: psycopg.Connection) -> dict[str, TableDefinition]:
        return table_definitions(self._entries(conn), self._relations(conn, self.data_schema))

    def _advisory_lock(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))

    # ------------------------------------------------------------------ setup

    def initialise(self) -> None:
        """Create the meta schema and tables if missing (idempotent).

        Refuses with StoreConflictError when the data schema holds relations
        pgfs did not create (tables not in the mirrored sqlite_schema), the meta
        schema holds foreign tables, or the stored format is another version.
        """

        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():
                self._advisory_lock(conn)
                self._check_server(conn)
                self._check_foreign(conn)
                self._create_meta(conn)

        self._run("initialising the store", work)

    def _check_server(self, conn: psycopg.Connection) -> None:
        row = conn.execute("SHOW server_encoding").fetchone()
        encoding = row[0] if row else "?"
        if encoding.upper() not in ("UTF8", "UTF-8"):
            raise StoreError(
                f"the PostgreSQL database uses encoding {encoding}; pgfs needs UTF8 "
                "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
            )

    def _check_foreign(self, conn: psycopg.Connection) -> None:
        known: set[str] = set()
        if self._relation_exists(conn, self.meta_schema, "meta"):
            row = conn.execute(
                sql.SQL("SELECT value FROM {} WHERE key = 'format'").format(self._meta("meta"))
            ).fetchone()
            if row is not None and row[0] != FORMAT_VERSION:
                raise StoreConflictError(
                    f"schema {self.meta_schema!r} holds pgfs format {row[0]!r}; "
                    f"this pgfs uses format {FORMAT_VERSION!r}"
                )
        if self._relation_exists(conn, self.meta_schema, "sqlite_schema"):
            known = {e.name for e in self._entries(conn) if ddl.has_data_table(e)}
        foreign_meta = self._relations(conn, self.meta_schema) - set(META_TABLES)
        if foreign_meta:
            raise StoreConflictError(
                f"schema {self.meta_schema!r} holds tables pgfs did not create: "
                f"{', '.join(sorted(foreign_meta)[:10])}; choose another meta schema"
            )
        foreign = self._relations(conn, self.data_schema) - known
        if foreign:
            raise StoreConflictError(
                f"schema {self.data_schema!r} holds tables pgfs did not create: "
                f"{', '.join(sorted(foreign)[:10])}; choose another data schema"
            )

    def _create_meta(self, conn: psycopg.Connection) -> None:
        kinds = sql.SQL(", ").join(sql.Literal(k) for k in sorted(PAGE_KINDS))
        statements = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.meta_schema)),
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.data_schema)),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text, data bytea)"
            ).format(self._meta("meta")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (position integer PRIMARY KEY, type text NOT NULL,"
                " name text NOT NULL, tbl_name text NOT NULL, rootpage bigint NOT NULL, sql text)"
            ).format(self._meta("sqlite_schema")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (pgno bigint PRIMARY KEY CHECK (pgno > 0),"
                " kind text NOT NULL CHECK (kind IN ({})), owner text, lo bigint, hi bigint,"
                " seq integer, data bytea)"
            ).format(self._meta("pages"), kinds),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS pages_owner_kind_lo ON {} (owner, kind, lo)"
            ).format(self._meta("pages")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (owner text NOT NULL, rowid bigint NOT NULL,"
                " pages bigint[] NOT NULL, PRIMARY KEY (owner, rowid))"
            ).format(self._meta("overflow_chain")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY,"
                " committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                " source text NOT NULL, inserted bigint NOT NULL, updated bigint NOT NULL,"
                " deleted bigint NOT NULL, pages bigint NOT NULL, ms double precision NOT NULL,"
                " tables jsonb NOT NULL)"
            ).format(self._meta("commit_log")),
        ]
        for statement in statements:
            conn.execute(statement)
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (key, value) VALUES ('format', %s) ON CONFLICT (key) DO NOTHING"
            ).format(self._meta("meta")),
            (FORMAT_VERSION,),
        )

    def is_empty(self) -> bool:
        """True when no database is stored (no page records, or not initialised)."""

        def work(conn: psycopg.Connection) -> bool:
            if not self._initialised(conn):
                return True
            query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self._meta("pages"))
            row = conn.execute(query).fetchone()
            return not (row and row[0])

        return self._run("checking whether the store is empty", work)

    def clear(self) -> None:
        """Drop the data tables and empty the meta tables (the commit log is kept).

        For an atomic `import --replace`, call `StoreTransaction.clear()` in the
        import's own transaction instead.
        """
        with self.begin() as tx:
            tx.clear()

    # ------------------------------------------------------------------ state

    def load_state(self) -> StoreState:
        """Header, page count, text encoding, the sqlite_schema mirror and the
        definitions of the tables that have data tables."""

        def work(conn: psycopg.Connection) -> StoreState:
            if not self._initialised(conn):
                return StoreState(None, 4096, 0, TextEncoding.UTF8, 4, [], {})
            meta = {
                key: (value, data)
                for key, value, data in conn.execute(
                    sql.SQL("SELECT key, value, data FROM {}").format(self._meta("meta"))
                )
            }
            entries = self._entries(conn)
            tables = table_definitions(entries, self._relations(conn, self.data_schema))
            header_bytes = meta.get("header", (None, None))[1]
            header = _parse_header(header_bytes)
            page_count = int(meta.get("page_count", ("0", None))[0] or 0)
            if header is None:
                return StoreState(None, 4096, page_count, TextEncoding.UTF8, 4, entries, tables)
            return StoreState(
                bytes(header_bytes),
                header.page_size,
                page_count,
                header.text_encoding,
                header.schema_format,
                entries,
                tables,
            )

        state = self._run("loading the store state", work)
        with self._lock:
            self._tables = state.tables
            self._format = (state.encoding, state.schema_format)
        return state

    def _definition(self, table: str) -> TableDefinition:
        tables = self._tables
        if tables is None or table not in tables:
            tables = self.load_state().tables
        try:
            return tables[table]
        except KeyError:
            raise StoreError(f"table {table!r} has no data table in {self.data_schema!r}") from None

    def _record_format(self) -> tuple[TextEncoding, int]:
        if self._format is None:
            self.load_state()
        assert self._format is not None
        return self._format

    def _invalidate(self) -> None:
        with self._lock:
            self._tables = None
            self._format = None

    # ------------------------------------------------------------------ reads

    def page_records(self, pgnos: Iterable[int]) -> dict[int, PageRecord]:
        """The page records of `pgnos` (an absent page number is not stored)."""
        wanted = sorted(set(pgnos))
        if not wanted:
            return {}
        query = sql.SQL(
            "SELECT pgno, kind, owner, lo, hi, seq, data FROM {} WHERE pgno = ANY(%s::bigint[])"
        ).format(self._meta("pages"))

        def work(conn: psycopg.Connection) -> dict[int, PageRecord]:
            with conn.cursor(binary=True) as cur:
                cur.execute(query, (wanted,))
                return {row[0]: PageRecord(*row) for row in cur}

        return self._run("reading page records", work)

    def pages_of(self, owner: str) -> list[PageRecord]:
        """Every page record of `owner`, in page-number order."""
        query = sql.SQL(
            "SELECT pgno, kind, owner, lo, hi, seq, data FROM {} WHERE owner = %s ORDER BY pgno"
        ).format(self._meta("pages"))

        def work(conn: psycopg.Connection) -> list[PageRecord]:
            with conn.cursor(binary=True) as cur:
                cur.execute(query, (owner,))
                return [PageRecord(*row) for row in cur]

        return self._run(f"reading the pages of {owner!r}", work)

    def _rowid_layout(self, table: str) -> tuple[TableDefinition, TableLayout, str]:
        definition = self._definition(table)
        layout = layout_of(definition)
        if layout.rowid_column is None:
            raise StoreError(f"table {table!r} is WITHOUT ROWID: its pages are raw, not rendered")
        return definition, layout, layout.rowid_column

    def _payload_select(self, layout: TableLayout, rowid_column: str) -> sql.Composed:
        names = [c.name for c in layout.columns] + [HIDDEN_RECORD, HIDDEN_FIELDS]
        return sql.SQL(", ").join(
            [sql.Identifier("t", rowid_column)] + [sql.Identifier("t", n) for n in names]
        )

    def leaf_cells(self, table: str, lo: int, hi: int) -> list[tuple[int, bytes, int | None]]:
        """(rowid, record payload, first overflow page or None) of the rows with
        rowid in [lo, hi], in rowid order."""
        _, layout, rowid = self._rowid_layout(table)
        encoding, schema_format = self._record_format()
        query = sql.SQL(
            "SELECT {}, c.pages[1] FROM {} AS t LEFT JOIN {} AS c"
            " ON c.owner = %(owner)s AND c.rowid = t.{} AND c.rowid BETWEEN %(lo)s AND %(hi)s"
            " WHERE t.{} BETWEEN %(lo)s AND %(hi)s ORDER BY t.{}"
        ).format(
            self._payload_select(layout, rowid),
            self._data(table),
            self._meta("overflow_chain"),
            sql.Identifier(rowid),
            sql.Identifier(rowid),
            sql.Identifier(rowid),
        )

        def work(conn: psycopg.Connection) -> list[tuple[int, bytes, int | None]]:
            with conn.cursor(binary=True) as cur:
                cur.execute(query, {"owner": table, "lo": lo, "hi": hi})
                return [
                    (
                        row[0],
                        payload_from_pg(layout, row[1:-1], encoding, schema_format),
                        row[-1],
                    )
                    for row in cur
                ]

        return self._run(f"reading rows of {table!r}", work)

    def row_payloads(self, table: str, rowids: Iterable[int]) -> dict[int, bytes]:
        """Record payloads of the rows with these rowids (absent rowids are left out)."""
        wanted = sorted(set(rowids))
        if not wanted:
            return {}
        _, layout, rowid = self._rowid_layout(table)
        encoding, schema_format = self._record_format()
        query = sql.SQL("SELECT {} FROM {} AS t WHERE t.{} = ANY(%s::bigint[])").format(
            self._payload_select(layout, rowid), self._data(table), sql.Identifier(rowid)
        )

        def work(conn: psycopg.Connection) -> dict[int, bytes]:
            with conn.cursor(binary=True) as cur:
                cur.execute(query, (wanted,))
                return {
                    row[0]: payload_from_pg(layout, row[1:], encoding, schema_format) for row in cur
                }

        return self._run(f"reading rows of {table!r}", work)

    def rowids_in_ranges(self, table: str, ranges: list[tuple[int, int]]) -> set[int]:
        """Rowids of `table` inside any of the inclusive ranges."""
        if not ranges:
            return set()
        _, _, rowid = self._rowid_layout(table)
        query = sql.SQL(
            "SELECT t.{} FROM {} AS t JOIN unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi)"
            " ON t.{} BETWEEN r.lo AND r.hi"
        ).format(sql.Identifier(rowid), self._data(table), sql.Identifier(rowid))
        los = [lo for lo, _ in ranges]
        his = [hi for _, hi in ranges]

        def work(conn: psycopg.Connection) -> set[int]:
            return {row[0] for row in conn.execute(query, (los, his))}

        return self._run(f"reading rowids of {table!r}", work)

    def overflow_chains(self, table: str, rowids: Iterable[int]) -> dict[int, list[int]]:
        """Overflow page numbers of these rows of `table` (rows without overflow left out)."""
        wanted = sorted(set(rowids))
        if not wanted:
            return {}
        query = sql.SQL(
            "SELECT rowid, pages FROM {} WHERE owner = %s AND rowid = ANY(%s::bigint[])"
        ).format(self._meta("overflow_chain"))

        def work(conn: psycopg.Connection) -> dict[int, list[int]]:
            return {row[0]: list(row[1]) for row in conn.execute(query, (table, wanted))}

        return self._run(f"reading overflow chains of {table!r}", work)

    def table_rows(self, table: str) -> Iterator[tuple[int, list[Value | InvalidText]]]:
        """Every row of `table` as (rowid, decoded SQLite values), in rowid order.

        A WITHOUT ROWID mirror yields its rows in storage order, numbered from 0.
        """
        definition = self._definition(table)
        layout = layout_of(definition)
        encoding, schema_format = self._record_format()
        names = [c.name for c in layout.columns] + [HIDDEN_RECORD, HIDDEN_FIELDS]
        if layout.rowid_column is None:
            query = sql.SQL("SELECT 0, {} FROM {}").format(
                ddl.identifiers(names), self._data(table)
            )
        else:
            query = sql.SQL("SELECT {}, {} FROM {} ORDER BY {}").format(
                sql.Identifier(layout.rowid_column),
                ddl.identifiers(names),
                self._data(table),
                sql.Identifier(layout.rowid_column),
            )
        try:
            with (
                self._pool.connection() as conn,
                conn.transaction(),
                conn.cursor(name="pgfs_table_rows", binary=True) as cur,
            ):
                cur.itersize = FETCH_SIZE
                cur.execute(query)
                for number, row in enumerate(cur):
                    payload = payload_from_pg(layout, row[1:], encoding, schema_format)
                    rowid = row[0] if layout.rowid_column is not None else number
                    yield rowid, decode_record(payload, encoding)
        except (psycopg.Error, PoolTimeout, FormatError) as exc:
            raise self.translate(exc, f"reading rows of {table!r}") from exc

    # ------------------------------------------------------------------ writes

    def begin(self) -> StoreTransaction:
        """A write transaction: `with store.begin() as tx: tx.apply(...)`."""
        return StoreTransaction(self)

    def apply(self, changeset: Changeset) -> CommitStats:
        """Apply one changeset in one PostgreSQL transaction (see StoreTransaction)."""
        started = time.perf_counter()
        with self.begin() as tx:
            tx.apply(changeset)
        stats = tx.stats
        stats.ms = (time.perf_counter() - started) * 1000
        return stats

    # ------------------------------------------------------------------ reports

    def inspect(self) -> dict[str, Any]:
        """A JSON-serialisable report: header fields, tables (rows, pages by kind,
        side records, short records), pages by kind, last commits."""

        def work(conn: psycopg.Connection) -> dict[str, Any]:
            report: dict[str, Any] = {
                "server": self.target,
                "meta_schema": self.meta_schema,
                "data_schema": self.data_schema,
                "initialised": self._initialised(conn),
            }
            if not report["initialised"]:
                return report
            return report | self._inspect(conn)

        return self._run("inspecting the store", work)

    def _inspect(self, conn: psycopg.Connection) -> dict[str, Any]:
        meta = {
            key: (value, data)
            for key, value, data in conn.execute(
                sql.SQL("SELECT key, value, data FROM {}").format(self._meta("meta"))
            )
        }
        header = _parse_header(meta.get("header", (None, None))[1])
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
                self._meta("pages")
            )
        ):
            by_kind[kind] = by_kind.get(kind, 0) + n
            pages.setdefault(owner or "", {})[kind] = n
        tables = []
        side_total = 0
        definitions = self._table_definitions(conn)
        for name, definition in sorted(definitions.items()):
            rows, side, short = conn.execute(
                sql.SQL("SELECT count(*), count({}), count({}) FROM {}").format(
                    sql.Identifier(HIDDEN_RECORD), sql.Identifier(HIDDEN_FIELDS), self._data(name)
                )
            ).fetchone() or (0, 0, 0)
            side_total += side
            tables.append(
                {
                    "name": name,
                    "without_rowid": definition.without_rowid,
                    "rows": rows,
                    "lossless_records": side,
                    "short_records": short,
                    "pages": pages.get(name, {}),
                }
            )
        raw_owners = {
            owner: kinds for owner, kinds in sorted(pages.items()) if owner not in definitions
        }
        commits = [
            {
                "id": row[0],
                "committed_at": row[1].isoformat(),
                "source": row[2],
                "inserted": row[3],
                "updated": row[4],
                "deleted": row[5],
                "pages": row[6],
                "ms": round(row[7], 3),
                "tables": row[8],
            }
            for row in conn.execute(
                sql.SQL(
                    "SELECT id, committed_at, source, inserted, updated, deleted, pages, ms, tables"
                    " FROM {} ORDER BY id DESC LIMIT 10"
                ).format(self._meta("commit_log"))
            )
        ]
        return {
            "format": meta.get("format", (None, None))[0],
            "page_size": header.page_size if header else None,
            "page_count": int(meta.get("page_count", ("0", None))[0] or 0),
            "header": header_fields,
            "tables": tables,
            "other_objects": raw_owners,
            "pages_by_kind": dict(sorted(by_kind.items())),
            "page_records": sum(by_kind.values()),
            "lossless_records": side_total,
            "last_commits": commits,
        }


class StoreTransaction:
    """One PostgreSQL transaction of writes: commit on a clean exit, rollback on an
    exception (or after any failed `apply`). `apply` may be called many times: an
    import streams its parts. One `commit_log` row is written for the whole
    transaction."""

    def __init__(self, store: Store):
        self._store = store
        self._stack: ExitStack | None = None
        self._conn: psycopg.Connection | None = None
        self._failed = False
        self._done = False
        self._cleared = False
        self._started = 0.0
        self.stats = CommitStats()
        self._applier: _Applier | None = None

    def __enter__(self) -> StoreTransaction:
        store = self._store
        self._started = time.perf_counter()
        for attempt in (0, 1):
            stack = ExitStack()
            try:
                conn = stack.enter_context(store._pool.connection())
                stack.enter_context(conn.transaction())
                store._advisory_lock(conn)
                if not store._initialised(conn):
                    raise StoreError("the store is not initialised (run initialise() first)")
            except BaseException as exc:
                stack.__exit__(type(exc), exc, exc.__traceback__)
                error = store.translate(exc, "starting a transaction")
                if isinstance(error, StoreUnavailableError) and attempt == 0:
                    continue
                raise error from exc
            self._stack, self._conn = stack, conn
            self._applier = _Applier(store, conn)
            return self
        raise AssertionError("unreachable")

    def _check_usable(self) -> _Applier:
        if self._applier is None or self._done:
            raise StoreError("the transaction is not open")
        if self._failed:
            raise StoreError("the transaction failed earlier and will be rolled back")
        return self._applier

    def apply(self, changeset: Changeset) -> CommitStats:
        """Apply one changeset inside this transaction; any error dooms the transaction."""
        applier = self._check_usable()
        started = time.perf_counter()
        try:
            stats = applier.apply(changeset)
        except BaseException as exc:
            self._failed = True
            if not isinstance(exc, Exception):
                raise
            raise self._store.translate(exc, "applying a commit") from exc
        stats.ms = (time.perf_counter() - started) * 1000
        self.stats.merge(stats)
        return stats

    def clear(self) -> None:
        """Drop every data table and empty the meta tables, inside this transaction."""
        applier = self._check_usable()
        try:
            applier.clear()
        except BaseException as exc:
            self._failed = True
            if not isinstance(exc, Exception):
                raise
            raise self._store.translate(exc, "clearing the store") from exc
        self._cleared = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._done = True
        if stack is None:
            return
        store = self._store
        if exc is not None or self._failed:
            try:
                if exc is None:
                    rollback = psycopg.Rollback()
                    stack.__exit__(psycopg.Rollback, rollback, None)
                else:
                    stack.__exit__(exc_type, exc, tb)
            except Exception as cleanup:  # the connection may be gone: nothing to undo
                log.debug("rollback failed: %s", cleanup)
            if exc is None:
                raise StoreError("the transaction was rolled back after an earlier error")
            return
        try:
            if self._applier is not None and (self._applier.applied or self._cleared):
                self._applier.analyze()
                self._log_commit()
        except Exception as error:
            try:
                stack.__exit__(type(error), error, error.__traceback__)
            except Exception as cleanup:
                log.debug("rollback failed: %s", cleanup)
            raise store.translate(error, "writing the commit log") from error
        try:
            stack.__exit__(None, None, None)
        except Exception as error:
            raise store.translate(error, "committing") from error
        finally:
            store._invalidate()
        self.stats.ms = (time.perf_counter() - self._started) * 1000

    def _log_commit(self) -> None:
        assert self._conn is not None
        stats = self.stats
        source = stats.source or ("clear" if self._cleared else "")
        tables = stats.per_table()
        ms = (time.perf_counter() - self._started) * 1000
        self._conn.execute(
            sql.SQL(
                "INSERT INTO {} (source, inserted, updated, deleted, pages, ms, tables)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ).format(self._store._meta("commit_log")),
            (
                source,
                stats.total_inserted,
                stats.total_updated,
                stats.total_deleted,
                stats.pages,
                ms,
                Jsonb(tables),
            ),
        )


def _shape(table: TableDefinition) -> tuple:
    """What the data table of `table` looks like: columns, types, rowid, record order."""
    layout = layout_of(table)
    return (
        tuple((c.name, c.affinity) for c in layout.columns),
        layout.rowid_column,
        layout.record_order,
    )


class _Applier:
    """Writes changesets on one connection inside an open transaction."""

    _names = itertools.count(1)

    def __init__(self, store: Store, conn: psycopg.Connection):
        self.store = store
        self.conn = conn
        self.applied = 0
        self._tables: dict[str, TableDefinition] | None = None
        self._existing: set[str] = set()
        self._refilled: set[str] = set()
        self.bulk_loaded: dict[tuple[str, str], int] = {}

    # -------------------------------------------------------------- helpers

    def _meta(self, table: str) -> sql.Identifier:
        return self.store._meta(table)

    def _data(self, table: str) -> sql.Identifier:
        return self.store._data(table)

    def _load(self) -> dict[str, TableDefinition]:
        if self._tables is None:
            self._existing = self.store._relations(self.conn, self.store.data_schema)
            self._tables = table_definitions(self.store._entries(self.conn), self._existing)
        return self._tables

    def _execute(self, query: sql.Composable, params: Any = None) -> int:
        cur = self.conn.execute(query, params)
        return cur.rowcount

    def _temp_name(self, prefix: str) -> str:
        return f"_pgfs_{prefix}_{os.getpid()}_{next(self._names)}"

    # -------------------------------------------------------------- apply

    def apply(self, changeset: Changeset) -> CommitStats:
        header = _parse_header(changeset.header)
        if header is None:
            raise StoreError("the changeset has no database header")
        encoding, schema_format = header.text_encoding, header.schema_format
        stats = CommitStats(source=changeset.source)
        self._apply_schema(changeset.schema, encoding, schema_format)
        if changeset.schema_entries is not None or not changeset.schema.is_empty():
            self._check_schema(changeset.schema_entries)
        tables = self._load()
        for key, rows in changeset.rows.items():
            name = rows.table or key
            definition = tables.get(name)
            if definition is None:
                raise StoreError(f"rows for table {name!r}, which has no data table")
            self._apply_rows(definition, rows, encoding, schema_format, stats)
        self._apply_chains(changeset.chains)
        stats.pages = self._apply_pages(changeset.pages, changeset.removed_pages_from)
        self._apply_meta(changeset, header)
        self.applied += 1
        return stats

    def _count_bulk(self, schema: str, table: str, rows: int) -> None:
        key = (schema, table)
        self.bulk_loaded[key] = self.bulk_loaded.get(key, 0) + rows

    def analyze(self) -> None:
        """ANALYZE the tables that took at least ANALYZE_ROWS rows by COPY in this
        transaction, so that the planner's first queries after an import or a
        VACUUM see their real sizes (autovacuum would only do so later)."""
        for (schema, name), rows in sorted(self.bulk_loaded.items()):
            if rows < ANALYZE_ROWS:
                continue
            if schema == self.store.data_schema and name not in self._existing:
                continue  # dropped or renamed since
            self._execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))
        self.bulk_loaded.clear()

    def clear(self) -> None:
        """Drop the data tables (those of the mirror, and any table carrying the
        pgfs comment) and empty the meta tables."""
        tables = self._load()
        marked = {
            row[0]
            for row in self.conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'"
                " AND starts_with(coalesce(obj_description(c.oid, 'pg_class'), ''), %s)",
                (self.store.data_schema, ddl.COMMENT),
            )
        }
        for name in sorted(set(tables) | marked):
            self._execute(ddl.drop_table(self.store.data_schema, name))
        tables.clear()
        self._existing.clear()
        self._refilled.clear()
        for table in ("pages", "overflow_chain", "sqlite_schema"):
            self._execute(sql.SQL("TRUNCATE {}").format(self._meta(table)))
        self._execute(sql.SQL("DELETE FROM {} WHERE key <> 'format'").format(self._meta("meta")))

    # -------------------------------------------------------------- DDL

    def _apply_schema(self, change: SchemaChange, encoding: TextEncoding, fmt: int) -> None:
        """Drops, renames, creates, alters — in that order, so that a name can be
        dropped and created again, or freed by a rename and reused, in one commit."""
        tables = self._load()
        schema = self.store.data_schema
        for name in change.dropped:
            self._execute(ddl.drop_table(schema, name))
            self._delete_chains_of(name)
            tables.pop(name, None)
            self._existing.discard(name)
        self._apply_renames(change.renamed)
        for definition in change.created:
            if definition.name.lower().startswith("sqlite_"):
                continue
            self._execute(ddl.drop_table(schema, definition.name))
            self._delete_chains_of(definition.name)
            self._create_table(definition)
            tables[definition.name] = definition
            self._existing.add(definition.name)
        for old, new in change.altered:
            self._apply_alter(tables.get(new.name, old), new, encoding, fmt)

    def _check_schema(self, entries: list[SchemaEntry] | None) -> None:
        """The data tables after the DDL must be exactly those sqlite_schema
        describes (the new entries, else the stored mirror), column for column:
        otherwise rendering would disagree with SQLite. A mismatch is an error
        in the changeset, and nothing of it is applied."""
        if entries is None:
            entries = self.store._entries(self.conn)
        expected = table_definitions(entries, self._existing)
        tables = self._load()
        problems = sorted(set(tables) ^ set(expected))
        for name in sorted(set(tables) & set(expected)):
            if _shape(tables[name]) != _shape(expected[name]):
                problems.append(name)
        if problems:
            raise StoreError(
                "the schema change does not match sqlite_schema for "
                + ", ".join(repr(p) for p in sorted(set(problems))[:10])
            )
        self._tables = expected

    def _create_table(self, definition: TableDefinition) -> None:
        schema = self.store.data_schema
        self._execute(ddl.create_table(schema, definition))
        self._execute(ddl.comment_table(schema, definition))
        row = self.conn.execute(
            "SELECT c.relname, i.indrelid::bigint FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (sql.Identifier(schema, definition.name).as_string(self.conn),),
        ).fetchone()
        if row is not None:
            self._execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(schema, row[0]),
                    sql.Identifier(ddl.primary_key_name(row[1])),
                )
            )

    def _apply_renames(self, renames: list[tuple[str, str]]) -> None:
        renames = [(old, new) for old, new in renames if old != new]
        if not renames:
            return
        olds = {old for old, _ in renames}
        if any(new in olds for _, new in renames):
            parked = [(old, self._temp_name("rename")) for old, _ in renames]
            for old, temp in parked:
                self._rename(old, temp)
            for (_, temp), (_, new) in zip(parked, renames, strict=True):
                self._rename(temp, new)
        else:
            for old, new in renames:
                self._rename(old, new)

    def _rename(self, old: str, new: str) -> None:
        tables = self._load()
        if old in self._existing:
            self._execute(ddl.rename_table(self.store.data_schema, old, new))
            self._existing.discard(old)
            self._existing.add(new)
        definition = tables.pop(old, None)
        if definition is not None:
            tables[new] = dataclasses.replace(definition, name=new)
        for table in ("pages", "overflow_chain"):
            self._execute(
                sql.SQL("UPDATE {} SET owner = %s WHERE owner = %s").format(self._meta(table)),
                (new, old),
            )

    def _apply_alter(
        self, old: TableDefinition, new: TableDefinition, encoding: TextEncoding, fmt: int
    ) -> None:
        tables = self._load()
        name = new.name
        if name not in self._existing:
            return
        ddl.check_table(new)
        plan = ddl.alter_plan(old, new)
        schema = self.store.data_schema
        if plan is None:
            self._rewrite(old, new, encoding, fmt)
        else:
            self._rename_columns(name, plan.renames)
            for column in plan.dropped:
                self._execute(ddl.drop_column(schema, name, column))
            if plan.added:
                for column in plan.added:
                    self._execute(ddl.add_column(schema, name, column))
                # Rows written before ADD COLUMN keep their short records
                # (SQLite does not rewrite them): remember their field count.
                self._execute(
                    sql.SQL("UPDATE {} SET {} = %s WHERE {} IS NULL").format(
                        self._data(name),
                        sql.Identifier(HIDDEN_FIELDS),
                        sql.Identifier(HIDDEN_FIELDS),
                    ),
                    (layout_of(old).field_count,),
                )
        tables[name] = new

    def _rename_columns(self, table: str, renames: list[tuple[str, str]]) -> None:
        schema = self.store.data_schema
        olds = {old for old, _ in renames}
        if any(new in olds for _, new in renames):
            parked = [(old, self._temp_name("column")) for old, _ in renames]
            for old, temp in parked:
                self._execute(ddl.rename_column(schema, table, old, temp))
            renames = [(temp, new) for (_, temp), (_, new) in zip(parked, renames, strict=True)]
        for old, new in renames:
            self._execute(ddl.rename_column(schema, table, old, new))

    def _rewrite(
        self, old: TableDefinition, new: TableDefinition, encoding: TextEncoding, fmt: int
    ) -> None:
        """Rebuild a data table whose definition changed beyond RENAME/ADD/DROP
        COLUMN: every row's record is rendered under the old definition and
        stored again under the new one (still lossless)."""
        schema = self.store.data_schema
        parked = self._temp_name("rewrite")
        self._execute(ddl.rename_table(schema, new.name, parked))
        self._create_table(new)
        before = layout_of(old)
        rowid = sql.Identifier(before.rowid_column) if before.rowid_column else sql.SQL("0")
        names = [c.name for c in before.columns] + [HIDDEN_RECORD, HIDDEN_FIELDS]
        query = sql.SQL("SELECT {}, {} FROM {}").format(
            rowid, ddl.identifiers(names), self._data(parked)
        )
        after = layout_of(new)
        insert = self._insert_query(new.name, after)
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
        self._execute(ddl.drop_table(schema, parked))

    # -------------------------------------------------------------- rows

    def _insert_query(self, table: str, layout: TableLayout) -> sql.Composed:
        names = layout.column_names()
        return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._data(table),
            ddl.identifiers(names),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
        )

    def _copy_rows(
        self,
        target: sql.Composable,
        definition: TableDefinition,
        items: list[tuple[int, bytes]],
        encoding: TextEncoding,
        fmt: int,
    ) -> None:
        """Binary COPY of converted rows: streams, one row in memory at a time."""
        layout = layout_of(definition)
        self._count_bulk(self.store.data_schema, definition.name, len(items))
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            target, ddl.identifiers(layout.column_names())
        )
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(ddl.copy_types(layout))
            for rowid, payload in items:
                copy.write_row(to_pg_row(layout, rowid, payload, encoding, fmt))

    def _insert_rows(
        self,
        definition: TableDefinition,
        items: list[tuple[int, bytes]],
        encoding: TextEncoding,
        fmt: int,
    ) -> None:
        if len(items) > SMALL_BATCH:
            self._copy_rows(self._data(definition.name), definition, items, encoding, fmt)
            return
        if items:
            with self.conn.cursor() as cur:
                cur.executemany(
                    self._insert_query(definition.name, layout_of(definition)),
                    [to_pg_row(layout_of(definition), r, p, encoding, fmt) for r, p in items],
                )

    def _apply_rows(
        self,
        definition: TableDefinition,
        rows: TableRows,
        encoding: TextEncoding,
        fmt: int,
        stats: CommitStats,
    ) -> None:
        name = definition.name
        layout = layout_of(definition)
        target = self._data(name)
        items = sorted(rows.upserts.items())
        if layout.rowid_column is None or rows.replace_all:
            if layout.rowid_column is None:
                # A mirror is refilled once per transaction; later parts of a
                # streamed import append to it.
                before = 0
                if name not in self._refilled:
                    before = self._execute(sql.SQL("DELETE FROM {}").format(target))
                    self._refilled.add(name)
            else:
                row = self.conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(target)
                ).fetchone()
                before = row[0] if row else 0
                self._execute(sql.SQL("TRUNCATE {}").format(target))
                self._delete_chains_of(name)
            self._insert_rows(definition, items, encoding, fmt)
            stats.count(name, inserted=len(items), deleted=before)
            return
        rowid = sql.Identifier(layout.rowid_column)
        if rows.deletes:
            doomed = sorted(rows.deletes)
            deleted = 0
            for start in range(0, len(doomed), DELETE_CHUNK):
                chunk = doomed[start : start + DELETE_CHUNK]
                deleted += self._execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s::bigint[])").format(target, rowid),
                    (chunk,),
                )
                self._execute(
                    sql.SQL("DELETE FROM {} WHERE owner = %s AND rowid = ANY(%s::bigint[])").format(
                        self._meta("overflow_chain")
                    ),
                    (name, chunk),
                )
            stats.count(name, deleted=deleted)
        if items:
            if len(items) > SMALL_BATCH:
                inserted, updated = self._upsert_staged(definition, items, encoding, fmt)
            else:
                inserted, updated = self._upsert_small(definition, items, encoding, fmt)
            stats.count(name, inserted=inserted, updated=updated)

    def _upsert_small(
        self,
        definition: TableDefinition,
        items: list[tuple[int, bytes]],
        encoding: TextEncoding,
        fmt: int,
    ) -> tuple[int, int]:
        layout = layout_of(definition)
        assert layout.rowid_column is not None
        rowid = layout.rowid_column
        target = self._data(definition.name)
        keys = [r for r, _ in items]
        existing = {
            row[0]
            for row in self.conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s::bigint[])").format(
                    sql.Identifier(rowid), target, sql.Identifier(rowid)
                ),
                (keys,),
            )
        }
        names = layout.column_names()
        key_index = names.index(rowid)
        others = [n for n in names if n != rowid]
        update = sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(
            target,
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in others),
            sql.Identifier(rowid),
        )
        updates, inserts = [], []
        for r, payload in items:
            row = to_pg_row(layout, r, payload, encoding, fmt)
            if r in existing:
                updates.append(row[:key_index] + row[key_index + 1 :] + [row[key_index]])
            else:
                inserts.append(row)
        with self.conn.cursor() as cur:
            if updates:
                cur.executemany(update, updates)
            if inserts:
                cur.executemany(self._insert_query(definition.name, layout), inserts)
        return len(inserts), len(updates)

    def _upsert_staged(
        self,
        definition: TableDefinition,
        items: list[tuple[int, bytes]],
        encoding: TextEncoding,
        fmt: int,
    ) -> tuple[int, int]:
        """COPY into a temporary table, then UPDATE the existing rows and INSERT
        the others (two statements give exact inserted/updated counts)."""
        layout = layout_of(definition)
        assert layout.rowid_column is not None
        target = self._data(definition.name)
        stage = sql.Identifier(self._temp_name("stage"))
        names = layout.column_names()
        rowid = sql.Identifier(layout.rowid_column)
        self._execute(
            sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target)
        )
        self._copy_rows(stage, definition, items, encoding, fmt)
        others = [n for n in names if n != layout.rowid_column]
        updated = self._execute(
            sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE t.{} = s.{}").format(
                target,
                sql.SQL(", ").join(
                    sql.SQL("{} = s.{}").format(sql.Identifier(n), sql.Identifier(n))
                    for n in others
                ),
                stage,
                rowid,
                rowid,
            )
        )
        inserted = self._execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} AS s"
                " WHERE NOT EXISTS (SELECT 1 FROM {} AS t WHERE t.{} = s.{})"
            ).format(
                target,
                ddl.identifiers(names),
                sql.SQL(", ").join(sql.Identifier("s", n) for n in names),
                stage,
                target,
                rowid,
                rowid,
            )
        )
        self._execute(sql.SQL("DROP TABLE {}").format(stage))
        return inserted, updated

    # -------------------------------------------------------------- chains, pages, meta

    def _delete_chains_of(self, owner: str) -> None:
        self._execute(
            sql.SQL("DELETE FROM {} WHERE owner = %s").format(self._meta("overflow_chain")),
            (owner,),
        )

    def _upsert(
        self,
        table: str,
        columns: list[str],
        key: list[str],
        types: list[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """INSERT ... ON CONFLICT DO UPDATE of a meta table: pipelined executemany for
        a few rows, binary COPY into a staging table for many."""
        if not rows:
            return
        target = self._meta(table)
        updates = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in columns
            if c not in key
        )
        conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(
            ddl.identifiers(key), updates
        )
        if len(rows) <= SMALL_BATCH:
            statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) {}").format(
                target,
                ddl.identifiers(columns),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                conflict,
            )
            with self.conn.cursor() as cur:
                cur.executemany(statement, rows)
            return
        self._count_bulk(self.store.meta_schema, table, len(rows))
        stage = sql.Identifier(self._temp_name("stage"))
        self._execute(
            sql.SQL("CREATE TEMPORARY TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                stage, ddl.identifiers(columns), target
            )
        )
        with self.conn.cursor() as cur:
            copy_statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                stage, ddl.identifiers(columns)
            )
            with cur.copy(copy_statement) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        self._execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(
                target, ddl.identifiers(columns), ddl.identifiers(columns), stage, conflict
            )
        )
        self._execute(sql.SQL("DROP TABLE {}").format(stage))

    def _apply_chains(self, chains: dict[tuple[str, int], list[int]]) -> None:
        cleared = [(owner, rowid) for (owner, rowid), pages in chains.items() if not pages]
        if cleared:
            self._execute(
                sql.SQL(
                    "DELETE FROM {} c USING unnest(%s::text[], %s::bigint[]) AS d(owner, rowid)"
                    " WHERE c.owner = d.owner AND c.rowid = d.rowid"
                ).format(self._meta("overflow_chain")),
                ([o for o, _ in cleared], [r for _, r in cleared]),
            )
        rows = [(owner, rowid, list(pages)) for (owner, rowid), pages in chains.items() if pages]
        self._upsert(
            "overflow_chain",
            ["owner", "rowid", "pages"],
            ["owner", "rowid"],
            ["text", "int8", "int8[]"],
            rows,
        )

    def _apply_pages(self, pages: list[PageRecord], removed_from: int | None) -> int:
        rows = {}
        for page in pages:
            rows[page.pgno] = (
                page.pgno,
                page.kind,
                page.owner,
                page.lo,
                page.hi,
                page.seq,
                None if page.data is None else bytes(page.data),
            )
        self._upsert(
            "pages",
            ["pgno", "kind", "owner", "lo", "hi", "seq", "data"],
            ["pgno"],
            ["int8", "text", "text", "int8", "int8", "int4", "bytea"],
            list(rows.values()),
        )
        removed = 0
        if removed_from is not None:
            removed = self._execute(
                sql.SQL("DELETE FROM {} WHERE pgno >= %s").format(self._meta("pages")),
                (removed_from,),
            )
        return len(rows) + removed

    def _apply_meta(self, changeset: Changeset, header: DatabaseHeader) -> None:
        values = [
            ("header", None, bytes(changeset.header[:HEADER_SIZE])),
            ("page_count", str(changeset.page_count), None),
            ("page_size", str(header.page_size), None),
            ("text_encoding", header.text_encoding.name, None),
            ("schema_format", str(header.schema_format), None),
        ]
        self._upsert("meta", ["key", "value", "data"], ["key"], ["text", "text", "bytea"], values)
        if changeset.schema_entries is not None:
            self._execute(sql.SQL("DELETE FROM {}").format(self._meta("sqlite_schema")))
            entries = [
                (position, e.type, e.name, e.tbl_name, e.rootpage, e.sql)
                for position, e in enumerate(changeset.schema_entries)
            ]
            if entries:
                with self.conn.cursor() as cur:
                    cur.executemany(
                        sql.SQL(
                            "INSERT INTO {} (position, type, name, tbl_name, rootpage, sql)"
                            " VALUES (%s, %s, %s, %s, %s, %s)"
                        ).format(self._meta("sqlite_schema")),
                        entries,
                    )
