"""Fixtures for the differential tests: a real PostgreSQL server (the session's
throwaway cluster) and real mounts made with the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgfs.store.cluster import EmbeddedCluster

from .fuzz import Fuzzer
from .mount import FreshDatabases, fuse_unavailable_reason
from .runner import CheckPlan


@pytest.fixture(autouse=True)
def _needs_fuse() -> None:
    reason = fuse_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def fuzzer(pg_cluster: EmbeddedCluster, tmp_path: Path) -> Fuzzer:
    databases = FreshDatabases(
        pg_cluster.admin_dsn(), str(pg_cluster.socket_dir), pg_cluster.user, pg_cluster.port
    )
    return Fuzzer(databases, tmp_path, CheckPlan(verify_every=10), shrink_seconds=180)
