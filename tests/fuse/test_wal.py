"""WAL through a real mount: checkpoints of every kind while another process holds an
older snapshot, and what the database file alone holds at each point."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from .helpers import Client, Mount, Worker, drop_page_cache, table_digest
from .workload import Tables, assert_same

SETUP = """
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, payload BLOB,
                   note TEXT);
CREATE TABLE tags(guid TEXT PRIMARY KEY, item_id INTEGER, label TEXT, weight REAL);
CREATE INDEX tags_item ON tags(item_id);
"""


def _fill(client: Client) -> None:
    client.execute("BEGIN")
    client.executemany(
        "INSERT INTO items(name, score, payload, note) VALUES (?, ?, ?, ?)",
        [(f"item {i}", i * 0.5, bytes([i % 251]) * (i % 7 * 300), None) for i in range(600)],
    )
    client.executemany(
        "INSERT INTO tags VALUES (?, ?, ?, ?)",
        [(f"{i:08X}-GUID", i % 600, f"label {i}", i / 3) for i in range(600)],
    )
    client.execute("COMMIT")


def file_snapshot(db: Path, tmp_path: Path, name: str) -> Path:
    """The database file alone (no WAL), copied out through the mount, uncached."""
    drop_page_cache(db)
    copy = tmp_path / name
    copy.write_bytes(db.read_bytes())
    return copy


def digests_of_file(path: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        client = Client.__new__(Client)
        client.kind, client.conn = "sqlite3", conn
        return {t: table_digest(client, t) for t in ("items", "tags")}
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
def test_checkpoint_with_an_older_snapshot_open(
    mount: Mount, pg_dsn: str, tmp_path: Path, mode: str
) -> None:
    """A reader holds the snapshot S0 while the writer commits and checkpoints.

    C0 (items) is in the WAL when the reader starts; C1 changes other pages (tags), so
    a checkpoint limited to S0 copies all of C0 and the database file alone is S0
    (SQLite copies a page only when its newest frame is within reach). C2 then changes
    every page: the reader, reading pages it never read, still sees S0.
    """
    tables = Tables()
    with Client(mount.db) as writer:
        writer.script(SETUP)
        _fill(writer)
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert_same(writer, pg_dsn, tables, "after the fill")
        writer.execute("UPDATE items SET name = upper(name)")  # C0, same sizes
        at_s0 = {t: table_digest(writer, t) for t in tables.columns}

        with Worker(mount.db) as reader:
            reader.execute("PRAGMA cache_size=5")
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM tags") == [[600]]

            writer.execute("UPDATE tags SET label = upper(label)")  # C1: other pages
            assert_same(writer, pg_dsn, tables, "after C1")
            writer.execute("PRAGMA busy_timeout=0")
            busy, log_frames, done = writer.execute(f"PRAGMA wal_checkpoint({mode})")[0]
            assert busy == (0 if mode == "PASSIVE" else 1)
            assert 0 < done < log_frames
            assert digests_of_file(file_snapshot(mount.db, tmp_path, "s0.db")) == at_s0

            # C2..: every page changes, pages are freed and the database grows.
            writer.execute("UPDATE items SET name = name || ' v1', score = score + 1")
            writer.execute("UPDATE tags SET label = label || ' v1', weight = -weight")
            writer.execute("DELETE FROM items WHERE id % 3 = 0")
            writer.execute("INSERT INTO items(name, payload) VALUES ('big', zeroblob(20000))")
            assert_same(writer, pg_dsn, tables, "after C2")
            at_latest = {t: table_digest(writer, t) for t in tables.columns}
            writer.execute(f"PRAGMA wal_checkpoint({mode})")

            drop_page_cache(mount.db)
            for table in tables.columns:
                assert reader.digest(table) == at_s0[table]
            assert reader.execute("PRAGMA integrity_check") == [["ok"]]
            reader.execute("COMMIT")
            assert reader.digest("items") == at_latest["items"]

        writer.execute("PRAGMA busy_timeout=30000")
        busy, log_frames, done = writer.execute(f"PRAGMA wal_checkpoint({mode})")[0]
        assert busy == 0
        assert digests_of_file(file_snapshot(mount.db, tmp_path, "latest.db")) == at_latest
        if mode == "TRUNCATE":
            assert mount.db_status()["wal_bytes"] == 0
            assert mount.db_status()["preimages"] == 0

        # After RESTART or TRUNCATE the next commit starts a new WAL generation.
        writer.execute("INSERT INTO items(name) VALUES ('after checkpoint')")
        assert_same(writer, pg_dsn, tables, "after the checkpoint")
        if mode in ("RESTART", "TRUNCATE"):
            # The pre-images were dropped with the old WAL; only this commit's pages remain.
            status = mount.db_status()
            assert status["preimages"] <= status["last_commit"]["pages"]
        assert writer.one("PRAGMA integrity_check") == "ok"
        final = {t: table_digest(writer, t) for t in tables.columns}

    mount.restart()
    with Client(mount.db, "apsw") as client:
        assert {t: table_digest(client, t) for t in tables.columns} == final
        assert client.one("PRAGMA integrity_check") == "ok"


def test_spilled_then_rolled_back_frames_are_overwritten(mount: Mount, pg_dsn: str) -> None:
    """A transaction larger than the cache spills frames into the WAL and rolls back; the
    next transaction writes over those frames from the same offset."""
    tables = Tables()
    with Client(mount.db) as client:
        client.script(SETUP)
        client.execute("PRAGMA cache_size=10")
        _fill(client)
        assert_same(client, pg_dsn, tables, "after the fill")
        before = mount.db_status()["commits"]
        wal_before = mount.db_status()["wal_bytes"]
        client.execute("BEGIN")
        client.execute("UPDATE items SET payload = zeroblob(3000), name = 'spilled'")
        assert mount.db_status()["wal_bytes"] > wal_before  # frames spilled, no commit frame
        client.execute("ROLLBACK")
        assert mount.db_status()["commits"] == before
        assert_same(client, pg_dsn, tables, "after the rollback")
        client.execute("UPDATE items SET name = 'small' WHERE id = 5")
        assert_same(client, pg_dsn, tables, "after the next commit")
        assert client.one("PRAGMA integrity_check") == "ok"
        final = {t: table_digest(client, t) for t in tables.columns}
    mount.restart()
    with Client(mount.db) as client:
        assert {t: table_digest(client, t) for t in tables.columns} == final


def test_many_readers_and_a_writer(mount: Mount, pg_dsn: str) -> None:
    """Readers in other processes start read transactions between the writer's commits;
    each one keeps seeing its own snapshot while automatic checkpoints run."""
    tables = Tables()
    with Client(mount.db) as writer:
        writer.script(SETUP)
        writer.execute("PRAGMA wal_autocheckpoint=20")
        _fill(writer)
        readers: list[tuple[Worker, dict[str, tuple[str, int]]]] = []
        try:
            for round_ in range(4):
                expected = {t: table_digest(writer, t) for t in tables.columns}
                reader = Worker(mount.db, "apsw" if round_ % 2 else "sqlite3")
                reader.execute("PRAGMA cache_size=5")
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM items")
                readers.append((reader, expected))
                writer.execute(f"UPDATE items SET score = score + {round_} WHERE id % 4 = {round_}")
                writer.execute(f"UPDATE tags SET weight = {round_} WHERE rowid % 5 = {round_}")
                assert_same(writer, pg_dsn, tables, f"in round {round_}")
            drop_page_cache(mount.db)
            for reader, expected in readers:
                for table in tables.columns:
                    assert reader.digest(table) == expected[table]
                reader.execute("COMMIT")
        finally:
            for reader, _ in readers:
                reader.close()
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert writer.one("PRAGMA integrity_check") == "ok"
        assert_same(writer, pg_dsn, tables, "at the end")
