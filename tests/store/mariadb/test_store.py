"""What only the MariaDB backend does: DDL outside the transaction (and what a failure
between the steps leaves), names MariaDB cannot hold, connection errors without secrets.

The contract every backend meets is tests/store/test_contract.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import mariadb
import pytest

from pgfs.sqlite.schema import SchemaEntry, parse_create_table
from pgfs.store import open_store
from pgfs.store.changeset import SchemaChange, TableRows
from pgfs.store.errors import StoreError, StoreUnavailableError
from pgfs.store.interface import LeaseHolder
from pgfs.store.mariadb import MariaDBStore
from tests.support.mariadb_server import MariaDBServer
from tests.support.server_view import MariaDBView

from ..helpers import SqliteFile, apply, ddl_change, import_file, record, table_change

T1 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)"
T2 = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b REAL)"


def _open(url: str) -> MariaDBStore:
    store = open_store(url)
    assert isinstance(store, MariaDBStore)
    store.initialise()
    store.acquire_lease(LeaseHolder.this_process("tests/store/mariadb"))
    return store


@pytest.fixture
def store(mariadb_url: str) -> Iterator[MariaDBStore]:
    opened = _open(mariadb_url)
    yield opened
    opened.close()


@pytest.fixture
def server(mariadb_url: str) -> MariaDBView:
    return MariaDBView(mariadb_url)


def _work_tables(server: MariaDBView) -> set[str]:
    return {t for t in server.tables() if t.startswith("_pgfs_")}


def _writer_waiting(server: MariaDBView, state: str = "", info: str = "") -> int:
    """The id of the pgfs connection whose statement waits in `state` (or runs `info`)."""
    for _ in range(200):
        rows = server.query(
            "SELECT id FROM information_schema.processlist WHERE id <> connection_id()"
            " AND state LIKE %s AND COALESCE(info, '') LIKE %s",
            (f"%{state}%", f"%{info}%"),
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.05)
    raise AssertionError(f"no pgfs statement reached {state!r} / {info!r}")


def _gone(server: MariaDBView, session: int) -> None:
    for _ in range(200):
        query = "SELECT 1 FROM information_schema.processlist WHERE id = %s"
        if not server.query(query, (session,)):
            return
        time.sleep(0.05)
    raise AssertionError(f"session {session} did not end")


def _in_thread(work) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _alter_with_rows(store: MariaDBStore) -> dict[int, bytes]:
    rows = {i: record(None, f"a{i}") for i in range(1, 6)}
    apply(store, table_change("t", T1, rows))
    return rows


def test_renames_owed_after_the_commit_are_finished_by_the_next_writer(
    store: MariaDBStore, server: MariaDBView, mariadb_url: str
) -> None:
    """ALTER TABLE fills a new table inside the transaction; its rename comes after the
    COMMIT. The connection dies while the rename waits: the commit stands, and the
    next writer (a new mount) finishes the rename before it serves."""
    rows = _alter_with_rows(store)
    full = record(None, "new", 1.5)
    change = ddl_change(
        SchemaChange(altered=[(parse_create_table(T1), parse_create_table(T2))]),
        T2,
        rows={"t": TableRows("t", {6: full})},
    )
    blocker = mariadb.connect(**_kwargs(mariadb_url))
    cur = blocker.cursor()
    cur.execute("START TRANSACTION")
    cur.execute("SELECT * FROM jellyfin.t LIMIT 1")  # holds t's metadata lock
    cur.fetchall()
    thread, outcome = _in_thread(lambda: apply(store, change))
    victim = _writer_waiting(server, "metadata lock")
    server.query(f"KILL CONNECTION {victim}")
    _gone(server, victim)  # else the killed RENAME may still take the lock and run
    thread.join(30)
    blocker.rollback()
    blocker.close()
    (stats,) = outcome
    assert stats.inserted == {"t": 1}  # the commit landed, and the caller was told so
    assert server.count("ddl_pending", "pgfs") == 1
    assert server.columns("t") == ["id", "a", "_pgfs_record", "_pgfs_fields", "_pgfs_inexact"]
    store.close()

    successor = _open(mariadb_url)  # takes the lease: finishes what is owed first
    try:
        successor.write([table_change("t", "", {7: full})], source=change.source)
        assert successor.row_payloads("t", range(1, 8)) == rows | {6: full, 7: full}
        assert "b" in server.columns("t")
        assert server.count("ddl_pending", "pgfs") == 0
        assert not _work_tables(server)
    finally:
        successor.close()


def test_a_read_finishes_the_renames_its_rows_wait_for(
    store: MariaDBStore, server: MariaDBView, mariadb_url: str
) -> None:
    """The rename after COMMIT failed; the committed rows sit in a work table: the next
    read of this store (the lease holder) finishes the rename first and finds them."""
    rows = _alter_with_rows(store)
    full = record(None, "new", 1.5)
    alter = SchemaChange(altered=[(parse_create_table(T1), parse_create_table(T2))])
    change = ddl_change(alter, T2, rows={"t": TableRows("t", {6: full})})
    blocker = mariadb.connect(**_kwargs(mariadb_url))
    cur = blocker.cursor()
    cur.execute("START TRANSACTION")
    cur.execute("SELECT * FROM jellyfin.t LIMIT 1")
    cur.fetchall()
    thread, outcome = _in_thread(lambda: apply(store, change))
    victim = _writer_waiting(server, "metadata lock")
    server.query(f"KILL CONNECTION {victim}")
    _gone(server, victim)
    thread.join(30)
    blocker.rollback()
    blocker.close()
    assert not isinstance(outcome[0], BaseException), outcome
    assert server.count("ddl_pending", "pgfs") == 1
    assert store.row_payloads("t", range(1, 7)) == rows | {6: full}
    assert server.count("ddl_pending", "pgfs") == 0 and not _work_tables(server)


def test_renames_owed_wait_for_a_reader_of_the_table(
    store: MariaDBStore, server: MariaDBView, mariadb_url: str
) -> None:
    """A reader holding the table delays the rename after the COMMIT, nothing more."""
    rows = _alter_with_rows(store)
    alter = SchemaChange(altered=[(parse_create_table(T1), parse_create_table(T2))])
    change = ddl_change(alter, T2)
    blocker = mariadb.connect(**_kwargs(mariadb_url))
    blocker.cursor().execute("LOCK TABLES jellyfin.t READ")
    thread, outcome = _in_thread(lambda: apply(store, change))
    _writer_waiting(server, "metadata lock")
    blocker.close()  # released: the rename goes through now
    thread.join(30)
    assert not isinstance(outcome[0], BaseException), outcome
    assert store.row_payloads("t", rows) == rows
    assert "b" in server.columns("t")
    assert not _work_tables(server) and server.count("ddl_pending", "pgfs") == 0


def test_a_write_killed_between_its_ddl_and_its_commit_leaves_nothing(
    store: MariaDBStore, server: MariaDBView, sample: SqliteFile, mariadb_url: str
) -> None:
    """The tables made before the transaction are dropped when it fails; the store is as
    before, and the next write goes through."""
    import_file(store, sample.path)
    before = server.snapshot()
    create = "CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT)"
    change = ddl_change(
        SchemaChange(created=[parse_create_table(create)]),
        rows={"fresh": TableRows("fresh", {1: record(None, "v")})},
    )
    change.schema_entries = [*sample.entries(), SchemaEntry("table", "fresh", "fresh", 99, create)]
    blocker = mariadb.connect(**_kwargs(mariadb_url))
    cur = blocker.cursor()
    cur.execute("START TRANSACTION")
    cur.execute("SELECT * FROM pgfs.meta WHERE `key` = 'page_count' FOR UPDATE")
    cur.fetchall()
    thread, outcome = _in_thread(lambda: apply(store, change))
    victim = _writer_waiting(server, info="INSERT INTO `pgfs`.`meta`")
    assert any(t.startswith("_pgfs_s_") for t in _work_tables(server))
    server.query(f"KILL CONNECTION {victim}")
    thread.join(30)
    blocker.rollback()
    blocker.close()
    assert isinstance(outcome[0], StoreUnavailableError), outcome
    assert server.snapshot() == before
    stats = apply(store, change)
    assert stats.inserted == {"fresh": 1}
    assert store.row_payloads("fresh", [1]) == {1: record(None, "v")}
    assert not _work_tables(server)


@pytest.mark.parametrize(
    "name",
    ["it's", 'say "hi"', "Mixed Case", "a?b", "50% off", "back`tick", "slash\\/#--"],
)
def test_odd_table_and_column_names(store: MariaDBStore, server: MariaDBView, name: str):
    quoted = '"' + name.replace('"', '""') + '"'
    create = f"CREATE TABLE {quoted} (id INTEGER PRIMARY KEY, {quoted} TEXT, [x y] REAL)"
    rows = {1: record(None, "trailing space ", 0.5), 2: record(None, "ÄÖü😀", None)}
    apply(store, table_change(name, create, rows))
    assert store.row_payloads(name, [1, 2]) == rows
    assert [r.rowid for r in store.leaf_rows(name, [(1, 2)])] == [1, 2]
    assert server.select(name, ["id", name, "x y"]) == [
        (1, "trailing space ", 0.5),
        (2, "ÄÖü😀", None),
    ]
    apply(store, table_change(name, "", {}, updated={1: record(None, "x", 1.0)}, deleted={2}))
    assert store.row_payloads(name, [1, 2]) == {1: record(None, "x", 1.0)}


def test_text_compares_byte_for_byte(store: MariaDBStore, server: MariaDBView):
    """utf8mb4_nopad_bin: no case folding, no trailing-space padding."""
    create = "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"
    apply(store, table_change("k", create, {1: record(None, "a"), 2: record(None, "a ")}))
    apply(store, table_change("k", "", {3: record(None, "A")}))
    assert server.select("k", ["id"], "v = 'a'") == [(1,)]
    assert server.select("k", ["id"], "v = 'A'") == [(3,)]


@pytest.mark.parametrize(
    ("create", "match"),
    [
        ('CREATE TABLE "t " (a)', "ends with a space"),
        (f"CREATE TABLE {'x' * 65} (a)", "64-character"),
        ("CREATE TABLE h (_PGFS_RECORD TEXT)", "hidden columns"),
        ("CREATE TABLE _pgfs_s_x (a)", "prefix"),
    ],
)
def test_names_mariadb_cannot_hold_are_refused(
    store: MariaDBStore, server: MariaDBView, create: str, match: str
):
    before = server.snapshot()
    name = parse_create_table(create).name
    with pytest.raises(StoreError, match=match):
        apply(store, table_change(name, create, {}))
    assert server.snapshot() == before


def test_connection_errors_name_the_server_but_not_the_password(
    mariadb_server: MariaDBServer,
):
    wrong = mariadb_server.url(password="not-the-password")
    with pytest.raises(StoreUnavailableError) as info:
        open_store(wrong)
    message = str(info.value)
    assert "cannot connect to MariaDB" in message and "user=pgfs" in message
    assert "not-the-password" not in message and mariadb_server.password not in message


def _kwargs(url: str) -> dict:
    from pgfs.store.mariadb.connection import connect_kwargs

    return connect_kwargs(url)
