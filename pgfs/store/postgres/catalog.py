"""The meta schema: pgfs' own tables, their creation and upgrade, and the stored state.

Meta schema (default `pgfs`), README Design "What the server holds":

- `meta(key, value, data)`: `format`, `header` (data = the 100 header bytes),
  `page_count`, `page_size`, `text_encoding`, `schema_format`, `commit_seq`
  (the number of the last write), `lease_epoch` and `lease_holder` (JSON);
- `sqlite_schema(position, type, name, tbl_name, rootpage, sql)`: the mirror;
- `pages(pgno, kind, owner, lo, hi, seq, data)`: one row per page number;
- `overflow_chain(owner, rowid, pages bigint[])`: overflow page numbers of a row;
- `commit_log(id, commit_id, seq, epoch, committed_at, source, inserted,
  updated, deleted, pages, ms, tables jsonb)`: one row per write;
- `fence(epoch)`: raises unless the lease epoch is `epoch`, holding a share
  lock on it until the transaction ends (so a takeover, which updates it,
  waits for a commit in flight and is never overtaken by it).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgfs.sqlite.schema import SchemaEntry, table_definitions
from pgfs.store.catalog import CatalogBase
from pgfs.store.changeset import PageKind
from pgfs.store.errors import StoreConflictError, StoreError
from pgfs.store.postgres import ddl
from pgfs.store.stored import MetaValues
from pgfs.store.stored import parse_header as parse_header  # re-exported

FORMAT_VERSION = "3"
OLD_FORMATS = ("1", "2")
"""Formats `initialise` upgrades in place."""
META_TABLES = ("meta", "sqlite_schema", "pages", "overflow_chain", "commit_log")
FENCE_SQLSTATE = "PF001"
_RELATION_KINDS = ["r", "p", "v", "m", "f"]


@dataclass(frozen=True)
class Catalog(CatalogBase):
    """The two schemas of one store and how pgfs' own objects are named in them."""

    meta_tables = META_TABLES

    @classmethod
    def check_name(cls, name: str) -> None:
        ddl.check_identifier(name, "schema")

    def meta(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.meta_schema, table)

    def data(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.data_schema, table)

    @property
    def lock_key(self) -> int:
        """The advisory-lock key of the lease: a signed 64-bit hash of the meta schema."""
        import hashlib

        digest = hashlib.sha256(f"pgfs-lease:{self.meta_schema}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    # ------------------------------------------------------------------ reading

    def table_exists(self, conn: psycopg.Connection, schema: str, name: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        ).fetchone()
        return row is not None

    def initialised(self, conn: psycopg.Connection) -> bool:
        return self.table_exists(conn, self.meta_schema, "pages")

    def tables(self, conn: psycopg.Connection, schema: str) -> set[str]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = ANY(%s)",
            (schema, _RELATION_KINDS),
        ).fetchall()
        return {r[0] for r in rows}

    def entries(self, conn: psycopg.Connection) -> list[SchemaEntry]:
        rows = conn.execute(
            sql.SQL("SELECT type, name, tbl_name, rootpage, sql FROM {} ORDER BY position").format(
                self.meta("sqlite_schema")
            )
        ).fetchall()
        return [SchemaEntry(*row) for row in rows]

    def meta_values(self, conn: psycopg.Connection) -> MetaValues:
        return {
            key: (value, data)
            for key, value, data in conn.execute(
                sql.SQL("SELECT key, value, data FROM {}").format(self.meta("meta"))
            )
        }

    # ------------------------------------------------------------------ creating

    def initialise(self, conn: psycopg.Connection) -> None:
        """Create (or upgrade) the meta schema; refuse schemas holding foreign tables."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key ^ 1,))
            check_server(conn)
            stored = self._stored_format(conn)
            self.check_foreign(conn)
            for statement in self._create_statements():
                conn.execute(statement)
            if stored in OLD_FORMATS:
                self._upgrade(conn)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key, value) VALUES ('format', %s), ('lease_epoch', '0'),"
                    " ('commit_seq', '0'), ('store_id', gen_random_uuid()::text)"
                    " ON CONFLICT (key) DO NOTHING"
                ).format(self.meta("meta")),
                (FORMAT_VERSION,),
            )
            conn.execute(self._fence_function())

    def _stored_format(self, conn: psycopg.Connection) -> str | None:
        if not self.table_exists(conn, self.meta_schema, "meta"):
            return None
        row = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'format'").format(self.meta("meta"))
        ).fetchone()
        stored = row[0] if row is not None else None
        if stored is not None and stored != FORMAT_VERSION and stored not in OLD_FORMATS:
            raise StoreConflictError(
                f"schema {self.meta_schema!r} holds pgfs format {stored!r}; "
                f"this pgfs uses format {FORMAT_VERSION!r}"
            )
        return stored

    def _create_statements(self) -> list[sql.Composed]:
        kinds = sql.SQL(", ").join(sql.Literal(k.value) for k in PageKind)
        return [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.meta_schema)),
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.data_schema)),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text, data bytea)"
            ).format(self.meta("meta")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (position integer PRIMARY KEY, type text NOT NULL,"
                " name text NOT NULL, tbl_name text NOT NULL, rootpage bigint NOT NULL, sql text)"
            ).format(self.meta("sqlite_schema")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (pgno bigint PRIMARY KEY CHECK (pgno > 0),"
                " kind text NOT NULL CHECK (kind IN ({})), owner text, lo bigint, hi bigint,"
                " seq integer, data bytea)"
            ).format(self.meta("pages"), kinds),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS pages_owner_kind_lo ON {} (owner, kind, lo)"
            ).format(self.meta("pages")),
            # A raw page compresses to well under a heap page: kept inline (compressed)
            # rather than in TOAST, an upsert writes one tuple instead of three.
            sql.SQL("ALTER TABLE {} ALTER COLUMN data SET STORAGE MAIN").format(self.meta("pages")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (owner text NOT NULL, rowid bigint NOT NULL,"
                " pages bigint[] NOT NULL, PRIMARY KEY (owner, rowid))"
            ).format(self.meta("overflow_chain")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY,"
                " commit_id uuid UNIQUE, seq bigint, epoch bigint,"
                " committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                " source text NOT NULL, inserted bigint NOT NULL, updated bigint NOT NULL,"
                " deleted bigint NOT NULL, pages bigint NOT NULL, ms double precision NOT NULL,"
                " tables jsonb NOT NULL)"
            ).format(self.meta("commit_log")),
        ]

    def _upgrade(self, conn: psycopg.Connection) -> None:
        """Format 1 -> 2: commit ids, commit sequence and lease epoch. 2 -> 3: every data
        table gets `_pgfs_inexact` (rows already stored keep rendering from their typed
        columns; rows written from now on carry their record)."""
        for name in table_definitions(self.entries(conn)):
            if self.table_exists(conn, self.data_schema, name):
                conn.execute(ddl.add_inexact_column(self.data_schema, name))
        log_table = self.meta("commit_log")
        for column, kind in (("commit_id", "uuid UNIQUE"), ("seq", "bigint"), ("epoch", "bigint")):
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    log_table, sql.Identifier(column), sql.SQL(kind)
                )
            )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (key, value) SELECT 'commit_seq', coalesce(max(id), 0)::text"
                " FROM {} ON CONFLICT (key) DO NOTHING"
            ).format(self.meta("meta"), log_table)
        )
        conn.execute(
            sql.SQL("UPDATE {} SET value = %s WHERE key = 'format'").format(self.meta("meta")),
            (FORMAT_VERSION,),
        )

    def _fence_function(self) -> sql.Composed:
        return sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(expected bigint) RETURNS void"
            " LANGUAGE plpgsql AS $pgfs_fence$"
            " DECLARE current_epoch bigint;"
            " BEGIN"
            "  SELECT value::bigint INTO current_epoch FROM {}"
            "   WHERE key = 'lease_epoch' FOR SHARE;"
            "  IF current_epoch IS DISTINCT FROM expected THEN"
            "   RAISE EXCEPTION 'pgfs lease lost: this writer holds epoch %, the store is at "
            "epoch % (another mount took over)', expected, current_epoch"
            "    USING ERRCODE = {};"
            "  END IF;"
            " END $pgfs_fence$"
        ).format(self.meta("fence"), self.meta("meta"), sql.Literal(FENCE_SQLSTATE))


def check_server(conn: psycopg.Connection) -> None:
    row = conn.execute("SHOW server_encoding").fetchone()
    encoding = row[0] if row else "?"
    if encoding.upper() not in ("UTF8", "UTF-8"):
        raise StoreError(
            f"the PostgreSQL database uses encoding {encoding}; pgfs needs UTF8 "
            "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
        )
