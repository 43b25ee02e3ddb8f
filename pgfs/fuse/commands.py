"""`pgfs mount`, `pgfs unmount`, `pgfs status`, registered on the click group in pgfs.cli
when this module is imported (pgfs.cli imports it).

pyfuse3 is imported only when a mount actually starts, so the other pgfs
commands do not need FUSE installed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from pgfs.cli import StoreOptions, register_command, resolve_store_dsn, store_options

DEFAULT_LOG_FILE = Path(".pgfs/pgfs.log")


class _Octal(click.ParamType):
    name = "OCTAL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            mode = int(str(value), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal mode such as 644", param, ctx)
        if not 0 <= mode <= 0o7777:
            self.fail(f"{value!r} is not a file mode", param, ctx)
        return mode


def _control_error(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _log_level_is_default(ctx: click.Context) -> bool:
    parent = ctx.find_root()
    source = parent.get_parameter_source("log_level")
    return source is None or source.name == "DEFAULT"


@click.command("mount")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="NAME",
    help="Database file name in the mount (default jellyfin.db); repeat for more databases "
    "(the second and later use the schemas <meta-schema>_<stem> and <stem>).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the embedded PostgreSQL keeps its cluster when no DSN is configured at all "
    "(default .pgfs/postgres here; as root, when the postgres user cannot enter it, "
    "/var/lib/pgfs/<its path>-<hash>/data instead). A directory given here is used as is "
    "or refused before anything starts; a cluster in it is reused and must be of the "
    "installed PostgreSQL major version.",
)
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
@click.option(
    "--backing-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Pass every name that is not a database file through to this directory.",
)
@click.option(
    "--metrics-addr",
    metavar="HOST:PORT",
    default=None,
    help="Serve Prometheus /metrics and /healthz (PostgreSQL reachable) there.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".pgfs/cache"),
    show_default=True,
    help="Local page cache (kept across restarts while the store is unchanged).",
)
@click.option(
    "--takeover",
    is_flag=True,
    help="Take the store's writer lease from another mount (which then fails its writes).",
)
@click.option("--allow-other", is_flag=True, help="Let other users see the mount (FUSE).")
@click.option("--read-only", is_flag=True, help="Refuse every write (EROFS).")
@click.option("--uid", type=int, default=None, help="Owner of the database files.")
@click.option("--gid", type=int, default=None, help="Group of the database files.")
@click.option("--mode", type=_Octal(), default="644", show_default=True, help="File mode.")
@click.option(
    "--attr-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds the kernel caches attributes and names.",
)
@store_options
@click.pass_context
def mount_command(
    ctx: click.Context,
    mountpoint: Path,
    names: tuple[str, ...],
    data_dir: Path | None,
    foreground: bool,
    log_file: Path,
    backing_dir: Path | None,
    metrics_addr: str | None,
    cache_dir: Path,
    takeover: bool,
    allow_other: bool,
    read_only: bool,
    uid: int | None,
    gid: int | None,
    mode: int,
    attr_timeout: float,
    store: StoreOptions,
) -> None:
    """Mount the database(s) kept in PostgreSQL on MOUNTPOINT.

    Without any DSN (--dsn, --dsn-file, $PGFS_DSN, $PGFS_DSN_FILE, libpq variables) an
    embedded PostgreSQL is started in --data-dir and stopped at unmount. SIGTERM or
    SIGINT finishes the commit in flight and unmounts.
    """
    from pgfs.fuse import control

    dsn = resolve_store_dsn(store) if store.dsn or store.dsn_file else None
    names_list = list(names) or [control.DEFAULT_NAME]
    try:
        control.check_names(names_list)
    except control.ControlError as exc:
        raise _control_error(exc) from None
    if _log_level_is_default(ctx):
        logging.getLogger("pgfs").setLevel(logging.INFO)  # one line per commit
    if not foreground:
        _daemonize(ctx, mountpoint, log_file, dsn)
        return
    options = control.ServeOptions(
        mountpoint=mountpoint,
        names=names_list,
        dsn=dsn,
        meta_schema=store.meta_schema,
        data_schema=store.data_schema,
        data_dir=data_dir,
        read_only=read_only,
        allow_other=allow_other,
        uid=uid,
        gid=gid,
        mode=mode,
        attr_timeout=attr_timeout,
        backing_dir=backing_dir,
        metrics_addr=metrics_addr,
        takeover=takeover,
        cache_dir=cache_dir,
    )
    try:
        control.serve(options)
    except control.ControlError as exc:
        raise _control_error(exc) from None


def _daemonize(ctx: click.Context, mountpoint: Path, log_file: Path, dsn: str | None) -> None:
    """Run the same mount with --foreground, detached; the DSN (read from --dsn-file
    already) goes by environment."""
    from pgfs.fuse import control

    root = ctx.find_root()
    argv = [sys.executable, "-c", "from pgfs.cli import main; main()"]
    level = root.params.get("log_level")
    if level and not _log_level_is_default(ctx):
        argv += ["--log-level", str(level)]
    if root.params.get("log_json"):
        argv.append("--log-json")
    argv += ["mount", str(mountpoint.absolute()), "--foreground"]
    for name, value in ctx.params.items():
        if name in ("mountpoint", "foreground", "dsn", "dsn_file", "log_file"):
            continue
        option = "--" + name.replace("_", "-")
        if name == "names":
            for item in value:
                argv += ["--name", item]
        elif name in ("data_dir", "backing_dir", "cache_dir") and value is not None:
            argv += [option, str(Path(value).absolute())]
        elif name == "mode":
            argv += [option, f"{value:o}"]
        elif isinstance(value, bool):
            if value:
                argv.append(option)
        elif value is not None:
            argv += [option, str(value)]
    environment = dict(os.environ)
    if dsn:
        environment["PGFS_DSN"] = dsn
    try:
        pid = control.start_daemon(argv, mountpoint, log_file, env=environment)
    except control.ControlError as exc:
        raise _control_error(exc) from None
    click.echo(f"pgfs: mounted on {mountpoint.absolute()} (pid {pid}, log {log_file})")


@click.command("unmount")
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
    except control.ControlError as exc:
        raise _control_error(exc) from None


@click.command("status")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(mountpoint: Path, as_json: bool) -> None:
    """Databases served on MOUNTPOINT, commits applied, last commit and last error."""
    from pgfs.fuse import control

    try:
        status = control.read_status(mountpoint)
    except control.ControlError as exc:
        raise _control_error(exc) from None
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
    else:
        click.echo(control.format_status(status))


COMMANDS = (mount_command, unmount_command, status_command)

for _command in COMMANDS:
    register_command(_command)
