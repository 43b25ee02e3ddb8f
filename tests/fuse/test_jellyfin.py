"""Jellyfin's schemas, connection settings and maintenance task through a real mount, on
every backend (`store_url`: PostgreSQL and MariaDB, `pgfs mount --dsn URL`)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import Client, Mount, assert_all_tables_same

JELLYFIN_PRAGMAS = """
PRAGMA journal_mode=WAL;
PRAGMA locking_mode=NORMAL;
PRAGMA journal_size_limit=134217728;
PRAGMA synchronous=1;
PRAGMA temp_store=2;
"""


def _value(rng: random.Random, declared: str, column: str) -> object:
    kind = declared.upper()
    if "INT" in kind:
        return rng.randint(0, 10**12)
    if "REAL" in kind or "FLOA" in kind or "DOUB" in kind:
        return rng.random() * 10
    if "BLOB" in kind:
        return rng.randbytes(rng.randint(1, 40))
    if column in ("Data", "Overview"):
        return '{"Name":"' + "x" * rng.randint(100, 9000) + '"}'  # JSON: overflow pages
    if "Date" in column:
        return f"2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 12:00:00.1234567"
    return str(uuid.UUID(int=rng.getrandbits(128))).upper()


def _fill(client: Client, rng: random.Random, rows: int) -> None:
    tables = [
        (name,)
        for (name,) in client.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name NOT LIKE '\\_\\_%' ESCAPE '\\'"
        )
    ]
    for (table,) in tables:
        info = client.execute(f'PRAGMA table_info("{table}")')
        names = ", ".join(f'"{c[1]}"' for c in info)
        marks = ", ".join("?" for _ in info)
        client.execute("BEGIN")
        for _ in range(rows):
            values = []
            for _cid, column, declared, _notnull, _default, pk in info:
                if (
                    pk == 1
                    and declared.upper() == "INTEGER"
                    and len([c for c in info if c[5]]) == 1
                ):
                    values.append(None)  # AUTOINCREMENT / rowid alias
                else:
                    values.append(_value(rng, declared, column))
            client.execute(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})', values)
        client.execute("COMMIT")


@pytest.mark.parametrize("version", ["10.11", "12.0-rc"])
def test_jellyfin_schema_workload_and_maintenance(
    mount_factory: Callable[..., Mount],
    store_url: str,
    jellyfin_schema: Callable[[str], Path],
    version: str,
) -> None:
    pg_dsn = store_url
    mount = mount_factory(store_url)
    rng = random.Random(version)
    with Client(mount.db) as client:
        client.script(JELLYFIN_PRAGMAS)
        client.script(jellyfin_schema(version).read_text())
        _fill(client, rng, 25)
        assert assert_all_tables_same(client, pg_dsn, "after the fill") > 500
        # Playback: small upserts and deletes.
        client.execute('UPDATE "BaseItems" SET "Data" = \'{}\' WHERE rowid % 3 = 0')
        client.execute('DELETE FROM "ItemValues" WHERE rowid % 2 = 0')
        assert_all_tables_same(client, pg_dsn, "after updates")
        # The 6-hourly "Optimize database" task.
        client.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        client.execute("PRAGMA optimize")
        client.execute("VACUUM")
        client.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert_all_tables_same(client, pg_dsn, "after VACUUM")
        expected = {
            t: client.execute(f'SELECT * FROM "{t}" ORDER BY rowid')
            for (t,) in client.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        }
    mount.restart()
    with Client(mount.db, "apsw") as client:
        assert client.one("PRAGMA integrity_check") == "ok"
        for table, rows in expected.items():
            assert client.execute(f'SELECT * FROM "{table}" ORDER BY rowid') == rows
        assert_all_tables_same(client, pg_dsn, "after the remount")
