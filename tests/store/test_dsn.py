"""DSN resolution, redaction, and connection errors that never show the password."""

from __future__ import annotations

import socket

import psycopg
import pytest

from pgfs.store.dsn import describe_connect_error, dsn_has_password, redact_dsn, resolve_dsn
from pgfs.store.errors import StoreError, StoreUnavailableError
from pgfs.store.postgres import PostgresStore as Store

SECRET = "s3cr3t-Pa55"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("PGFS_DSN", "PGFS_DSN_FILE", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolve_order(clean_env, tmp_path):
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text("host=from-file dbname=x\n")
    assert resolve_dsn(None) == ""
    clean_env.setenv("PGFS_DSN_FILE", str(dsn_file))
    assert resolve_dsn(None) == "host=from-file dbname=x"
    clean_env.setenv("PGFS_DSN", "host=from-env")
    assert resolve_dsn(None) == "host=from-env"
    assert resolve_dsn("host=explicit") == "host=explicit"
    assert resolve_dsn("") == "host=from-env"


def test_a_dsn_file_option_comes_before_the_environment(clean_env, tmp_path):
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text("host=from-option-file dbname=x\n")
    clean_env.setenv("PGFS_DSN", "host=from-env")
    assert resolve_dsn(None, dsn_file) == "host=from-option-file dbname=x"
    assert resolve_dsn("host=explicit", dsn_file) == "host=explicit"
    dsn_file.write_text("\n")
    with pytest.raises(StoreError, match="is empty"):
        resolve_dsn(None, dsn_file)


def test_resolve_unreadable_file(clean_env, tmp_path):
    clean_env.setenv("PGFS_DSN_FILE", str(tmp_path / "missing"))
    with pytest.raises(StoreError, match="missing"):
        resolve_dsn(None)


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=db.example dbname=jf user=bob password={SECRET}",
        f"host=db.example dbname=jf user=bob password='{SECRET} with space'",
        f"postgresql://bob:{SECRET}@db.example:5432/jf?sslmode=require",
        f"postgresql://bob@db.example/jf?password={SECRET}",
        f"host=db.example password={SECRET} dbname",  # libpq cannot parse this
        f"postgresql://bob:{SECRET}@db.example/jf?sslmode=require&bad",
    ],
)
def test_redact_removes_the_password(dsn):
    redacted = redact_dsn(dsn)
    assert SECRET not in redacted
    assert "db.example" in redacted
    assert "***" in redacted
    assert dsn_has_password(dsn)


def test_redact_keeps_a_dsn_without_password():
    assert redact_dsn("host=/tmp dbname=x") == "host=/tmp dbname=x"
    assert redact_dsn("") == ""
    for dsn in ("host=/tmp dbname=x", "postgresql://bob@db.example/jf", "host=x dbname"):
        assert not dsn_has_password(dsn)


def _connect_error(dsn: str) -> StoreUnavailableError:
    with pytest.raises(StoreUnavailableError) as info:
        Store.connect(dsn)
    return info.value


def test_closed_port_error_names_the_target_not_the_password(clean_env):
    port = closed_port()
    error = _connect_error(
        f"host=127.0.0.1 port={port} dbname=jellyfin_db user=bob password={SECRET}"
    )
    message = str(error)
    assert SECRET not in message
    assert "127.0.0.1" in message and str(port) in message and "jellyfin_db" in message
    assert "\n" not in message
    assert error.__cause__ is None  # raised "from None": tracebacks show only the message
    assert SECRET not in str(error.__context__)


def test_uri_with_password_to_closed_port(clean_env):
    port = closed_port()
    message = str(_connect_error(f"postgresql://bob:{SECRET}@127.0.0.1:{port}/jellyfin_db"))
    assert SECRET not in message
    assert "127.0.0.1" in message and "jellyfin_db" in message


def test_bad_unix_socket_path(clean_env, tmp_path):
    socket_dir = tmp_path / "no-server-here"
    message = str(
        _connect_error(f"host={socket_dir} dbname=jellyfin_db user=bob password={SECRET}")
    )
    assert SECRET not in message
    assert str(socket_dir) in message and "jellyfin_db" in message


def test_password_from_environment_is_never_shown(clean_env):
    clean_env.setenv("PGPASSWORD", SECRET)
    port = closed_port()
    message = str(_connect_error(f"host=127.0.0.1 port={port} dbname=db1"))
    assert SECRET not in message


def test_describe_connect_error_scrubs_an_echoed_password():
    exc = psycopg.OperationalError(f"server said: password {SECRET} rejected\n  try again")
    message = describe_connect_error(exc, f"host=h dbname=d password={SECRET}")
    assert SECRET not in message
    assert message.startswith("cannot connect to PostgreSQL (host=h dbname=d)")
    assert "\n" not in message


def test_wrong_password_on_a_real_server(pg_dsn, clean_env):
    """The embedded cluster trusts local users, so a bad user is the failure here."""
    message = str(_connect_error(pg_dsn.replace("user=", "user=nobody_") + f" password={SECRET}"))
    assert SECRET not in message
    assert "nobody_" in message
