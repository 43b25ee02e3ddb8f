"""Every journal mode through a real mount: PostgreSQL equals SQLite after every commit,
and after an unmount and a remount."""

from __future__ import annotations

import pytest

from .helpers import Client, Mount
from .workload import Tables, assert_same, run_workload

MODES = [
    ("delete", "sqlite3"),
    ("truncate", "apsw"),
    ("persist", "sqlite3"),
    ("wal", "apsw"),
    ("wal", "sqlite3"),
]


@pytest.mark.parametrize(("mode", "kind"), MODES, ids=[f"{m}-{k}" for m, k in MODES])
def test_workload_in_journal_mode(mount: Mount, pg_dsn: str, mode: str, kind: str) -> None:
    tables = Tables()
    with Client(mount.db, kind) as client:
        assert client.one(f"PRAGMA journal_mode={mode}") == mode
        client.execute("PRAGMA cache_size=50")  # large transactions spill pages early

        def check(where: str) -> None:
            assert_same(client, pg_dsn, tables, where)

        run_workload(client, check, tables)
        expected = {t: client.execute(f"SELECT * FROM {t} ORDER BY rowid") for t in tables.columns}
        assert client.one("PRAGMA integrity_check") == "ok"

    status = mount.db_status()
    assert status["commits"] >= 15
    assert status["last_error"] is None
    mount.restart()

    with Client(mount.db, "sqlite3" if kind == "apsw" else "apsw") as client:
        assert client.one("PRAGMA integrity_check") == "ok"
        assert client.one("PRAGMA journal_mode") == ("wal" if mode == "wal" else "delete")
        for table in tables.columns:
            assert client.execute(f"SELECT * FROM {table} ORDER BY rowid") == expected[table]
        assert_same(client, pg_dsn, tables, "after the remount")
        # The remounted database takes new commits.
        client.execute("INSERT INTO items(name) VALUES ('after remount')")
        assert_same(client, pg_dsn, tables, "after a commit on the remounted database")
