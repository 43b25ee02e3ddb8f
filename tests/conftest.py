"""Fixtures shared by every layer's tests: real PostgreSQL and MariaDB servers, ../shared.

One throwaway PostgreSQL cluster serves the whole session (started from the
installed server binaries on a unix socket); each test that asks for `pg_dsn`
gets a database of its own, so tests never see each other's tables. One
throwaway MariaDB server (tests/support/mariadb_server.py) serves `mariadb_url`:
its databases are dropped after each test. `store_url` runs a test on both
backends (the contract suite).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgfs.store.cluster import EmbeddedCluster
from tests.support.mariadb_server import MariaDBServer, missing

SHARED = Path(
    os.environ.get("PGFS_SHARED_DIR") or Path(__file__).resolve().parent.parent.parent / "shared"
)
"""../shared beside the repository; $PGFS_SHARED_DIR elsewhere (a git worktree)."""
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster.temporary(tcp=True) as cluster:
        yield cluster


@pytest.fixture
def pg_dsn(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    """The DSN of a fresh, empty database on the session's PostgreSQL server."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    with psycopg.connect(pg_cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_cluster.dsn_for(name)
    with psycopg.connect(pg_cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    with MariaDBServer.temporary() as server:
        yield server


@pytest.fixture
def mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    """The store URL of the session's MariaDB server (user and password, unix socket);
    the databases a test made are dropped after it."""
    yield mariadb_server.url()
    mariadb_server.reset()


@pytest.fixture(params=["postgres", "mariadb"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh store's URL on each backend in turn: the contract suite."""
    if request.param == "mariadb":
        return request.getfixturevalue("mariadb_url")
    return request.getfixturevalue("pg_dsn")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may pass through, as /tmp/x or /srv/x would be (pytest's
    tmp_path is private to root, so the postgres user cannot enter it)."""
    path = Path(tempfile.mkdtemp(prefix="pgfs-open-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repository (Jellyfin schemas, sample databases)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared Jellyfin schemas and samples are not here")
    return SHARED


@pytest.fixture(scope="session")
def jellyfin_schema(shared_dir: Path):
    """Path of a Jellyfin schema file by version, e.g. jellyfin_schema('10.11')."""

    def path(version: str) -> Path:
        found = shared_dir / "jellyfin" / f"schema-{version}.sql"
        if not found.exists():
            pytest.skip(f"{found} is absent")
        return found

    return path
