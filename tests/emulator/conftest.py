"""Fixtures of the emulator tests: a Store on the per-test PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("tests.support.invariants")

from pgfs.store.postgres import PostgresStore as Store  # noqa: E402


@pytest.fixture
def store(pg_dsn: str) -> Iterator[Store]:
    opened = Store.connect(pg_dsn)
    try:
        yield opened
    finally:
        opened.close()
