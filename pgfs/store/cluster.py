"""A throwaway or persistent PostgreSQL cluster run from the installed server binaries.

Used by the test suite, the README's demo and `pgfs mount` without a DSN. The
server listens only on a unix socket inside the cluster's own folder (no TCP
port), so two clusters never collide and nothing is reachable from outside.
`initdb` refuses to run as root; as root the cluster is owned by the
`postgres` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SERVER_USER = "postgres"


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


@dataclass
class EmbeddedCluster:
    """A PostgreSQL cluster in `data_dir`, listening on a unix socket in `data_dir/socket`.

    `start()` creates the cluster on first use; `stop()` stops the server but
    keeps the data. Use as a context manager for a temporary cluster.
    """

    data_dir: Path
    database: str = "pgfs"
    _owner: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    @classmethod
    def temporary(cls) -> EmbeddedCluster:
        base = Path(tempfile.mkdtemp(prefix="pgfs-pg-"))
        return cls(data_dir=base / "data")

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / (self.data_dir.name + ".socket")

    @property
    def user(self) -> str:
        return self._server_user().pw_name

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} dbname={self.database} user={self.user}"

    def admin_dsn(self) -> str:
        return f"host={self.socket_dir} dbname=postgres user={self.user}"

    def _server_user(self) -> pwd.struct_passwd:
        if self._owner is None:
            if os.geteuid() == 0:
                self._owner = pwd.getpwnam(SERVER_USER)
            else:
                self._owner = pwd.getpwuid(os.geteuid())
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
        owner = self._server_user()
        for path in (self.data_dir.parent, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.socket_dir,):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if os.geteuid() == 0:
            os.chown(self.data_dir.parent, owner.pw_uid, owner.pw_gid)

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and (
            self.socket_dir / ".s.PGSQL.5432"
        ).exists()

    def start(self) -> EmbeddedCluster:
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
            options = (
                f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
                "-c fsync=off -c full_page_writes=off -c max_connections=100"
            )
            self._run(
                _binary("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.data_dir.parent / "postgres.log"),
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
