"""Fixtures for the store tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import SqliteFile, make_db


@pytest.fixture
def sample(tmp_path: Path) -> SqliteFile:
    return SqliteFile(make_db(tmp_path / "sample.db"))
