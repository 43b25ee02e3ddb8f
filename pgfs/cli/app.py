"""The composition root: what `pgfs mount` builds, and the only place that does.

`serve(options)` checks everything it can first (the mount point, FUSE
access, where the embedded cluster would live), then connects one store per
database name (starting an `EmbeddedCluster` first when no DSN is configured
at all: in `data_dir` as given, or in the default place, moved when the
server's user cannot reach it), takes each store's writer lease, opens a
`Database` over the local page cache, mounts them with `run_mount`, serves
until unmounted or SIGTERM/SIGINT, then closes the stores and stops the
cluster it started.

Database names and schemas: the first name uses `meta_schema` /
`data_schema`; each further name `N` (e.g. `library.db`) gets the data schema
`library` and the meta schema `<meta_schema>_library`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pgfs.emulator.database import Database
from pgfs.emulator.pagecache import CacheStamp, DiskPages, PageCache
from pgfs.fuse.metrics import parse_address
from pgfs.fuse.mount import fuse_problem, is_mounted, run_mount
from pgfs.fuse.options import ControlError, MountOptions, check_names
from pgfs.store import open_store
from pgfs.store.cluster import ClusterError, ClusterLocation, EmbeddedCluster, locate_cluster
from pgfs.store.dsn import redact_dsn, resolve_dsn
from pgfs.store.errors import LeaseHeldError
from pgfs.store.interface import LeaseHolder

log = logging.getLogger("pgfs.fuse")

DEFAULT_DATA_DIR = Path(".pgfs/postgres")
_LIBPQ_TARGET_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")


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


def wants_embedded_cluster(dsn: str | None) -> bool:
    """No DSN anywhere (option, $PGFS_DSN, $PGFS_DSN_FILE, libpq target variables)."""
    return not resolve_dsn(dsn) and not any(os.environ.get(v) for v in _LIBPQ_TARGET_ENV)


def locate_embedded_cluster(data_dir: Path | None) -> ClusterLocation:
    """Where the embedded cluster would live; ControlError naming the directory and the fix."""
    requested = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR).absolute()
    try:
        return locate_cluster(requested, may_move=data_dir is None)
    except ClusterError as exc:
        raise ControlError(str(exc)) from None


@contextlib.contextmanager
def open_databases(
    options: MountOptions, location: ClusterLocation | None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Open a store and Database per name, in the cluster at `location` when there is one;
    yields (databases, status extras)."""
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


def _open_database(store: Any, options: MountOptions, meta_schema: str) -> Any:
    """Take the store's writer lease, then open its database over the local page cache."""
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


def serve(options: MountOptions) -> None:
    """Mount in the foreground until unmounted or signalled (module docstring)."""
    options = replace(options.absolute(), names=check_names(options.names))
    if is_mounted(options.mountpoint):
        raise ControlError(f"{options.mountpoint} is already mounted")
    if not options.mountpoint.is_dir():
        raise ControlError(f"mount point {options.mountpoint} is not a directory")
    if options.backing_dir is not None and not options.backing_dir.is_dir():
        raise ControlError(f"backing directory {options.backing_dir} is not a directory")
    if options.metrics_addr:
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
    with open_databases(options, location) as (databases, extras):
        run_mount(options, databases, extra_status=extras, handle_signals=True)
