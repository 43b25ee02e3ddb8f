"""Fixtures: a real Database over a real PostgreSQL database, and a tracker driven by a
real SQLite through an apsw VFS (tests/tracker/vfs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pgfs.emulator.database import Database
from pgfs.store.interface import LeaseHolder
from pgfs.store.postgres import PostgresStore as Store
from pgfs.tracker.database_file import DatabaseFile

from .vfs import TrackerVFS, TrioThread


@dataclass
class Tracked:
    dsn: str
    store: Store
    database: Database
    dbfile: DatabaseFile
    vfs: TrackerVFS
    loop: TrioThread


@pytest.fixture
def loop() -> Iterator[TrioThread]:
    thread = TrioThread()
    yield thread
    thread.close()


@pytest.fixture
def tracked(pg_dsn: str, loop: TrioThread) -> Iterator[Tracked]:
    store = Store.connect(pg_dsn)
    store.initialise()
    store.acquire_lease(LeaseHolder.this_process("tests/tracker"))
    database = Database.open(store)
    dbfile = DatabaseFile("test.db", database)
    vfs = TrackerVFS(dbfile, loop)
    yield Tracked(pg_dsn, store, database, dbfile, vfs, loop)
    vfs.unregister()
    store.close()
