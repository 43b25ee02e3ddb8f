"""Fixtures for the store tests: a connected, initialised store holding the writer lease."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgfs.store.interface import LeaseHolder
from pgfs.store.postgres import PostgresStore


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresStore]:
    s = PostgresStore.connect(pg_dsn)
    s.initialise()
    s.acquire_lease(LeaseHolder.this_process("tests/store"))
    yield s
    s.close()


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection to the test database, for looking behind the store."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn
