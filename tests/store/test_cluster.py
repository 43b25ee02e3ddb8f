"""Where the embedded cluster lives, and what pgfs refuses before initdb or the server run.

As root the server runs as `postgres`: a cluster asked for in a default place that
`postgres` cannot reach moves to /var/lib/pgfs, one named by the user is refused.
A directory that is neither empty nor a cluster, a cluster of another major
version or of another owner, and a socket path too long are refused before
anything starts, leaving the directory as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgfs.store.cluster import (
    MOVED_CLUSTERS_DIR,
    ClusterError,
    EmbeddedCluster,
    installed_major_version,
    locate_cluster,
    server_user,
)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as postgres only as root")


def listing(folder: Path) -> list[tuple[str, int, int]]:
    """Every path under `folder` with its owner and mode: what 'left as it was' means."""
    found = []
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        found.append((str(path.relative_to(folder)), info.st_uid, info.st_mode))
    return found


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A 0700 directory of root's, as root's home is on Debian."""
    folder = Path(tempfile.mkdtemp(prefix="pgfs-private-"))
    assert folder.stat().st_mode & 0o777 == 0o700
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def stopped_cluster() -> Iterator[Path]:
    """A real cluster made by the installed initdb, stopped; tests copy it (cp -a)."""
    with EmbeddedCluster.temporary() as cluster:
        with psycopg.connect(cluster.dsn) as conn:
            conn.execute("CREATE TABLE marker AS SELECT 'made once' AS note")
        cluster.stop()
        yield cluster.data_dir


def copy_cluster(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target


def test_a_reachable_directory_is_used_in_place(open_dir: Path) -> None:
    requested = open_dir / ".pgfs" / "postgres"
    location = locate_cluster(requested, may_move=True)
    assert location.data_dir == requested
    assert location.closed is None
    assert str(requested) in location.describe()


@as_root
def test_root_moves_a_default_cluster_out_of_a_private_directory(private_dir: Path) -> None:
    requested = private_dir / "pgfs" / ".pgfs" / "postgres"
    location = locate_cluster(requested, may_move=True)
    moved = location.data_dir.parent
    assert (moved.parent, location.data_dir.name) == (MOVED_CLUSTERS_DIR, "data")
    tail = re.escape(f"{private_dir.name}-pgfs-.pgfs-postgres-")
    assert re.search(tail + "[0-9a-f]{10}$", moved.name), moved.name
    assert locate_cluster(requested, may_move=True) == location  # the same place every run
    assert locate_cluster(private_dir / "other", may_move=True).data_dir != location.data_dir
    line = location.describe()
    assert f"in {location.data_dir}, not in {requested}" in line
    assert f"postgres cannot enter {private_dir} (mode 0700, owner root)" in line
    assert not requested.exists()  # deciding creates nothing


@as_root
def test_root_refuses_a_named_directory_postgres_cannot_reach(private_dir: Path) -> None:
    requested = private_dir / "pg"
    with pytest.raises(ClusterError) as refused:
        locate_cluster(requested, may_move=False)
    message = str(refused.value)
    assert message.startswith(f"{requested}: ")
    assert f"cannot enter {private_dir} (mode 0700, owner root)" in message
    assert "Choose a data directory postgres can reach" in message
    assert listing(private_dir) == []


def test_a_directory_neither_empty_nor_a_cluster_is_refused(open_dir: Path) -> None:
    data_dir = open_dir / "data"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("mine\n")
    before = listing(open_dir)
    with pytest.raises(ClusterError, match="neither empty nor a PostgreSQL cluster"):
        EmbeddedCluster(data_dir).start()
    assert listing(open_dir) == before


def test_a_cluster_of_another_major_version_is_refused(
    stopped_cluster: Path, open_dir: Path
) -> None:
    data_dir = copy_cluster(stopped_cluster, open_dir / "data")
    installed = installed_major_version()
    assert (data_dir / "PG_VERSION").read_text().strip() == installed
    older = str(int(installed) - 1)
    (data_dir / "PG_VERSION").write_text(older + "\n")  # what a cluster of that version says
    before = listing(open_dir)
    with pytest.raises(ClusterError) as refused:
        EmbeddedCluster(data_dir).start()
    assert str(refused.value).startswith(
        f"{data_dir} holds a PostgreSQL {older} cluster, and the installed server is "
        f"PostgreSQL {installed}: upgrade the cluster"
    )
    assert listing(open_dir) == before


def test_a_cluster_is_reused_and_one_of_another_owner_is_refused(
    stopped_cluster: Path, open_dir: Path
) -> None:
    data_dir = copy_cluster(stopped_cluster, open_dir / "data")
    cluster = EmbeddedCluster(data_dir).start()
    try:
        with psycopg.connect(cluster.dsn) as conn:
            assert conn.execute("SELECT note FROM marker").fetchall() == [("made once",)]
    finally:
        cluster.stop()
    if os.geteuid() != 0:
        return
    data_dir = copy_cluster(stopped_cluster, open_dir / "data2")
    os.chown(data_dir, 0, 0)
    with pytest.raises(ClusterError, match=f"{data_dir} belongs to root, but the server runs as"):
        EmbeddedCluster(data_dir).start()
    assert not (data_dir / "postmaster.pid").exists()


def test_a_socket_path_too_long_is_refused(open_dir: Path) -> None:
    data_dir = open_dir / ("d" * 90) / "postgres"
    with pytest.raises(ClusterError, match="over the 107 a unix socket path allows"):
        locate_cluster(data_dir, may_move=False)
    assert listing(open_dir) == []


def test_the_folders_belong_to_the_server_user_and_are_private(open_dir: Path) -> None:
    cluster = EmbeddedCluster(open_dir / "deep" / "data")
    with cluster:
        owner = server_user().pw_uid
        for path, mode in ((cluster.data_dir, 0o700), (cluster.socket_dir, 0o700)):
            assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (owner, mode)
        assert cluster.log_file.stat().st_uid == owner
        assert (open_dir / "deep").stat().st_uid == os.geteuid()  # not handed over
