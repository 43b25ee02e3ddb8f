"""`MountOptions`: everything a mount is asked for, declared once.

One frozen dataclass. `pgfs.cli` derives from its fields the `pgfs mount`
options (each field's `metadata["help"]`, its type and default) and the argv
that `--daemon` re-runs in a detached child; the composition root
(`pgfs.cli.app`) opens the stores it names; `run_mount` serves it. A field
whose metadata says `cli=False` is not a `pgfs mount` option of its own: the
store options (`--dsn`, `--dsn-file`, `--meta-schema`, `--data-schema`) are
shared with every command that opens a store.

Database names and schemas: the first name uses `meta_schema` /
`data_schema`; each further name `N` (e.g. `library.db`) gets the data schema
`library` and the meta schema `<meta_schema>_library` (`pgfs.cli.app`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_NAME = "jellyfin.db"
DEFAULT_CACHE_DIR = Path(".pgfs/cache")
FSNAME = "pgfs"


class ControlError(Exception):
    """A mount, unmount or status request that cannot be carried out (message is for users)."""


def _option(help: str, **extra: Any) -> dict[str, Any]:
    return {"help": help, **extra}


@dataclass(frozen=True)
class MountOptions:
    """What `pgfs mount` is asked for (module docstring)."""

    mountpoint: Path = field(metadata=_option("The mount point.", argument=True))
    names: tuple[str, ...] = field(
        default=(DEFAULT_NAME,),
        metadata=_option(
            "Database file name in the mount (default jellyfin.db); repeat for more "
            "databases (the second and later use the schemas <meta-schema>_<stem> and <stem>).",
            flag="--name",
            metavar="NAME",
        ),
    )
    dsn: str | None = field(default=None, metadata={"cli": False})
    """Resolved from the store options; a daemon gets it by environment, never argv."""
    meta_schema: str = field(default="pgfs", metadata={"cli": False})
    data_schema: str = field(default="jellyfin", metadata={"cli": False})
    data_dir: Path | None = field(
        default=None,
        metadata=_option(
            "Where the embedded PostgreSQL keeps its cluster when no DSN is configured at all "
            "(default .pgfs/postgres here; as root, when the postgres user cannot enter it, "
            "/var/lib/pgfs/<its path>-<hash>/data instead). A directory given here is used as "
            "is or refused before anything starts; a cluster in it is reused and must be of "
            "the installed PostgreSQL major version.",
            directory=True,
        ),
    )
    """None: the default place, which may move; a directory given is kept."""
    backing_dir: Path | None = field(
        default=None,
        metadata=_option(
            "Pass every name that is not a database file through to this directory.",
            directory=True,
        ),
    )
    metrics_addr: str | None = field(
        default=None,
        metadata=_option(
            "Serve Prometheus /metrics and /healthz (PostgreSQL reachable) there.",
            metavar="HOST:PORT",
        ),
    )
    cache_dir: Path | None = field(
        default=DEFAULT_CACHE_DIR,
        metadata=_option(
            "Local page cache (kept across restarts while the store is unchanged).",
            directory=True,
        ),
    )
    warm_cache: bool = field(
        default=False,
        metadata=_option(
            "Fill the local page cache with every page in the background after mounting: "
            "a full local copy, so reads stop waiting on the server (the file grows to the "
            "database's size)."
        ),
    )
    takeover: bool = field(
        default=False,
        metadata=_option(
            "Take the store's writer lease from another mount (which then fails its writes)."
        ),
    )
    allow_other: bool = field(
        default=False, metadata=_option("Let other users see the mount (FUSE).")
    )
    read_only: bool = field(default=False, metadata=_option("Refuse every write (EROFS)."))
    uid: int | None = field(default=None, metadata=_option("Owner of the database files."))
    gid: int | None = field(default=None, metadata=_option("Group of the database files."))
    mode: int = field(default=0o644, metadata=_option("File mode.", octal=True))
    attr_timeout: float = field(
        default=30.0, metadata=_option("Seconds the kernel caches attributes and names.")
    )

    def absolute(self) -> MountOptions:
        """The same options with every path made absolute (a daemon runs elsewhere)."""
        paths = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.absolute() for k, v in paths.items() if isinstance(v, Path)})

    def fuse_options(self) -> set[str]:
        """The options handed to libfuse."""
        options = {f"fsname={FSNAME}", "subtype=pgfs", "default_permissions"}
        if self.allow_other:
            options.add("allow_other")
        return options


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    """The database file names to serve (the default when none); ControlError for a name
    that is not a plain file name, starts with .pgfs, or collides with another's side files."""
    if not names:
        return (DEFAULT_NAME,)
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
    return tuple(names)
