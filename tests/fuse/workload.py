"""A deterministic SQLite workload with a PostgreSQL comparison after every commit."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.dbgen import text

from .helpers import Client, pg_rows, sqlite_rows

SCHEMA = """
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, payload BLOB,
                   note TEXT);
CREATE TABLE tags(guid TEXT PRIMARY KEY, item_id INTEGER, label TEXT, weight REAL);
CREATE INDEX tags_item ON tags(item_id);
"""


@dataclass
class Tables:
    """Columns and rowid column of each table the workload keeps."""

    columns: dict[str, list[str]] = field(
        default_factory=lambda: {
            "items": ["id", "name", "score", "payload", "note"],
            "tags": ["guid", "item_id", "label", "weight"],
        }
    )
    rowid: dict[str, str] = field(default_factory=lambda: {"items": "id", "tags": "_rowid"})


def assert_same(
    client: Client, dsn: str, tables: Tables, where: str = "", schema: str = "jellyfin"
) -> None:
    """The server's typed tables hold exactly what SQLite shows."""
    for table, columns in tables.columns.items():
        expected = sqlite_rows(client, table, columns)
        got = pg_rows(dsn, table, columns, tables.rowid[table], schema)
        assert got == expected, f"{table} differs from SQLite {where}"


def _item(rng: random.Random, number: int) -> tuple:
    big = rng.random() < 0.15
    return (
        f"item {number} {text(rng, rng.randint(0, 40))}",
        rng.choice([None, rng.uniform(-1e6, 1e6), float(rng.randint(0, 100))]),
        rng.randbytes(rng.choice([0, 10, 300, 5000, 13000]) if big else rng.randint(0, 200)),
        text(rng, 3000) if rng.random() < 0.05 else None,
    )


def _tag(rng: random.Random, number: int, items: int) -> tuple:
    guid = f"{rng.getrandbits(128):032X}-{number}"
    return (guid, rng.randint(1, items), text(rng, rng.randint(1, 30)), rng.random())


def run_workload(
    client: Client,
    check: Callable[[str], None],
    tables: Tables,
    *,
    scale: int = 1,
    seed: int = 7,
) -> None:
    """Create, insert, update and delete (overflow rows, splits and merges), checking after
    each commit. `check(where)` compares PostgreSQL with SQLite."""
    rng = random.Random(seed)
    client.script(SCHEMA)
    check("after CREATE TABLE")

    n_items = 300 * scale
    client.execute("BEGIN")
    client.executemany(
        "INSERT INTO items(name, score, payload, note) VALUES (?, ?, ?, ?)",
        [_item(rng, i) for i in range(n_items)],
    )
    client.executemany(
        "INSERT INTO tags VALUES (?, ?, ?, ?)", [_tag(rng, i, n_items) for i in range(500 * scale)]
    )
    client.execute("COMMIT")
    check("after the first bulk insert")

    # Grow and shrink rows (overflow chains appear, change and disappear).
    client.execute("BEGIN")
    for item_id in range(1, n_items + 1, 3):
        size = rng.choice([0, 50, 4000, 9000])
        client.execute(
            "UPDATE items SET payload = ?, name = name || '!' WHERE id = ?",
            (rng.randbytes(size), item_id),
        )
    client.execute("COMMIT")
    check("after updates")

    client.execute("DELETE FROM tags WHERE rowid % 2 = 0")
    check("after deleting half the tags")
    client.execute("DELETE FROM items WHERE id % 4 = 1")
    check("after deleting a quarter of the items")

    # A bulk transaction of many small rows: page splits.
    client.execute("BEGIN")
    client.executemany(
        "INSERT INTO items(name, score) VALUES (?, ?)",
        [(f"bulk {i}", i / 7) for i in range(3000 * scale)],
    )
    client.execute("COMMIT")
    check("after the bulk insert")

    # Delete a whole range: pages merge and go to the freelist.
    client.execute("DELETE FROM items WHERE name LIKE 'bulk %' AND score > 100")
    check("after the range delete")

    for i in range(5):
        client.execute("INSERT INTO tags VALUES (?, ?, ?, ?)", _tag(rng, 10_000 + i, n_items))
        check(f"after single insert {i}")
        client.execute("UPDATE items SET score = ? WHERE id = ?", (i * 1.5, 2 + i))
        check(f"after single update {i}")

    client.execute("ALTER TABLE items ADD COLUMN extra INTEGER")
    tables.columns["items"].append("extra")
    client.execute("UPDATE items SET extra = id * 3 WHERE id % 10 = 0")
    check("after ALTER TABLE ADD COLUMN")
