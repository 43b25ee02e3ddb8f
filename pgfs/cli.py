"""The `pgfs` command line (click).

`cli` is the click group; every command that talks to PostgreSQL takes the
shared store options through `@store_options` and opens its store with
`open_store(options)`. Errors are one line `pgfs: error: ...` on stderr with
exit status 1 (2 for usage errors); no message ever shows a password.

Commands here: import, export, verify, inspect. `pgfs mount`, `unmount` and
`status` are added to the same group by `pgfs.fuse` (see `register_command`).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from pgfs.sqlite.errors import FormatError
from pgfs.store.errors import StoreError

log = logging.getLogger("pgfs")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SECRETS: set[str] = set()
"""DSNs opened by this process: error messages are scrubbed of their passwords."""


# ---------------------------------------------------------------- errors


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


# ---------------------------------------------------------------- store options


@dataclass(frozen=True)
class StoreOptions:
    """--dsn / --dsn-file / --meta-schema / --data-schema of one command."""

    dsn: str | None
    meta_schema: str
    data_schema: str
    dsn_file: Path | None = None


DSN_HELP = (
    "PostgreSQL connection string. A password here shows in the process list: use "
    "--dsn-file for one."
)
DSN_FILE_HELP = (
    "A file holding the connection string (the way to pass a password). Without --dsn "
    "or --dsn-file: $PGFS_DSN, the file named by $PGFS_DSN_FILE, or the libpq "
    "environment (PGHOST, PGUSER, PGPASSWORD, ~/.pgpass...)."
)


def dsn_file_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--dsn-file PATH, for every command that takes --dsn."""
    return click.option(
        "--dsn-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        metavar="PATH",
        help=DSN_FILE_HELP,
    )(command)


def check_one_dsn_source(dsn: str | None, dsn_file: Path | None) -> None:
    if dsn and dsn_file:
        raise click.UsageError("give --dsn or --dsn-file, not both")


def store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --dsn, --dsn-file, --meta-schema and --data-schema; the command receives
    them as one `store: StoreOptions` argument (open it with `open_store`)."""

    @click.option("--dsn", metavar="DSN", default=None, help=DSN_HELP)
    @dsn_file_option
    @click.option(
        "--meta-schema",
        default="pgfs",
        show_default=True,
        metavar="NAME",
        help="PostgreSQL schema for pgfs' own tables (pages, header, commit log).",
    )
    @click.option(
        "--data-schema",
        default="jellyfin",
        show_default=True,
        metavar="NAME",
        help="PostgreSQL schema for the database's tables.",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        dsn: str | None,
        dsn_file: Path | None,
        meta_schema: str,
        data_schema: str,
        **kwargs: Any,
    ):
        check_one_dsn_source(dsn, dsn_file)
        options = StoreOptions(dsn, meta_schema, data_schema, dsn_file)
        return command(*args, store=options, **kwargs)

    return wrapper


def resolve_store_dsn(options: StoreOptions) -> str:
    """The DSN the options stand for (remembered so that errors never show its password).

    Each command resolves its options once, so a password in --dsn is warned about once.
    """
    from pgfs.store.dsn import resolve_dsn

    if options.dsn:
        _SECRETS.add(options.dsn)
        warn_if_password_in_argv(options.dsn)
    dsn = resolve_dsn(options.dsn, options.dsn_file)
    _SECRETS.add(dsn)
    return dsn


def warn_if_password_in_argv(dsn: str) -> None:
    """A password given as --dsn is readable by every user on the machine (ps, /proc)."""
    from pgfs.store.dsn import dsn_has_password

    if dsn_has_password(dsn):
        log.warning(
            "--dsn carries a password, which every user on this machine can read in the "
            "process list: put the DSN in a file only you can read and pass --dsn-file PATH "
            "(or use $PGFS_DSN_FILE, $PGPASSWORD or ~/.pgpass)"
        )


def open_store(options: StoreOptions):
    """Connect to the store the options name (StoreUnavailableError if unreachable)."""
    from pgfs.store import open_store as open_backend

    dsn = resolve_store_dsn(options)
    return open_backend(dsn, meta_schema=options.meta_schema, data_schema=options.data_schema)


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


def register_command(command: click.Command) -> None:
    """Add a command defined elsewhere (pgfs.fuse adds mount/unmount/status)."""
    cli.add_command(command)


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else float("inf")


@cli.command("import")
@click.argument("sqlite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite a database the store already holds.")
@click.option(
    "--force",
    is_flag=True,
    help="Import a file that fails PRAGMA integrity_check: rows that do not decode are left "
    "out and reported.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@store_options
def import_command(
    sqlite_file: Path, replace: bool, force: bool, no_progress: bool, store: StoreOptions
):
    """Import SQLITE_FILE into PostgreSQL (one transaction)."""
    from pgfs.emulator.importer import import_file

    with open_store(store) as opened:
        report = import_file(
            opened, sqlite_file, replace=replace, progress=not no_progress, force=force
        )
    for problem in report.problems[:10]:
        click.echo(f"integrity_check: {problem}", err=True)
    for table, rowids in sorted(report.dropped_rows.items()):
        shown = ", ".join(str(r) for r in rowids[:10]) + (" ..." if len(rowids) > 10 else "")
        click.echo(f"dropped {len(rowids)} rows of {table} (rowids {shown})", err=True)
    click.echo(
        f"imported {sqlite_file}: {report.pages} pages ({_mb(report.bytes)}), "
        f"{report.total_rows} rows in {len(report.rows)} tables, {report.seconds:.1f} s "
        f"({_rate(report.bytes, report.seconds) / 1e6:.1f} MB/s, "
        f"{_rate(report.total_rows, report.seconds):.0f} rows/s)"
    )


@cli.command("export")
@click.argument("out_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT_FILE if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@store_options
def export_command(out_file: Path, force: bool, no_progress: bool, store: StoreOptions):
    """Write the stored database to OUT_FILE as a SQLite file."""
    from pgfs.emulator.exporter import export_file

    with open_store(store) as opened:
        report = export_file(opened, out_file, progress=not no_progress, force=force)
    click.echo(
        f"exported {report.pages} pages ({_mb(report.bytes)}) to {out_file} in "
        f"{report.seconds:.1f} s ({_rate(report.bytes, report.seconds) / 1e6:.1f} MB/s)"
    )


@cli.command("verify")
@store_options
def verify_command(store: StoreOptions):
    """Render the whole database, run PRAGMA integrity_check, compare every table's rows."""
    from pgfs.emulator.exporter import verify

    with open_store(store) as opened:
        report = verify(opened)
    rows = sum(report.tables.values())
    if not report.ok:
        for line in report.integrity[:20]:
            if line != "ok":
                click.echo(f"integrity_check: {line}", err=True)
        for line in report.damage:
            click.echo(f"damaged: {line}", err=True)
        for line in report.mismatches:
            click.echo(f"mismatch: {line}", err=True)
        fail(
            f"verify failed: integrity_check {'ok' if report.integrity == ['ok'] else 'failed'}, "
            f"{len(report.mismatches)} row mismatches"
        )
    click.echo(
        f"ok: {report.pages} pages pass integrity_check; {rows} rows in "
        f"{len(report.tables)} tables match PostgreSQL ({report.seconds:.1f} s)"
    )


@cli.command("inspect")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@store_options
def inspect_command(as_json: bool, store: StoreOptions):
    """Show the header, tables, pages by kind, inexact rows and last commits."""
    with open_store(store) as opened:
        report = opened.inspect()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str, sort_keys=True))
        return
    click.echo(format_inspect(report))


def format_inspect(report: dict[str, Any]) -> str:
    """The human-readable form of `Store.inspect()`."""
    lines = [
        f"server: {report.get('server')}  schemas: meta={report.get('meta_schema')} "
        f"data={report.get('data_schema')}"
    ]
    if not report.get("initialised") or not report.get("page_count"):
        lines.append("the store holds no database")
        return "\n".join(lines)
    header = report.get("header") or {}
    page_size, page_count = report.get("page_size") or 0, report.get("page_count") or 0
    lines.append(
        f"database: {page_count} pages of {page_size} bytes ({_mb(page_size * page_count)}), "
        f"encoding {header.get('text_encoding')}, schema format {header.get('schema_format')}, "
        f"{'WAL' if header.get('write_version') == 2 else 'rollback journal'}, "
        f"user_version {header.get('user_version')}, "
        f"freelist {header.get('freelist_count')} pages"
    )
    lines.append("tables:")
    for table in report.get("tables", []):
        pages = table.get("pages", {})
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(pages.items()))
        extra = " (WITHOUT ROWID mirror)" if table.get("without_rowid") else ""
        lines.append(
            f"  {table['name']}{extra}: {table['rows']} rows, "
            f"{table.get('inexact_rows', 0)} rows whose typed columns cannot hold every value, "
            f"{table.get('short_records', 0)} short records; pages: {kinds or 'none'}"
        )
    others = report.get("other_objects") or {}
    if others:
        lines.append("other objects (raw pages):")
        for owner, kinds in others.items():
            listed = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            lines.append(f"  {owner or '(none)'}: {listed}")
    by_kind = report.get("pages_by_kind") or {}
    lines.append("pages by kind: " + ", ".join(f"{k} {v}" for k, v in by_kind.items()))
    lines.append(
        "rows whose typed columns cannot hold every value (their records keep it): "
        f"{report.get('inexact_rows', 0)}"
    )
    commits = report.get("last_commits") or []
    if commits:
        lines.append("last commits:")
        for commit in commits:
            lines.append(
                f"  #{commit['id']} {commit['committed_at']} {commit['source']}: "
                f"+{commit['inserted']} ~{commit['updated']} -{commit['deleted']} rows, "
                f"{commit['pages']} pages, {commit['ms']} ms"
            )
    return "\n".join(lines)


import pgfs.fuse.commands  # noqa: E402, F401  (registers mount, unmount, status)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="pgfs")


if __name__ == "__main__":
    main()
