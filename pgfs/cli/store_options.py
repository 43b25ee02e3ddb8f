"""The store options every command that opens a store takes.

`@store_options` adds `--dsn`, `--dsn-file`, `--meta-schema` and
`--data-schema`; the command receives them as one `store: StoreOptions`
argument and opens its store with `open_store(store)`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pgfs.cli.group import remember_secret

log = logging.getLogger("pgfs")


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
        remember_secret(options.dsn)
        warn_if_password_in_argv(options.dsn)
    dsn = resolve_dsn(options.dsn, options.dsn_file)
    remember_secret(dsn)
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
