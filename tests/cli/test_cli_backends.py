"""`pgfs import / export / verify / inspect` on every backend (`store_url`: PostgreSQL and
MariaDB), with the URL (and its password) in a --dsn-file; `pgfs mount --dsn` on both is
tests/fuse/test_jellyfin.py. No output ever shows the password."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgfs.cli import cli
from pgfs.store.dsn import parse_url
from tests.support.dbgen import build_all_types
from tests.support.server_view import view_of


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def dsn_args(store_url: str, tmp_path: Path) -> list[str]:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(store_url + "\n")
    dsn_file.chmod(0o600)
    return ["--dsn-file", str(dsn_file)]


def _secret(store_url: str) -> str | None:
    parsed = parse_url(store_url)
    return parsed.get("password") if parsed else None


def test_import_export_verify_inspect(store_url: str, dsn_args: list[str], tmp_path: Path) -> None:
    sample = build_all_types(tmp_path / "sample.db", page_size=1024, big_rows=3)
    outputs = []
    result = run("import", sample, *dsn_args, "--no-progress")
    assert result.exit_code == 0, result.stderr
    outputs.append(result)
    out = tmp_path / "out.db"
    result = run("export", out, *dsn_args, "--no-progress")
    assert result.exit_code == 0, result.stderr
    outputs.append(result)
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    result = run("verify", *dsn_args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok:")
    result = run("inspect", *dsn_args)
    assert result.exit_code == 0, result.stderr
    assert "types" in result.stdout and "pages by kind" in result.stdout
    outputs.append(result)
    result = run("inspect", "--json", *dsn_args)
    report = json.loads(result.stdout)
    assert report["page_count"] == sample.stat().st_size // 1024
    assert {t["name"] for t in report["tables"]} >= {"types", "big", "wr"}
    outputs.append(result)
    secret = _secret(store_url)
    for result in outputs:
        assert not secret or secret not in result.stdout + result.stderr

    # Rows changed behind pgfs' back: verify says so.
    server = view_of(store_url)
    server.query(
        f"DELETE FROM {server.table('jellyfin', 'hidden_rowid')} WHERE a = %s", ("name 001",)
    )
    result = run("verify", *dsn_args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("pgfs: error: verify failed")


def test_a_wrong_mariadb_password_is_one_line_without_it(mariadb_url: str, tmp_path: Path) -> None:
    wrong = mariadb_url.replace("@localhost", "x@localhost", 1)
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(wrong)
    result = run("inspect", "--dsn-file", dsn_file)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("pgfs: error: cannot connect to MariaDB") and "Access denied" in line
    secret = _secret(wrong)
    assert secret and secret not in result.stdout + result.stderr
