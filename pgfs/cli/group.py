"""The `pgfs` click group: one-line errors without passwords, and logging.

Errors are one line `pgfs: error: ...` on stderr with exit status 1 (2 for
usage errors); no message ever shows a password: every DSN the process opens
is remembered (`remember_secret`) and scrubbed from messages and logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import NoReturn

import click

from pgfs.sqlite.errors import FormatError
from pgfs.store.errors import StoreError

log = logging.getLogger("pgfs")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SECRETS: set[str] = set()
"""DSNs opened by this process: error messages are scrubbed of their passwords."""


# ---------------------------------------------------------------- errors


def remember_secret(dsn: str) -> None:
    """Scrub `dsn`'s password from every later error message and log line."""
    _SECRETS.add(dsn)


def _scrub(text: str) -> str:
    from pgfs.store.dsn import scrub

    for dsn in _SECRETS:
        text = scrub(text, dsn)
    return scrub(text, "")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `pgfs: error: message` (one line, no password) and exit."""
    click.echo(f"pgfs: error: {_scrub(_one_line(message))}", err=True)
    sys.exit(code)


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (StoreError, FormatError, OSError, ValueError)
"""Errors reported as one line without a traceback (ValueError covers TransferError)."""


class PgfsGroup(click.Group):
    """A click group whose errors are one scrubbed line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(
                args, prog_name or "pgfs", complete_var, standalone_mode=False, **extra
            )
        except click.UsageError as exc:
            hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            fail(exc.format_message() + hint, 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            fail("interrupted", 130)
        except EXPECTED_ERRORS as exc:
            log.debug("command failed", exc_info=True)
            fail(_describe(exc))
        except Exception as exc:  # a bug: say so, details in the debug log
            log.debug("internal error", exc_info=True)
            fail(f"internal error: {type(exc).__name__}: {exc}")
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------- logging


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = _scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class _ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record))


def configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_ScrubbingFormatter("pgfs: %(levelname)s: %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_pgfs", False):
            root.removeHandler(old)
    handler._pgfs = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


# ---------------------------------------------------------------- the group


@click.group(cls=PgfsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="WARNING",
    show_default=True,
    envvar="PGFS_LOG_LEVEL",
    help="Log messages at this level and above go to stderr.",
)
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.version_option(package_name="pgfs", prog_name="pgfs")
def cli(log_level: str, log_json: bool) -> None:
    """pgfs keeps an unmodified SQLite application's database in PostgreSQL."""
    configure_logging(log_level, log_json)
