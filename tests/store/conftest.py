"""Fixtures for the store tests: a connected, initialised Store on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgfs.store.store import Store


@pytest.fixture
def store(pg_dsn: str) -> Iterator[Store]:
    s = Store.connect(pg_dsn)
    s.initialise()
    yield s
    s.close()


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection to the test database, for looking behind the store."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn
