"""Random workloads through the commit path, checked after every commit."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from tests.support.dbgen import build_all_types
from tests.support.invariants import CommitHarness


def random_step(rng: random.Random, conn: sqlite3.Connection, step: int) -> None:
    """One transaction of random inserts, updates and deletes (sometimes DDL)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE name LIKE 'r%' AND type = 'table'"
        )
    ]
    conn.execute("BEGIN")
    if not tables or rng.random() < 0.1:
        without_rowid = rng.random() < 0.15
        name = f"rw{step}" if without_rowid else f"r{step}"
        conn.execute(
            f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, a TEXT, b BLOB, c REAL)"
            + (" WITHOUT ROWID" if without_rowid else "")
        )
        if rng.random() < 0.5:
            conn.execute(f"CREATE INDEX {name}_a ON {name} (a)")
        tables.append(name)
    for _ in range(rng.randrange(1, 6)):
        table = rng.choice(tables)
        op = rng.random()
        if op < 0.4:
            for _ in range(rng.randrange(1, 40)):
                size = rng.choice([0, 10, 200, 900, 3000, 12000, 60000])
                conn.execute(
                    f"INSERT OR REPLACE INTO {table} (id, a, b, c) VALUES (?, ?, ?, ?)",
                    (
                        rng.randrange(1, 3000)
                        if rng.random() < 0.7 or table.startswith("rw")
                        else None,
                        f"v{rng.randrange(1000)}" * rng.randrange(1, 20),
                        rng.randbytes(size),
                        rng.random(),
                    ),
                )
        elif op < 0.6:
            rows = conn.execute(f"SELECT id, length(b) FROM {table} ORDER BY id").fetchall()
            if rows:
                row = rng.choice(rows)
                same = rng.random() < 0.5 and row[1] is not None
                size = row[1] if same else rng.choice([5, 800, 5000, 30000])
                conn.execute(
                    f"UPDATE {table} SET b = ? WHERE id = ?", (rng.randbytes(size), row[0])
                )
        elif op < 0.8:
            ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
            doomed = rng.sample(ids, min(len(ids), rng.randrange(1, 30)))
            conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in doomed])
        elif op < 0.84 and len(tables) > 1:
            conn.execute(f"DROP TABLE {table}")
            tables.remove(table)
        elif op < 0.88:
            column = f"x{step}_{rng.randrange(100)}"
            if not any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})")):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT DEFAULT 'd'")
        elif op < 0.9:
            prefix = "rw" if table.startswith("rw") else "r"
            conn.execute(
                f"ALTER TABLE {table} RENAME TO {prefix}{step}_renamed_{rng.randrange(999)}"
            )
            break
        elif op < 0.95:
            conn.execute(f"UPDATE OR IGNORE {table} SET id = id + 5000 WHERE id % 7 = 0")
        else:
            conn.execute(f"UPDATE {table} SET a = upper(a), c = c + 1")
    conn.execute("COMMIT")
    if rng.random() < 0.05:
        conn.execute("VACUUM")


def run_random_workload(
    store,
    tmp_path: Path,
    rng: random.Random,
    page_size: int,
    auto_vacuum: str,
    *,
    steps: int,
    full_check_every: int,
    vacuum_every: int,
    vacuum_pages: int,
) -> None:
    """`steps` random commits to a fresh all-types database, each checked row by row
    and every `full_check_every`-th in full; under incremental auto-vacuum an
    incremental vacuum of `vacuum_pages` pages every `vacuum_every`-th step; a full
    check at the end."""
    source = build_all_types(
        tmp_path / "src.db", page_size=page_size, auto_vacuum=auto_vacuum, big_rows=2
    )
    harness = CommitHarness(store, source, tmp_path)
    for step in range(steps):
        full = step % full_check_every == full_check_every - 1
        harness.run(lambda conn, step=step: random_step(rng, conn, step), check=full or "rows")
        if auto_vacuum == "INCREMENTAL" and step % vacuum_every == vacuum_every - 1:
            harness.run(f"PRAGMA incremental_vacuum({vacuum_pages})", check="rows")
    harness.check()


@pytest.mark.parametrize(
    ("seed", "page_size", "auto_vacuum"),
    [
        (1, 1024, "NONE"),
        (4, 512, "INCREMENTAL"),
        pytest.param(2, 4096, "NONE", marks=pytest.mark.slow),
        pytest.param(3, 1024, "FULL", marks=pytest.mark.slow),
    ],
)
def test_random_workload(
    store, tmp_path: Path, seed: int, page_size: int, auto_vacuum: str
) -> None:
    run_random_workload(
        store,
        tmp_path,
        random.Random(seed),
        page_size,
        auto_vacuum,
        steps=20,
        full_check_every=5,
        vacuum_every=7,
        vacuum_pages=5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 18))
def test_random_workload_long(store, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    page_size = rng.choice([512, 1024, 4096, 8192])
    auto_vacuum = rng.choice(["NONE", "FULL", "INCREMENTAL"])
    run_random_workload(
        store,
        tmp_path,
        rng,
        page_size,
        auto_vacuum,
        steps=60,
        full_check_every=15,
        vacuum_every=9,
        vacuum_pages=7,
    )
