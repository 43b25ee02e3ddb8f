"""What `pgfs mount`, `pgfs unmount` and `pgfs status` do.

- `serve(options)`: the foreground mount. Checks everything it can first
  (the mount point, FUSE access, where the embedded cluster would live), then
  connects one store per database name (starting an `EmbeddedCluster` first
  when no DSN is configured at all: in `data_dir` as given, or in the default
  place, moved when the server's user cannot reach it), mounts, serves until
  unmounted or SIGTERM/SIGINT, then closes the stores and stops the cluster
  it started.
- `start_daemon(argv, ...)`: `--daemon` runs the same command with
  `--foreground` as a detached child (its log in a file) and returns once the
  mount is ready, or fails with the child's last log lines.
- `unmount(mountpoint)`: `fusermount3 -u` (refused by the kernel while files
  are open in the mount); with `lazy=True` the daemon is asked to stop with
  SIGTERM (it finishes commits in flight and detaches the mount) and, if it
  is gone, `fusermount3 -uz`. Waits until the daemon has exited.
- `read_status(mountpoint)`: the JSON the mount serves as `.pgfs-status`
  (pid, databases, their mode, commits applied, last commit, last error).

Database names and schemas: the first name uses `meta_schema` /
`data_schema`; each further name `N` (e.g. `library.db`) gets the data schema
`library` and the meta schema `<meta_schema>_library`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgfs.fuse.mount import MountConfig, fuse_problem, is_mounted, run_mount
from pgfs.fuse.operations import STATUS_NAME
from pgfs.store.cluster import ClusterError, ClusterLocation, EmbeddedCluster, locate_cluster

log = logging.getLogger("pgfs.fuse")

DEFAULT_NAME = "jellyfin.db"
DEFAULT_DATA_DIR = Path(".pgfs/postgres")
DEFAULT_CACHE_DIR = Path(".pgfs/cache")
_LIBPQ_TARGET_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")


class ControlError(Exception):
    """A mount, unmount or status request that cannot be carried out (message is for users)."""


@dataclass
class ServeOptions:
    mountpoint: Path
    names: list[str] = field(default_factory=lambda: [DEFAULT_NAME])
    dsn: str | None = None
    meta_schema: str = "pgfs"
    data_schema: str = "jellyfin"
    data_dir: Path | None = None
    """None: DEFAULT_DATA_DIR, which may move (module docstring); a path given is kept."""
    read_only: bool = False
    allow_other: bool = False
    uid: int | None = None
    gid: int | None = None
    mode: int = 0o644
    attr_timeout: float = 30.0
    backing_dir: Path | None = None
    metrics_addr: str | None = None
    takeover: bool = False
    cache_dir: Path | None = DEFAULT_CACHE_DIR


def schemas_for(names: Sequence[str], meta_schema: str, data_schema: str) -> list[tuple[str, str]]:
    """(meta, data) schema per database name (module docstring)."""
    result = []
    for number, name in enumerate(names):
        if number == 0:
            result.append((meta_schema, data_schema))
            continue
        stem = re.sub(r"[^a-z0-9_]", "_", name.rsplit(".", 1)[0].lower()) or f"db{number}"
        if stem[0].isdigit():
            stem = f"db_{stem}"
        result.append((f"{meta_schema}_{stem}", stem))
    return result


def check_names(names: Sequence[str]) -> list[str]:
    if not names:
        return [DEFAULT_NAME]
    seen: set[str] = set()
    for name in names:
        if not name or "/" in name or name in (".", "..") or name.startswith(".pgfs"):
            raise ControlError(f"invalid database file name {name!r}")
        for other in seen:
            if name.startswith(other + "-") or other.startswith(name + "-"):
                raise ControlError(f"database names {other!r} and {name!r} collide")
        if name in seen:
            raise ControlError(f"database name {name!r} given twice")
        seen.add(name)
    return list(names)


def wants_embedded_cluster(dsn: str | None) -> bool:
    """No DSN anywhere (option, $PGFS_DSN, $PGFS_DSN_FILE, libpq target variables)."""
    from pgfs.store.dsn import resolve_dsn

    return not resolve_dsn(dsn) and not any(os.environ.get(v) for v in _LIBPQ_TARGET_ENV)


def locate_embedded_cluster(data_dir: Path | None) -> ClusterLocation:
    """Where the embedded cluster would live; ControlError naming the directory and the fix."""
    requested = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR).absolute()
    try:
        return locate_cluster(requested, may_move=data_dir is None)
    except ClusterError as exc:
        raise ControlError(str(exc)) from None


@contextlib.contextmanager
def _databases(
    options: ServeOptions, location: ClusterLocation | None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Open a store and Database per name, in the cluster at `location` when there is one;
    yields (databases, status extras)."""
    from pgfs.store import open_store
    from pgfs.store.dsn import redact_dsn, resolve_dsn

    cluster = None
    stores: list[Any] = []
    opened: list[Any] = []
    extras: dict[str, Any] = {}
    try:
        if location is not None:
            cluster = EmbeddedCluster(data_dir=location.data_dir)
            log.info("no DSN configured: starting %s", location.describe())
            try:
                cluster.start()
            except ClusterError as exc:
                raise ControlError(f"the embedded PostgreSQL did not start: {exc}") from None
            dsn = cluster.dsn
            extras["embedded_cluster"] = str(cluster.data_dir)
        else:
            dsn = resolve_dsn(options.dsn)
        extras["store"] = redact_dsn(dsn) if dsn else "(libpq environment)"
        databases: dict[str, Any] = {}
        schemas = schemas_for(options.names, options.meta_schema, options.data_schema)
        for name, (meta, data) in zip(options.names, schemas, strict=True):
            store = open_store(dsn, meta_schema=meta, data_schema=data)
            stores.append(store)
            databases[name] = _open_database(store, options, meta)
            opened.append(databases[name])
            log.info(
                "%s: schemas %s/%s, %d pages of %d bytes",
                name,
                meta,
                data,
                databases[name].page_count,
                databases[name].page_size,
            )
        extras["schemas"] = {
            n: {"meta": m, "data": d} for n, (m, d) in zip(options.names, schemas, strict=True)
        }
        yield databases, extras
    finally:
        for database in opened:
            with contextlib.suppress(Exception):
                database.close()
        for store in stores:
            with contextlib.suppress(Exception):
                store.close()
        if cluster is not None:
            log.info("stopping the embedded PostgreSQL")
            with contextlib.suppress(Exception):
                cluster.stop()


def _open_database(store: Any, options: ServeOptions, meta_schema: str) -> Any:
    """Take the store's writer lease, then open its database over the local page cache."""
    from pgfs.emulator.database import Database
    from pgfs.emulator.pagecache import CacheStamp, DiskPages, PageCache
    from pgfs.store.errors import LeaseHeldError
    from pgfs.store.interface import LeaseHolder

    store.initialise()
    if not options.read_only:
        holder = LeaseHolder.this_process(str(Path(options.mountpoint).absolute()))
        try:
            store.acquire_lease(holder, takeover=options.takeover)
        except LeaseHeldError as exc:
            raise ControlError(str(exc)) from None
    state = store.load_state()
    disk = None
    if options.cache_dir is not None:
        # One folder per store (its id), so stores never share or clobber a cache.
        folder = Path(options.cache_dir).absolute() / (state.store_id or meta_schema)
        disk = DiskPages.open(folder, CacheStamp(state.store_id, state.commit_seq, state.page_size))
    return Database(store, state, PageCache(disk=disk))


def serve(options: ServeOptions) -> None:
    """Mount in the foreground until unmounted or signalled (module docstring)."""
    mountpoint = Path(options.mountpoint).absolute()
    if is_mounted(mountpoint):
        raise ControlError(f"{mountpoint} is already mounted")
    if not mountpoint.is_dir():
        raise ControlError(f"mount point {mountpoint} is not a directory")
    names = check_names(options.names)
    options.names = names
    if options.backing_dir is not None and not Path(options.backing_dir).is_dir():
        raise ControlError(f"backing directory {options.backing_dir} is not a directory")
    if options.metrics_addr:
        from pgfs.fuse.metrics import parse_address

        try:
            parse_address(options.metrics_addr)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
    problem = fuse_problem()
    if problem:
        raise ControlError(problem)
    location = None
    if wants_embedded_cluster(options.dsn):
        location = locate_embedded_cluster(options.data_dir)
    with _databases(options, location) as (databases, extras):
        config = MountConfig(
            mountpoint=mountpoint,
            allow_other=options.allow_other,
            read_only=options.read_only,
            uid=options.uid,
            gid=options.gid,
            mode=options.mode,
            attr_timeout=options.attr_timeout,
            backing_dir=Path(options.backing_dir).absolute() if options.backing_dir else None,
            metrics_addr=options.metrics_addr,
            extra_status=extras,
        )
        run_mount(config, databases, handle_signals=True)


def start_daemon(
    argv: Sequence[str],
    mountpoint: Path,
    log_file: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> int:
    """Run `argv` (a foreground mount command) detached; return its pid once mounted."""
    log_file = Path(log_file).absolute()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            raise ControlError(
                f"the mount process exited with status {code}:\n{_tail(log_file)}".rstrip()
            )
        if is_mounted(mountpoint):
            try:
                read_status(mountpoint)
                return child.pid
            except ControlError:
                pass
        time.sleep(0.1)
    child.terminate()
    raise ControlError(f"{mountpoint} was not mounted after {timeout:.0f} s; log: {log_file}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_status(mountpoint: Path | str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The mount's `.pgfs-status`; ControlError when not a pgfs mount or not answering.

    Read in a daemon thread: a mount whose process hangs must not hang the caller.
    """
    if not is_mounted(mountpoint):
        raise ControlError(f"{mountpoint} is not mounted")
    path = Path(mountpoint) / STATUS_NAME
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["data"] = path.read_bytes()
        except OSError as exc:
            result["error"] = exc

    reader = threading.Thread(target=work, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise ControlError(f"{mountpoint} does not answer (reading {STATUS_NAME} timed out)")
    if "error" in result:
        raise ControlError(f"cannot read {path}: {result['error'].strerror}")
    try:
        return json.loads(result["data"])
    except ValueError as exc:
        raise ControlError(f"{path} is not pgfs status JSON: {exc}") from None


def pid_alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its parent's wait() does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _fusermount(mountpoint: Path, lazy: bool) -> None:
    argv = ["fusermount3", "-u", *(["-z"] if lazy else []), str(mountpoint)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        argv[0] = "umount"
        argv = [a for a in argv if a != "-u"]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()
        if "busy" in message.lower():
            raise ControlError(
                f"{mountpoint} is busy (files are open in it): stop the application first, "
                "or use --lazy"
            )
        raise ControlError(f"unmounting {mountpoint} failed: {message}")


def unmount(mountpoint: Path | str, *, lazy: bool = False, timeout: float = 60.0) -> None:
    """Unmount a pgfs mount and wait for its process to finish (module docstring)."""
    mountpoint = Path(os.path.abspath(mountpoint))
    if not is_mounted(mountpoint):
        raise ControlError(f"{mountpoint} is not mounted")
    pid: int | None = None
    with contextlib.suppress(ControlError):
        pid = int(read_status(mountpoint).get("pid") or 0) or None
    if lazy and pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
    else:
        _fusermount(mountpoint, lazy)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_mounted(mountpoint) and (pid is None or not pid_alive(pid)):
            return
        time.sleep(0.05)
    raise ControlError(f"{mountpoint}: the pgfs process did not finish within {timeout:.0f} s")


def format_status(status: dict[str, Any]) -> str:
    """Human-readable `pgfs status`."""
    lines = [
        f"mounted on {status.get('mountpoint')} (pid {status.get('pid')})"
        + (" read-only" if status.get("read_only") else ""),
    ]
    if status.get("store"):
        lines.append(f"store: {status['store']}")
    for name, db in sorted((status.get("databases") or {}).items()):
        lines.append(
            f"{name}: {db.get('mode')}, {db.get('page_count')} pages of {db.get('page_size')} "
            f"bytes, {db.get('commits')} commits applied"
        )
        last = db.get("last_commit")
        if last:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
            lines.append(
                f"  last commit {when} via {last['source']}: {last['rows']}; "
                f"{last['pages']} pages, {last['ms']} ms"
            )
        if db.get("last_error"):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(db["last_error_at"]))
            lines.append(f"  last error {when}: {db['last_error']}")
    return "\n".join(lines)
