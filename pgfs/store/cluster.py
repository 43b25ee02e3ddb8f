"""A throwaway or persistent PostgreSQL cluster run from the installed server binaries.

Used by the test suite, the README's demo and `pgfs mount` without a DSN. The
server listens only on a unix socket in a 0700 folder beside the data
directory (no TCP port), so two clusters never collide and only the server's
user (and root) can connect. `initdb` refuses to run as root; as root the
cluster is owned by the `postgres` system user.

Where a cluster may live (`locate_cluster`, `check_cluster_dir`): the
server's user must be able to pass through every directory above the data
directory. When pgfs runs as root and that user cannot (a clone in root's
0700 home), a cluster asked for in a default place moves to
`/var/lib/pgfs/<the requested path's tail>-<hash>/data`, the same place on
every run; a directory the user named is refused instead. Everything that
would make `initdb` or the server fail later (a directory that is neither
empty nor a cluster, a cluster of another PostgreSQL major version or of
another owner, a socket path too long) is refused before anything starts.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

SERVER_USER = "postgres"
MOVED_CLUSTERS_DIR = Path("/var/lib/pgfs")
MOVED_NAME_LENGTH = 48
SOCKET_NAME = ".s.PGSQL.5432"
MAX_SOCKET_PATH = 107
"""Bytes in a unix socket path (sun_path holds 108 with the terminating NUL)."""


class ClusterError(RuntimeError):
    """The embedded PostgreSQL server could not be created, started or stopped."""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ClusterError(
        f"{name} not found: install the PostgreSQL server (apt-get install postgresql)"
    )


def server_user() -> pwd.struct_passwd:
    """Who runs the server: this process's user, or `postgres` when that is root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ClusterError(
            f"as root, pgfs runs the embedded PostgreSQL as the {SERVER_USER} user (initdb "
            "refuses root), and there is no such user: install the PostgreSQL server "
            "(apt-get install postgresql creates it), or give a DSN"
        ) from None


@functools.cache
def installed_major_version() -> str:
    """The installed server's major version as PG_VERSION spells it: "15", or "9.6"."""
    argv = [_binary("pg_ctl"), "--version"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?", out)
    if found is None:
        raise ClusterError(f"cannot tell the PostgreSQL version from {argv[0]}: {out.strip()!r}")
    major, minor = found.groups()
    return major if int(major) >= 10 else f"{major}.{minor}"


def socket_dir_for(data_dir: Path) -> Path:
    return data_dir.parent / (data_dir.name + ".socket")


def _owner_name(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _describe_dir(directory: Path) -> str:
    """`/root (mode 0700, owner root)`: enough to see why a user cannot pass."""
    mode = stat.S_IMODE(directory.stat().st_mode)
    return f"{directory} (mode {mode:04o}, owner {_owner_name(directory)})"


def _can_search(directory: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may pass through `directory`, by its permission bits (not ACLs)."""
    info = directory.stat()
    if user.pw_uid == 0:
        return True
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def first_closed_dir(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing directory on the way to `path` (itself included) that `user`
    cannot pass through; None when the way is open (missing ones pgfs creates 0755)."""
    for directory in (*reversed(path.parents), path):
        if not directory.is_dir():
            return None
        if not _can_search(directory, user):
            return directory
    return None


def moved_data_dir(requested: Path) -> Path:
    """Where a cluster asked for at `requested` lives when the server's user cannot reach
    it: under /var/lib/pgfs, named after the path's last components and a hash of the
    whole path (the same place on every run; short enough for the socket path)."""
    digest = hashlib.sha256(os.fsencode(requested)).hexdigest()[:10]
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", part) for part in requested.parts[1:]]
    tail = names[-1][-MOVED_NAME_LENGTH:] if names else "cluster"
    for name in reversed(names[:-1]):
        if len(name) + 1 + len(tail) > MOVED_NAME_LENGTH:
            break
        tail = f"{name}-{tail}"
    return MOVED_CLUSTERS_DIR / f"{tail.lstrip('-._') or 'cluster'}-{digest}" / "data"


@dataclass(frozen=True)
class ClusterLocation:
    """Where the embedded cluster lives and who runs it; `closed` says why it moved."""

    data_dir: Path
    requested: Path
    user: str
    closed: str | None = None

    def describe(self) -> str:
        """One log line: where the cluster lives (and, when it moved, why)."""
        where = f"PostgreSQL (as {self.user}) in {self.data_dir}"
        if self.closed is None:
            return where
        return f"{where}, not in {self.requested}: {self.user} cannot enter {self.closed}"


def locate_cluster(requested: Path, *, may_move: bool) -> ClusterLocation:
    """Where the cluster asked for at `requested` (absolute) lives; ClusterError, naming the
    directory and the fix, when it cannot live there (module docstring)."""
    user = server_user()
    location = ClusterLocation(requested, requested, user.pw_name)
    closed = _closed_to_server(requested, user)
    if closed is not None and may_move:
        moved = moved_data_dir(requested)
        location = ClusterLocation(moved, requested, user.pw_name, _describe_dir(closed))
        closed = _closed_to_server(moved, user)
    if closed is not None:
        raise ClusterError(
            f"{location.data_dir}: pgfs runs as root, so the embedded PostgreSQL runs as "
            f"{user.pw_name}, who cannot enter {_describe_dir(closed)}. Choose a data "
            f"directory {user.pw_name} can reach (such as {MOVED_CLUSTERS_DIR}/"
            f"{requested.name}), or give a DSN"
        )
    check_cluster_dir(location.data_dir, user)
    return location


def _closed_to_server(data_dir: Path, user: pwd.struct_passwd) -> Path | None:
    """The directory that keeps the server's user (when not us) from `data_dir`, if any."""
    if user.pw_uid == os.geteuid():
        return None
    return first_closed_dir(data_dir.parent, user)


def check_cluster_dir(data_dir: Path, user: pwd.struct_passwd) -> None:
    """Refuse (ClusterError) a data directory `initdb` or the server would fail on."""
    socket = socket_dir_for(data_dir) / SOCKET_NAME
    if len(os.fsencode(socket)) > MAX_SOCKET_PATH:
        raise ClusterError(
            f"{data_dir}: the server's socket {socket} would be {len(os.fsencode(socket))} "
            f"bytes long, over the {MAX_SOCKET_PATH} a unix socket path allows: choose a "
            "shorter data directory"
        )
    if data_dir.exists() or data_dir.is_symlink():
        _check_existing_dir(data_dir, user)
    else:
        _check_creatable(data_dir)


def _check_existing_dir(data_dir: Path, user: pwd.struct_passwd) -> None:
    if not data_dir.is_dir():
        raise ClusterError(f"{data_dir} is not a directory")
    if os.geteuid() != 0 and not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        _refuse_other_owner(data_dir, user)
    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        found, installed = version_file.read_text().strip(), installed_major_version()
        if found != installed:
            raise ClusterError(
                f"{data_dir} holds a PostgreSQL {found} cluster, and the installed server "
                f"is PostgreSQL {installed}: upgrade the cluster (pg_upgrade, or dump and "
                "restore it), or choose another data directory"
            )
    elif not _is_empty(data_dir):
        raise ClusterError(
            f"{data_dir} is neither empty nor a PostgreSQL cluster (no PG_VERSION): choose "
            "an empty or new data directory"
        )
    elif os.geteuid() == 0:
        return  # an empty folder: pgfs hands it to the server's user
    if data_dir.stat().st_uid != user.pw_uid:
        _refuse_other_owner(data_dir, user)


def _refuse_other_owner(data_dir: Path, user: pwd.struct_passwd) -> NoReturn:
    raise ClusterError(
        f"{data_dir} belongs to {_owner_name(data_dir)}, but the server runs as "
        f"{user.pw_name}: as root, chown -R {user.pw_name}: {data_dir}, or choose another "
        "data directory"
    )


def _is_empty(directory: Path) -> bool:
    return next(directory.iterdir(), None) is None


def _check_creatable(data_dir: Path) -> None:
    existing = next(parent for parent in data_dir.parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise ClusterError(
            f"{data_dir} cannot be created: {me} cannot write to {_describe_dir(existing)}; "
            "choose another data directory"
        )


def _make_dirs(path: Path) -> None:
    """`path` and its missing parents, each 0755 whatever the umask (the server's user
    must pass through them)."""
    for directory in reversed([path, *path.parents]):
        if not directory.exists():
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class EmbeddedCluster:
    """A PostgreSQL cluster in `data_dir`, listening on a unix socket in `data_dir/socket`.

    `start()` creates the cluster on first use; `stop()` stops the server but
    keeps the data. Use as a context manager for a temporary cluster.
    """

    data_dir: Path
    database: str = "pgfs"
    port: int = 5432
    tcp: bool = False
    """Also listen on 127.0.0.1:`port` (tests put a TCP proxy in front of it)."""
    _owner: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    @classmethod
    def temporary(cls, *, tcp: bool = False) -> EmbeddedCluster:
        base = Path(tempfile.mkdtemp(prefix="pgfs-pg-"))
        base.chmod(0o755)  # the server's user passes through; its own folders are 0700
        return cls(data_dir=base / "data", port=_free_port() if tcp else 5432, tcp=tcp)

    @property
    def socket_dir(self) -> Path:
        return socket_dir_for(self.data_dir)

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    @property
    def user(self) -> str:
        return self._server_user().pw_name

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    def admin_dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str, *, tcp: bool = False) -> str:
        """The DSN of `database` on this server: its unix socket, or 127.0.0.1 (`tcp`)."""
        host = "127.0.0.1" if tcp else str(self.socket_dir)
        return f"host={host} port={self.port} dbname={database} user={self.user}"

    def _server_user(self) -> pwd.struct_passwd:
        if self._owner is None:
            self._owner = server_user()
        return self._owner

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        owner = self._server_user()
        kwargs: dict = {}
        if os.geteuid() == 0:
            kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        try:
            return subprocess.run(
                argv,
                check=True,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                cwd="/",
                **kwargs,
            )
        except subprocess.CalledProcessError as exc:
            raise ClusterError(
                f"{Path(argv[0]).name} failed: {exc.stderr.strip()[-2000:]}"
            ) from exc

    def _prepare_dirs(self) -> None:
        """The data and socket folders (0700) and the log file (0600), the server's user's."""
        owner = self._server_user()
        _make_dirs(self.data_dir.parent)
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.chmod(0o700)
        self.log_file.touch(mode=0o600, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.data_dir, self.socket_dir, self.log_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and (
            self.socket_dir / f".s.PGSQL.{self.port}"
        ).exists()

    def start(self) -> EmbeddedCluster:
        check_cluster_dir(self.data_dir, self._server_user())
        self._prepare_dirs()
        if not self.is_initialised():
            self._run(
                _binary("initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-U",
                self.user,
            )
        if not self.is_running():
            listen = "127.0.0.1" if self.tcp else ""
            options = (
                f"-c listen_addresses='{listen}' -c port={self.port} "
                f"-c unix_socket_directories='{self.socket_dir}' "
                "-c fsync=off -c full_page_writes=off -c max_connections=100"
            )
            self._run(
                _binary("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "start",
            )
        self._ensure_database()
        return self

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def stop(self, mode: str = "fast") -> None:
        if self.is_initialised() and (self.data_dir / "postmaster.pid").exists():
            self._run(_binary("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()
