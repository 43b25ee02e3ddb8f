"""Looking behind a store, whatever its backend: what an operator would query in the
server (tables, columns, rows), through the server's own driver, never through pgfs.

`view_of(url)` gives a PostgreSQL or MariaDB view of the server a store URL names;
"schema" means a PostgreSQL schema or a MariaDB database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from pgfs.store import backend_of


def plain(value: Any) -> Any:
    """A driver's value as a test compares it: bytes for binary, int/float for numbers."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class ServerView:
    backend = ""

    def __init__(self, url: str) -> None:
        self.url = url

    def quote(self, name: str) -> str:
        raise NotImplementedError

    def table(self, schema: str, name: str) -> str:
        return f"{self.quote(schema)}.{self.quote(name)}"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one statement (placeholders: %s on both backends)."""
        with self.connection() as conn:
            cur = conn.cursor()
            cur.execute(text, tuple(params))
            rows = cur.fetchall() if cur.description else []
        return [tuple(plain(v) for v in row) for row in rows]

    def select(
        self, table: str, columns: Sequence[str], where: str = "", schema: str = "jellyfin"
    ) -> list[tuple]:
        """`columns` of a data table, in the order of its first column."""
        names = ", ".join(self.quote(c) for c in columns)
        condition = f" WHERE {where}" if where else ""
        return self.query(f"SELECT {names} FROM {self.table(schema, table)}{condition} ORDER BY 1")

    def count(self, table: str, schema: str = "jellyfin") -> int:
        return int(self.query(f"SELECT count(*) FROM {self.table(schema, table)}")[0][0])

    def tables(self, schema: str = "jellyfin") -> set[str]:
        return {
            r[0]
            for r in self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " AND table_type = 'BASE TABLE'",
                (schema,),
            )
        }

    def columns(self, table: str, schema: str = "jellyfin") -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s ORDER BY ordinal_position",
                (schema, table),
            )
        ]

    def schema_exists(self, schema: str) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
            )
        )

    def create_foreign_table(self, schema: str, name: str) -> None:
        """A table someone else made in `schema` (created with the schema if need be)."""
        raise NotImplementedError

    def snapshot(self, schemas: Sequence[str] = ("pgfs", "jellyfin")) -> dict:
        """Every table of the schemas with its columns and rows."""
        out = {}
        for schema in schemas:
            for name in sorted(self.tables(schema)):
                rows = self.query(f"SELECT * FROM {self.table(schema, name)}")
                out[(schema, name)] = (self.columns(name, schema), sorted(map(repr, rows)))
        return out

    def end_store_sessions(self) -> int:
        """End every session pgfs opened on the server (reads, writer, lease)."""
        raise NotImplementedError


class PostgresView(ServerView):
    backend = "postgres"

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            yield conn

    def create_foreign_table(self, schema: str, name: str) -> None:
        self.query(f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}")
        self.query(f"CREATE TABLE {self.table(schema, name)} (x int)")

    def end_store_sessions(self) -> int:
        rows = self.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'pgfs%%' AND datname = current_database()"
        )
        return len(rows)


class MariaDBView(ServerView):
    backend = "mariadb"

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        import mariadb

        from pgfs.store.mariadb.connection import connect_kwargs

        conn = mariadb.connect(**connect_kwargs(self.url))
        try:
            yield conn
        finally:
            conn.close()

    def create_foreign_table(self, schema: str, name: str) -> None:
        self.query(f"CREATE DATABASE IF NOT EXISTS {self.quote(schema)}")
        self.query(f"CREATE TABLE {self.table(schema, name)} (x int)")

    def end_store_sessions(self) -> int:
        with self.connection() as conn:
            cur = conn.cursor()
            cur.execute(
                "SELECT id FROM information_schema.processlist"
                " WHERE user = SUBSTRING_INDEX(current_user(), '@', 1)"
                " AND id <> connection_id()"
            )
            ids = [r[0] for r in cur.fetchall()]
            for pid in ids:
                with contextlib.suppress(Exception):
                    cur.execute(f"KILL CONNECTION {int(pid)}")
        return len(ids)


def view_of(url: str) -> ServerView:
    return MariaDBView(url) if backend_of(url) == "mariadb" else PostgresView(url)
