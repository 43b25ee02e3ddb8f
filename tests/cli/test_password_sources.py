"""Real password authentication (scram-sha-256) for the `pgfs` CLI.

The session cluster trusts local connections; this module puts a
`local all pgfs_pw scram-sha-256` line at the top of its pg_hba.conf (restored at
the end), so a wrong password is really refused. `pgfs import` and `pgfs inspect`
run as the console script with the password from each source pgfs documents:
$PGPASSWORD, $PGPASSFILE, `password=` in $PGFS_DSN, and a DSN in $PGFS_DSN_FILE or
in the file named by --dsn-file.
The password never appears on stdout or stderr.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgfs.store.cluster import EmbeddedCluster

ROLE = "pgfs_pw"
PASSWORD = "Pw-7e1c9f-s3cret"
WRONG = "Wrong-4b2d-guess"
PGFS = Path(sys.executable).with_name("pgfs")
HBA_LINE = f"local all {ROLE} scram-sha-256\n"
_numbers = itertools.count(1)


def _admin(cluster: EmbeddedCluster) -> psycopg.Connection:
    return psycopg.connect(cluster.admin_dsn(), autocommit=True)


@pytest.fixture(scope="module")
def password_role(pg_cluster: EmbeddedCluster) -> Iterator[EmbeddedCluster]:
    """The role pgfs_pw, which must log in with its password over the unix socket."""
    hba = pg_cluster.data_dir / "pg_hba.conf"
    original = hba.read_bytes()
    owner = (hba.stat().st_uid, hba.stat().st_gid)
    with _admin(pg_cluster) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(PASSWORD)
            )
        )
    try:
        # Rewriting the existing file in place keeps its owner (the postgres user).
        hba.write_bytes(HBA_LINE.encode() + original)
        assert (hba.stat().st_uid, hba.stat().st_gid) == owner
        with _admin(pg_cluster) as conn:
            assert conn.execute("SELECT pg_reload_conf()").fetchone() == (True,)
            errors = conn.execute(
                "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
            ).fetchone()
            assert errors == (0,)
        yield pg_cluster
    finally:
        hba.write_bytes(original)
        with _admin(pg_cluster) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


@pytest.fixture
def database(password_role: EmbeddedCluster) -> Iterator[str]:
    """A fresh database owned by pgfs_pw; its name."""
    name = f"pw_{os.getpid()}_{next(_numbers)}"
    with _admin(password_role) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)
            )
        )
    yield name
    with _admin(password_role) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "small.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany(
        "INSERT INTO items(name, price) VALUES (?, ?)", [(f"item {i}", i * 1.5) for i in range(50)]
    )
    conn.commit()
    conn.close()
    return path


def _environment(
    source: str, password: str, cluster: EmbeddedCluster, dbname: str, tmp_path: Path
) -> dict[str, str]:
    """The environment for one way of giving the password (and nothing else that could)."""
    host = str(cluster.socket_dir)
    base = f"host={host} port={cluster.port} dbname={dbname} user={ROLE}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}
    if source == "PGPASSWORD":
        env["PGFS_DSN"] = base
        env["PGPASSWORD"] = password
    elif source == "PGPASSFILE":
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"{host}:{cluster.port}:{dbname}:{ROLE}:{password}\n")
        passfile.chmod(0o600)
        env["PGFS_DSN"] = base
        env["PGPASSFILE"] = str(passfile)
    elif source == "PGFS_DSN":
        env["PGFS_DSN"] = f"{base} password={password}"
    elif source in ("PGFS_DSN_FILE", "--dsn-file"):
        dsn_file = tmp_path / "dsn"
        dsn_file.write_text(f"{base} password={password}\n")
        dsn_file.chmod(0o600)
        if source == "PGFS_DSN_FILE":
            env["PGFS_DSN_FILE"] = str(dsn_file)
    else:
        raise AssertionError(source)
    return env


def _options(source: str, tmp_path: Path) -> list[str]:
    """The command-line options of one way of giving the password (see _environment)."""
    return ["--dsn-file", str(tmp_path / "dsn")] if source == "--dsn-file" else []


def _pgfs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PGFS), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


SOURCES = ["PGPASSWORD", "PGPASSFILE", "PGFS_DSN", "PGFS_DSN_FILE", "--dsn-file"]


@pytest.mark.parametrize("source", SOURCES)
def test_import_and_inspect_with_the_password_from(
    source: str, password_role: EmbeddedCluster, database: str, sample: Path, tmp_path: Path
) -> None:
    env = _environment(source, PASSWORD, password_role, database, tmp_path)
    options = _options(source, tmp_path)
    imported = _pgfs(env, "import", str(sample), "--no-progress", *options)
    assert imported.returncode == 0, imported.stderr
    inspected = _pgfs(env, "inspect", "--json", *options)
    assert inspected.returncode == 0, inspected.stderr
    assert "items" in inspected.stdout
    for result in (imported, inspected):
        assert PASSWORD not in result.stdout
        assert PASSWORD not in result.stderr
    # The server really asks pgfs_pw for a password ...
    target = (
        f"host={password_role.socket_dir} port={password_role.port} dbname={database} user={ROLE}"
    )
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(target, password="", passfile=str(tmp_path / "none")).close()
    # ... and the rows arrived, in tables pgfs_pw owns.
    admin = password_role.dsn_for(database)
    with psycopg.connect(admin) as conn:
        count, owner = conn.execute(
            "SELECT (SELECT count(*) FROM jellyfin.items),"
            " (SELECT tableowner FROM pg_tables WHERE schemaname = 'jellyfin'"
            " AND tablename = 'items')"
        ).fetchone()
    assert (count, owner) == (50, ROLE)


@pytest.mark.parametrize("source", SOURCES)
def test_a_wrong_password_is_one_error_line(
    source: str, password_role: EmbeddedCluster, database: str, sample: Path, tmp_path: Path
) -> None:
    env = _environment(source, WRONG, password_role, database, tmp_path)
    for args in (["import", str(sample), "--no-progress"], ["inspect"]):
        result = _pgfs(env, *args, *_options(source, tmp_path))
        assert result.returncode == 1, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("pgfs: error: "), lines[0]
        assert ROLE in lines[0] and database in lines[0], lines[0]
        for secret in (WRONG, PASSWORD):
            assert secret not in result.stdout
            assert secret not in result.stderr
