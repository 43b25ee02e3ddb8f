"""`pgfs import / export / verify / inspect` through click's CliRunner and the console script.

(The round trip and verify's verdict run on every backend: test_cli_backends.py.)

Every refused input gives one line `pgfs: error: ...`, exit status 1, and
leaves PostgreSQL as it was; no output ever shows the password.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import psycopg.sql
import pytest
from click.testing import CliRunner

from pgfs.cli import cli
from pgfs.sqlite.journal import JOURNAL_MAGIC
from tests.support.dbgen import build_all_types

PASSWORD = "s3cret-Pa55word"
PGFS = Path(sys.executable).parent / "pgfs"


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgfs: error: "), lines[0]
    return lines[0]


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    # trust authentication ignores the password; it must still never be printed
    return f"{pg_dsn} password={PASSWORD}"


@pytest.fixture
def dsn_args(dsn: str, tmp_path: Path) -> list[str]:
    """The documented way to give a DSN with a password: --dsn-file."""
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    return ["--dsn-file", str(dsn_file)]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return build_all_types(tmp_path / "sample.db", page_size=1024, big_rows=3)


def snapshot(pg_dsn: str) -> list:
    """Everything in the database's pgfs and jellyfin schemas (but the commit log)."""
    out: list = []
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN ('pgfs', 'jellyfin') AND table_name <> 'commit_log'"
            " ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            query = psycopg.sql.SQL("SELECT * FROM {}").format(
                psycopg.sql.Identifier(schema, table)
            )
            rows = conn.execute(query).fetchall()
            out.append((schema, table, sorted(map(repr, rows))))
    return out


def test_export_refuses_to_overwrite(dsn_args: list[str], sample: Path, tmp_path: Path) -> None:
    assert run("import", sample, *dsn_args, "--no-progress").exit_code == 0
    out = tmp_path / "exists.db"
    out.write_bytes(b"keep me")
    result = run("export", out, *dsn_args, "--no-progress")
    assert result.exit_code == 1
    assert "--force" in error_line(result)
    assert out.read_bytes() == b"keep me"
    result = run("export", out, *dsn_args, "--no-progress", "--force")
    assert result.exit_code == 0, result.stderr
    assert out.stat().st_size == sample.stat().st_size


def test_export_of_an_empty_store(dsn_args: list[str], tmp_path: Path) -> None:
    result = run("export", tmp_path / "x.db", *dsn_args, "--no-progress")
    assert result.exit_code == 1
    assert "no database" in error_line(result)


def _not_sqlite(folder: Path, sample: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("hello, this is not a database\n" * 100)
    return path


def _truncated(folder: Path, sample: Path) -> Path:
    path = folder / "truncated.db"
    path.write_bytes(sample.read_bytes()[: 1024 * 20 + 300])
    return path


def _encrypted(folder: Path, sample: Path) -> Path:
    path = folder / "encrypted.db"
    path.write_bytes(os.urandom(1024 * 16))
    return path


def _corrupt(folder: Path, sample: Path) -> Path:
    """A b-tree page overwritten with garbage (the header and file size stay fine)."""
    path = folder / "corrupt.db"
    data = bytearray(sample.read_bytes())
    conn = sqlite3.connect(sample)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'types'").fetchone()
    conn.close()
    start = (root - 1) * 1024
    data[start : start + 1024] = b"\x07" + bytes(range(200)) * 5 + bytes(23)
    path.write_bytes(bytes(data))
    return path


def _wal_dirty(folder: Path, sample: Path) -> Path:
    path = folder / "wal.db"
    shutil.copy(sample, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO auto (v) VALUES ('only in the wal')")
    conn.commit()
    # copy the database and its WAL while the connection still holds them open
    dirty = folder / "dirty.db"
    shutil.copy(path, dirty)
    shutil.copy(folder / "wal.db-wal", folder / "dirty.db-wal")
    conn.close()
    return dirty


def _hot_journal(folder: Path, sample: Path) -> Path:
    """A rollback journal with a valid header beside the file: a crashed transaction."""
    path = folder / "hot.db"
    shutil.copy(sample, path)
    header = JOURNAL_MAGIC + (1).to_bytes(4, "big") + bytes(20)
    (folder / "hot.db-journal").write_bytes(header + bytes(1024))
    return path


BAD_INPUTS = {
    "not-sqlite": (_not_sqlite, "not a SQLite database"),
    "truncated": (_truncated, "truncated"),
    "encrypted": (_encrypted, "encrypted"),
    "corrupt": (_corrupt, "page "),
    "wal-dirty": (_wal_dirty, "checkpoint it first"),
    "hot-journal": (_hot_journal, "roll it back first"),
    "missing": (lambda folder, sample: folder / "missing.db", "no such file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_leaves_postgresql_unchanged(
    case: str, dsn_args: list[str], pg_dsn: str, sample: Path, tmp_path: Path
) -> None:
    make, expected = BAD_INPUTS[case]
    assert run("import", sample, *dsn_args, "--no-progress").exit_code == 0
    before = snapshot(pg_dsn)
    bad = make(tmp_path, sample)
    for flags in ([], ["--replace"]):
        result = run("import", bad, *dsn_args, "--no-progress", *flags)
        assert result.exit_code == 1
        line = error_line(result)
        # damage deep inside the file is found while streaming, after the check
        # that the store is empty
        late = case == "corrupt" and not flags
        assert expected in line or (late and "--replace" in line), line
        assert PASSWORD not in result.stdout + result.stderr
        assert snapshot(pg_dsn) == before


def test_corrupt_file_names_the_page(dsn_args: list[str], sample: Path, tmp_path: Path) -> None:
    bad = _corrupt(tmp_path, sample)
    conn = sqlite3.connect(sample)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'types'").fetchone()
    conn.close()
    result = run("import", bad, *dsn_args, "--no-progress")
    assert f"page {root}:" in error_line(result)


def test_non_empty_store_needs_replace(
    dsn_args: list[str], pg_dsn: str, sample: Path, tmp_path: Path
):
    assert run("import", sample, *dsn_args, "--no-progress").exit_code == 0
    before = snapshot(pg_dsn)
    other = build_all_types(tmp_path / "other.db", page_size=4096, big_rows=1, seed=99)
    result = run("import", other, *dsn_args, "--no-progress")
    assert result.exit_code == 1
    assert "--replace" in error_line(result)
    assert snapshot(pg_dsn) == before
    result = run("import", other, *dsn_args, "--no-progress", "--replace")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out.db"
    assert run("export", out, *dsn_args, "--no-progress").exit_code == 0
    assert out.read_bytes()[16:18] == (4096).to_bytes(2, "big")
    assert run("verify", *dsn_args).exit_code == 0


def test_unreachable_server_never_shows_the_password(tmp_path: Path, sample: Path) -> None:
    bad = f"host={tmp_path} port=1 dbname=x user=someone password={PASSWORD} connect_timeout=2"
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(bad)
    for args in (["import", sample, "--no-progress"], ["inspect"], ["verify"]):
        result = run(*args, "--dsn-file", dsn_file)
        assert result.exit_code == 1
        assert "cannot connect" in error_line(result)
        assert PASSWORD not in result.stdout + result.stderr
        # Given as --dsn, the password is warned about (without showing it) first.
        result = run(*args, "--dsn", bad)
        assert result.exit_code == 1
        warning, error = result.stderr.strip().splitlines()
        assert "--dsn carries a password" in warning and "--dsn-file" in warning
        assert error.startswith("pgfs: error: cannot connect")
        assert PASSWORD not in result.stdout + result.stderr


def test_a_password_in_dsn_is_warned_about_once(pg_dsn: str, dsn: str, sample: Path) -> None:
    done = subprocess.run(
        [PGFS, "import", sample, "--no-progress", "--dsn", dsn], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if "carries a password" in line]
    assert len(warnings) == 1, done.stderr
    quiet = subprocess.run([PGFS, "inspect", "--dsn", pg_dsn], capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""


def test_dsn_file_problems_are_one_line(dsn: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    result = run("inspect", "--dsn-file", missing)
    assert result.exit_code == 1
    assert f"cannot read the DSN file {missing} (--dsn-file)" in error_line(result)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = run("inspect", "--dsn-file", empty)
    assert result.exit_code == 1
    assert f"the DSN file {empty} (--dsn-file) is empty" in error_line(result)
    result = run("inspect", "--dsn", dsn, "--dsn-file", empty)
    assert result.exit_code == 2
    assert "--dsn or --dsn-file, not both" in error_line(result)
    assert PASSWORD not in result.stdout + result.stderr


def test_usage_error_is_one_line_exit_2() -> None:
    result = run("import")
    assert result.exit_code == 2
    assert "SQLITE_FILE" in error_line(result)
    assert run("no-such-command").exit_code == 2


def test_console_script(dsn: str, sample: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PGFS_DSN": dsn}
    done = subprocess.run(
        [PGFS, "import", sample], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    done = subprocess.run(
        [PGFS, "--log-json", "--log-level", "debug", "export", tmp_path / "x.db"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    done = subprocess.run(
        [PGFS, "import", tmp_path / "nothing.db"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"pgfs: error: {tmp_path / 'nothing.db'}: no such file"
    ]


def test_log_json(dsn_args: list[str], sample: Path) -> None:
    result = run("--log-json", "--log-level", "INFO", "import", sample, *dsn_args, "--no-progress")
    assert result.exit_code == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert any(e["message"].startswith("imported") for e in entries)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    assert PASSWORD not in result.stderr
