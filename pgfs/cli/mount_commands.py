"""`pgfs mount`, `pgfs unmount`, `pgfs status`.

pyfuse3 is imported only when a mount actually starts (or a mount is
unmounted or asked for its status), so the other pgfs commands do not need
FUSE installed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from pgfs.cli.group import cli
from pgfs.cli.mount_options import mount_argv, mount_options, options_from_params
from pgfs.cli.store_options import StoreOptions, resolve_store_dsn, store_options
from pgfs.fuse.options import ControlError, MountOptions

DEFAULT_LOG_FILE = Path(".pgfs/pgfs.log")


def _control_error(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _log_level_is_default(ctx: click.Context) -> bool:
    parent = ctx.find_root()
    source = parent.get_parameter_source("log_level")
    return source is None or source.name == "DEFAULT"


@cli.command("mount")
@mount_options
@click.option(
    "--foreground/--daemon",
    default=True,
    show_default=True,
    help="Serve in this process, or detach and return once mounted.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_LOG_FILE,
    show_default=True,
    help="The daemon's log (with --daemon).",
)
@store_options
@click.pass_context
def mount_command(
    ctx: click.Context, foreground: bool, log_file: Path, store: StoreOptions, **_: object
) -> None:
    """Mount the database(s) kept in PostgreSQL on MOUNTPOINT.

    Without any DSN (--dsn, --dsn-file, $PGFS_DSN, $PGFS_DSN_FILE, libpq variables) an
    embedded PostgreSQL is started in --data-dir and stopped at unmount. SIGTERM or
    SIGINT finishes the commit in flight and unmounts.
    """
    dsn = resolve_store_dsn(store) if store.dsn or store.dsn_file else None
    try:
        options = options_from_params(ctx.params, dsn=dsn)
    except ControlError as exc:
        raise _control_error(exc) from None
    if _log_level_is_default(ctx):
        logging.getLogger("pgfs").setLevel(logging.INFO)  # one line per commit
    try:
        if foreground:
            from pgfs.cli import app

            app.serve(options)
        else:
            _daemonize(ctx, options, log_file)
    except ControlError as exc:
        raise _control_error(exc) from None


def daemon_command(
    options: MountOptions, *, log_level: str | None = None, log_json: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of a detached foreground mount serving `options`
    (the DSN, read from --dsn-file already, goes by environment)."""
    argv = [sys.executable, "-c", "from pgfs.cli import main; main()"]
    if log_level:
        argv += ["--log-level", log_level]
    if log_json:
        argv.append("--log-json")
    environment = dict(os.environ)
    if options.dsn:
        environment["PGFS_DSN"] = options.dsn
    return argv + mount_argv(options), environment


def _daemonize(ctx: click.Context, options: MountOptions, log_file: Path) -> None:
    """Run the same mount with --foreground, detached."""
    from pgfs.fuse import control

    root = ctx.find_root()
    level = None if _log_level_is_default(ctx) else str(root.params.get("log_level"))
    argv, environment = daemon_command(
        options, log_level=level, log_json=bool(root.params.get("log_json"))
    )
    pid = control.start_daemon(argv, options.mountpoint.absolute(), log_file, env=environment)
    click.echo(f"pgfs: mounted on {options.mountpoint.absolute()} (pid {pid}, log {log_file})")


@cli.command("unmount")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--lazy",
    is_flag=True,
    help="Unmount even while files are open (the daemon finishes commits in flight).",
)
@click.option("--timeout", type=float, default=60.0, show_default=True)
def unmount_command(mountpoint: Path, lazy: bool, timeout: float) -> None:
    """Unmount a pgfs mount and wait until its process has finished."""
    from pgfs.fuse import control

    try:
        control.unmount(mountpoint, lazy=lazy, timeout=timeout)
    except ControlError as exc:
        raise _control_error(exc) from None


@cli.command("status")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(mountpoint: Path, as_json: bool) -> None:
    """Databases served on MOUNTPOINT, commits applied, last commit and last error."""
    from pgfs.fuse import control

    try:
        status = control.read_status(mountpoint)
    except ControlError as exc:
        raise _control_error(exc) from None
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
    else:
        click.echo(control.format_status(status))
