"""Where the PostgreSQL DSN comes from, and how it may be shown.

A DSN is a libpq connection string: `key=value` pairs or a
`postgresql://` URI. pgfs never prints one as given: `redact_dsn` replaces
the password, and connection errors name only the target (host, port,
database, user).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgfs.store.errors import StoreError

ENV_DSN = "PGFS_DSN"
ENV_DSN_FILE = "PGFS_DSN_FILE"
MASK = "***"

_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:\\.|[^'\\])*'?|\S*)", re.IGNORECASE)
_URI_USERINFO = re.compile(r"(^[a-z]+://[^:/@?#]*:)[^@/?#]*@", re.IGNORECASE)
_URI_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_TARGET_KEYS = ("host", "hostaddr", "port", "dbname", "user")
_ENV_FALLBACK = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER"}


def resolve_dsn(explicit: str | None, dsn_file: str | Path | None = None) -> str:
    """The DSN to use: `explicit` > contents of `dsn_file` > $PGFS_DSN > contents of
    $PGFS_DSN_FILE > "".

    "" means "libpq environment variables" (PGHOST, PGUSER, PGPASSWORD, ...).
    An empty value counts as unset at every level, but a `dsn_file` named on the
    command line must hold a DSN.
    """
    if explicit:
        return explicit.strip()
    if dsn_file:
        from_file = read_dsn_file(dsn_file, "--dsn-file")
        if not from_file:
            raise StoreError(f"the DSN file {dsn_file} (--dsn-file) is empty")
        return from_file
    from_env = os.environ.get(ENV_DSN, "").strip()
    if from_env:
        return from_env
    file_name = os.environ.get(ENV_DSN_FILE, "").strip()
    if file_name:
        return read_dsn_file(file_name, f"${ENV_DSN_FILE}")
    return ""


def read_dsn_file(path: str | Path, source: str) -> str:
    """The DSN a file holds (its whole text, stripped); `source` says who named the file."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StoreError(f"cannot read the DSN file {path} ({source}): {exc.strerror}") from None


def parse_url(dsn: str) -> dict[str, str] | None:
    """host, port, dbname, user, password and the query options of a `mariadb://` (or
    `mysql://`) URL, percent-decoded; None for anything else."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    scheme, sep, _ = dsn.partition("://")
    if not sep or scheme.lower() not in ("mariadb", "mysql"):
        return None
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        return None
    out = dict(parse_qsl(parts.query))
    for key, value in (
        ("host", parts.hostname),
        ("port", str(port) if port else None),
        ("dbname", unquote(parts.path.lstrip("/"))),
        ("user", unquote(parts.username) if parts.username else None),
        ("password", unquote(parts.password) if parts.password is not None else None),
    ):
        if value:
            out[key] = value
    return out


def _parse(dsn: str) -> dict[str, str] | None:
    url = parse_url(dsn)
    if url is not None:
        return url
    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.Error:
        return None


def redact_dsn(dsn: str) -> str:
    """`dsn` with its password replaced by `***` (for logs and error messages)."""
    if not dsn:
        return dsn
    parsed = _parse(dsn)
    if parsed is not None and parse_url(dsn) is None:
        if "password" not in parsed:
            return _regex_redact(dsn)
        parsed["password"] = MASK
        return make_conninfo("", **parsed)
    return _regex_redact(dsn)


def _regex_redact(dsn: str) -> str:
    """Redaction that works on strings libpq cannot parse, too."""
    out = _URI_USERINFO.sub(lambda m: m.group(1) + MASK + "@", dsn)
    out = _URI_QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, out)
    if "://" not in out:
        out = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, out)
    return out


@functools.lru_cache(maxsize=64)
def _password(dsn: str) -> str | None:
    # Cached: every log line is scrubbed (`scrub`), and parsing a DSN costs ~40 us.
    parsed = _parse(dsn) or {}
    return parsed.get("password") or None


def dsn_has_password(dsn: str) -> bool:
    """Whether `dsn` carries a password (also when libpq cannot parse it)."""
    return _password(dsn) is not None or _regex_redact(dsn) != dsn


def describe_target(dsn: str) -> str:
    """`host=... port=... dbname=... user=...` of `dsn` (libpq env as fallback), no password."""
    parsed = _parse(dsn) or {}
    url = parse_url(dsn) is not None
    parts = []
    for key in (*_TARGET_KEYS, "unix_socket") if url else _TARGET_KEYS:
        value = parsed.get(key) or (
            os.environ.get(_ENV_FALLBACK[key]) if key in _ENV_FALLBACK and not url else None
        )
        if value:
            parts.append(f"{key}={value}")
    return " ".join(parts) if parts else "libpq defaults"


def scrub(text: str, dsn: str) -> str:
    """`text` with any occurrence of the DSN's (or $PGPASSWORD's) password masked."""
    for secret in (_password(dsn), os.environ.get("PGPASSWORD")):
        if secret:
            text = text.replace(secret, MASK)
    return text


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe_connect_error(exc: BaseException, dsn: str) -> str:
    """One line: which server pgfs could not reach, and libpq's reason; never the password."""
    reason = one_line(str(exc)) or type(exc).__name__
    reason = reason.removeprefix("connection failed: ")
    server = "MariaDB" if parse_url(dsn) is not None else "PostgreSQL"
    return scrub(f"cannot connect to {server} ({describe_target(dsn)}): {reason}", dsn)
