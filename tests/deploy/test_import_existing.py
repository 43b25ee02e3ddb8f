"""The chart's one-shot migration step, scripts/pgfs-import-existing.py.

Run as the init container runs it (a separate process, credentials in the
environment), against real SQLite files and, for the import itself, a real
PostgreSQL through the real `pgfs import`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from .chart import IMPORT_SCRIPT, import_command, localize, render_chart


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pgfs_import_existing", IMPORT_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_step(config: Path, *extra: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    """The chart's import command line, with /config moved to `config`."""
    manifests = render_chart([], {"importExisting.waitSeconds": 0})
    command = localize(import_command(manifests), paths={"/config": str(config)})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGFS_"))}
    env.update({k: v for k, v in command.env.items() if k.startswith("PGSSL")})
    env["PGSSLMODE"] = "disable"
    if dsn is not None:
        env["PGFS_DSN"] = dsn
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [*command.argv, *extra], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def make_db(path: Path, rows: int = 10, *, wal: bool = False) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.commit()
    conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- without PostgreSQL ------------------------------------------------------------


def test_command_line_from_the_chart_parses() -> None:
    script = load_script()
    argv = import_command(
        render_chart([], ["pgfs.mount.uid=1000", "importExisting.replace=true"])
    ).argv
    assert argv[0] == "pgfs-import-existing"
    args = script.parse_args(argv[1:])
    assert args.data_dir == Path("/config/data")
    assert args.state_file == Path("/config/.pgfs-import.json")
    assert args.replace and args.owner == "1000:1000" and args.name == "jellyfin.db"


def test_fresh_install_only_creates_the_data_folder(tmp_path: Path) -> None:
    done = run_step(tmp_path, "--owner", "1234:2345")
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert data.is_dir()
    assert "nothing to import" in done.stderr
    if os.geteuid() == 0:
        assert (data.stat().st_uid, data.stat().st_gid) == (1234, 2345)
    assert not (tmp_path / ".pgfs-import.json").exists()


def test_import_disabled_leaves_the_file_alone(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "jellyfin.db"
    make_db(db)
    before = sha256(db)
    done = run_step(tmp_path, "--create-only")
    assert done.returncode == 0, done.stderr
    assert sha256(db) == before
    assert "not imported" in done.stderr


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "jellyfin.db"
    db.write_bytes(b"this is not an SQLite database" * 200)
    done = run_step(tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgfs-import-existing: error: ")
    assert db.exists() and not (tmp_path / ".pgfs-import.json").exists()


def test_settle_checkpoints_a_wal_left_behind(tmp_path: Path) -> None:
    """A database copied with its -wal (Jellyfin stopped uncleanly): the rows in
    the WAL end up in the database file itself before the import reads it."""
    live = tmp_path / "live.db"
    make_db(live, rows=1, wal=True)
    writer = sqlite3.connect(live)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executemany("INSERT INTO t (v) VALUES (?)", [("in the wal",)] * 50)
    writer.commit()
    copy = tmp_path / "data" / "jellyfin.db"
    copy.parent.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{live}{suffix}", f"{copy}{suffix}")
    writer.close()

    def rows_in_file_alone(path: Path) -> int:
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM t").fetchone()[0]
        finally:
            conn.close()

    assert rows_in_file_alone(copy) == 1
    load_script().settle_database(copy)
    assert rows_in_file_alone(copy) == 51
    wal = Path(f"{copy}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_backup_names_never_overwrite(tmp_path: Path) -> None:
    script = load_script()
    db = tmp_path / "jellyfin.db"
    for content in (b"first", b"second"):
        db.write_bytes(content)
        Path(f"{db}-wal").write_bytes(content + b"-wal")
        script.move_aside(db, ".pre-pgfs")
    backups = sorted(p.name for p in tmp_path.iterdir())
    assert len(backups) == 4 and not db.exists()
    assert (tmp_path / "jellyfin.db.pre-pgfs").read_bytes() == b"first"
    assert (tmp_path / "jellyfin.db.pre-pgfs-wal").read_bytes() == b"first-wal"
    (second,) = [b for b in backups if b.startswith("jellyfin.db.pre-pgfs-2") and "wal" not in b]
    assert (tmp_path / second).read_bytes() == b"second"
    assert (tmp_path / f"{second}-wal").read_bytes() == b"second-wal"


# --- with PostgreSQL and the real `pgfs import` -------------------------------------


def needs_pgfs_import() -> None:
    for module in ("pgfs.cli", "pgfs.store", "pgfs.store.dsn", "pgfs.emulator.importer"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not written yet: the import step cannot run")


def table_count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f'SELECT count(*) FROM jellyfin."{table}"').fetchone()[0]


def commits(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pgfs.commit_log").fetchone()[0]


@pytest.fixture
def chinook_install(tmp_path: Path, shared_dir: Path) -> tuple[Path, Path, str]:
    """A config volume whose data folder holds the Chinook sample as jellyfin.db."""
    needs_pgfs_import()
    data = tmp_path / "config" / "data"
    data.mkdir(parents=True)
    db = data / "jellyfin.db"
    shutil.copyfile(shared_dir / "samples" / "Chinook_Sqlite.sqlite", db)
    return tmp_path / "config", db, sha256(db)


def test_imports_once_and_keeps_the_original(
    chinook_install: tuple[Path, Path, str], pg_dsn: str
) -> None:
    config, db, digest = chinook_install
    done = run_step(config, dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert table_count(pg_dsn, "Track") == 3503
    assert not db.exists()
    backup = db.with_name("jellyfin.db.pre-pgfs")
    assert sha256(backup) == digest
    state = json.loads((config / ".pgfs-import.json").read_text())
    assert state["status"] == "imported" and state["sha256"] == digest
    assert state["backup"] == str(backup)
    assert pg_dsn not in done.stderr

    again = run_step(config, dsn=pg_dsn)
    assert again.returncode == 0, again.stderr
    assert "nothing to import" in again.stderr


def test_a_run_interrupted_after_the_commit_only_renames(
    chinook_install: tuple[Path, Path, str], pg_dsn: str
) -> None:
    config, db, digest = chinook_install
    assert run_step(config, dsn=pg_dsn).returncode == 0
    before = commits(pg_dsn)
    # As if the pod died between PostgreSQL's commit and the rename.
    shutil.move(db.with_name("jellyfin.db.pre-pgfs"), db)
    state_file = config / ".pgfs-import.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "status": "importing", "backup": None}))
    done = run_step(config, dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert "imported by an earlier run" in done.stderr
    assert commits(pg_dsn) == before
    assert not db.exists() and sha256(db.with_name("jellyfin.db.pre-pgfs")) == digest


def test_a_different_file_is_not_imported_over_the_store_unless_asked(
    chinook_install: tuple[Path, Path, str], pg_dsn: str
) -> None:
    config, db, _ = chinook_install
    assert run_step(config, dsn=pg_dsn).returncode == 0
    make_db(db, rows=7)
    refused = run_step(config, dsn=pg_dsn)
    assert refused.returncode == 1
    assert "importExisting.replace=true" in refused.stderr
    assert db.exists() and table_count(pg_dsn, "Track") == 3503

    replaced = run_step(config, "--replace", dsn=pg_dsn)
    assert replaced.returncode == 0, replaced.stderr
    assert table_count(pg_dsn, "t") == 7
    assert not db.exists()
    assert sorted(p.name for p in db.parent.iterdir() if "pre-pgfs" in p.name)[0] == (
        "jellyfin.db.pre-pgfs"
    )
