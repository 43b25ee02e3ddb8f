"""What only the PostgreSQL backend does: its locks, its backends, its name limits (the
contract every backend meets is tests/store/test_contract.py)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import sql

from pgfs.sqlite.schema import parse_create_table
from pgfs.store.changeset import (
    Changeset,
    CommitSource,
    PageKind,
    PageRecord,
    SchemaChange,
)
from pgfs.store.errors import StoreError, StoreUnavailableError
from pgfs.store.postgres import PostgresStore as Store

from ..helpers import SqliteFile, apply, ddl_change, header, import_file, record, table_change

WAL = CommitSource.WAL

HDR = header()


def snapshot(conn: psycopg.Connection) -> dict:
    """Every relation of the pgfs and jellyfin schemas with its columns and rows."""
    out = {}
    relations = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('pgfs', 'jellyfin') AND c.relkind = 'r' ORDER BY 1, 2"
    ).fetchall()
    for schema, name in relations:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, name),
        ).fetchall()
        rows = conn.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
        ).fetchall()
        out[(schema, name)] = (columns, sorted(map(repr, rows)))
    return out


def test_connection_killed_midway(store: Store, sample: SqliteFile, pg_dsn: str, pg):
    import_file(store, sample.path)
    before = snapshot(pg)
    changeset = table_change(
        "tags",
        "",
        {i: record(f"n{i}", i) for i in range(51, 2000)},
        updated={i: record(f"n{i}", i) for i in range(1, 51)},
    )
    changeset.pages = [PageRecord(1, PageKind.TABLE_LEAF, "sqlite_schema", data=b"zzz")]
    outcome: list[BaseException] = []

    def commit() -> None:
        try:
            apply(store, changeset)
        except BaseException as exc:
            outcome.append(exc)

    with psycopg.connect(pg_dsn) as blocker:
        # Hold a lock the commit needs once its rows are written: it blocks there.
        blocker.execute("LOCK TABLE pgfs.pages IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=commit)
        worker.start()
        victim = None
        for _ in range(200):
            victim = pg.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgfs-writer'"
                " AND wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            if victim:
                break
            time.sleep(0.05)
        assert victim, "the commit never reached the locked table"
        pg.execute("SELECT pg_terminate_backend(%s)", victim)
        worker.join(30)
        blocker.rollback()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailableError)
    assert "password" not in str(outcome[0])
    assert snapshot(pg) == before
    stats = apply(store, changeset)  # a new connection replaced the dead one
    assert stats.updated == {"tags": 50} and stats.inserted == {"tags": 1949}


def test_unsupported_table_fails_cleanly(store: Store, pg):
    before = snapshot(pg)
    with pytest.raises(StoreError, match="63-byte"):
        apply(store, table_change("x" * 70, f"CREATE TABLE {'x' * 70} (a)", {}))
    with pytest.raises(StoreError, match="no data table"):
        apply(store, table_change("ghost", "", {1: record(1)}))
    with pytest.raises(StoreError, match="header"):
        apply(store, Changeset(WAL, b"garbage", 1))
    assert snapshot(pg) == before


def test_table_names_postgres_would_use_for_indexes(store: Store, pg):
    """PostgreSQL names a primary key index "<table>_pkey"; SQLite may want that
    name for a table, also after the first table was renamed."""
    t, t_pkey, renamed = (
        "CREATE TABLE t (a TEXT)",
        "CREATE TABLE t_pkey (b TEXT)",
        "CREATE TABLE t2 (a TEXT)",
    )
    apply(store, ddl_change(SchemaChange(created=[parse_create_table(t)]), t))
    apply(store, ddl_change(SchemaChange(renamed=[("t", "t2")]), renamed))
    created = [parse_create_table(t_pkey), parse_create_table(t)]
    apply(store, ddl_change(SchemaChange(created=created), renamed, t_pkey, t))
    assert sorted(store.load_state().tables) == ["t", "t2", "t_pkey"]
    pg.execute("CREATE TABLE jellyfin.stray (x int)")
    pg.execute("COMMENT ON TABLE jellyfin.stray IS 'pgfs data table (rowid table)'")
    store.write([Changeset(WAL, HDR, 1)], source=WAL, clear=True)
    assert pg.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'jellyfin'"
    ).fetchone() == (0,)
