"""The README's first command, `./scripts/demo.sh`, in a fresh clone of this commit.

Run as a newcomer would: as root in a 0700 directory (the embedded PostgreSQL runs as
postgres, which cannot enter it, so pgfs keeps the cluster under /var/lib/pgfs), and
as an unprivileged user made for the test, in their own 0700 home (PostgreSQL runs as
that user, FUSE goes through the setuid fusermount3). Each run must exit 0 and print
the demo's rows from PostgreSQL, a second run must show the first run's rows too,
PostgreSQL's own table must hold them, and nothing may stay mounted or running.

The clones' virtualenvs install from the package index like any first run; the
user's gets a copy of root's pip cache (its built pyfuse3 wheel). One test takes
about a minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgfs.fuse.mount import FUSE_DEVICE, fuse_problem
from pgfs.store.cluster import EmbeddedCluster, moved_data_dir

REPO = Path(__file__).resolve().parents[2]
TITLES = {("Metropolis", 1927), ("Nosferatu", 1922), ("Sunrise", 1927), ("The General", 1926)}
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
ROW = re.compile(r"^    (\S.*?) +(\d{4})  Data: \d+ characters$", re.MULTILINE)
CLUSTER_LINE = re.compile(r"no DSN configured: starting PostgreSQL \(as (\S+)\) in (\S+?)[,\n]")

ROWS_IN_POSTGRES = """
import json, sys
from pathlib import Path
import psycopg
from pgfs.store.cluster import EmbeddedCluster
cluster = EmbeddedCluster(Path(sys.argv[1])).start()
try:
    with psycopg.connect(cluster.dsn) as conn:
        rows = conn.execute('SELECT "Name", "ProductionYear" FROM jellyfin."BaseItems"')
        print(json.dumps(sorted(rows.fetchall())))
finally:
    cluster.stop()
"""


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it makes a 0700 directory of root's and a user"
    for tool in ("git", "runuser", "useradd", "userdel"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (REPO / ".git").exists():
        return f"{REPO} is not a git checkout: there is no commit to clone"
    return fuse_problem()


@pytest.fixture(scope="module", autouse=True)
def _needs_root_git_and_fuse() -> None:
    reason = _problem()
    if reason:
        pytest.skip(reason)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path


@pytest.fixture(scope="module")
def demo_user() -> Iterator[User]:
    """An unprivileged user with a 0700 home (as Debian's adduser makes it)."""
    name = f"pgfsdemo{os.getpid()}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    entry = pwd.getpwnam(name)
    user = User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
    user.home.chmod(0o700)
    try:
        yield user
    finally:
        for pid in live_processes(lambda info: info.st_uid == user.uid):
            os.kill(pid, 9)  # only what this test started as that user
        subprocess.run(["userdel", "--force", "--remove", name], check=False, capture_output=True)


def git_clone(target: Path, owner: User | None = None) -> Path:
    """A fresh clone of this checkout's committed HEAD at `target`."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", "--detach", head], check=True)
    if owner is not None:
        subprocess.run(["chown", "-R", f"{owner.uid}:{owner.gid}", str(target)], check=True)
    return target


def root_env() -> dict[str, str]:
    """This environment without a DSN, libpq settings or an active virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "VIRTUAL_ENV"))}
    paths = os.environ.get("PATH", USER_PATH).split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in paths if not p.endswith("/.venv/bin"))
    env.pop("PYTHONPATH", None)
    return env


def user_env(user: User, path: str = USER_PATH) -> dict[str, str]:
    """A login-like environment for `user`, with this machine's pip settings."""
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.endswith("_proxy")}
    home = str(user.home)
    return {**env, "HOME": home, "USER": user.name, "LOGNAME": user.name, "PATH": path}


def as_user(user: User | None, argv: list[str]) -> list[str]:
    runuser = shutil.which("runuser")
    assert runuser is not None
    return argv if user is None else [runuser, "-u", user.name, "--", *argv]


def run(argv: list[str], clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def run_demo(clone: Path, env: dict[str, str], user: User | None = None) -> str:
    """`./scripts/demo.sh` as the README says; its output (stdout and stderr)."""
    done = run(as_user(user, ["./scripts/demo.sh"]), clone, env)
    assert done.returncode == 0, done.stdout[-5000:]
    return done.stdout


def cluster_line(output: str) -> tuple[str, Path]:
    """The one log line saying where the embedded PostgreSQL lives: (its user, its dir)."""
    found = CLUSTER_LINE.findall(output)
    assert len(found) == 1, output
    return found[0][0], Path(found[0][1])


def rows_shown(output: str) -> list[tuple[str, int]]:
    """The rows the demo printed from PostgreSQL's jellyfin."BaseItems"."""
    return sorted((name, int(year)) for name, year in ROW.findall(output))


def rows_in_postgres(clone: Path, data_dir: Path, env: dict[str, str], user: User | None):
    """jellyfin."BaseItems" read from the cluster itself (started and stopped again)."""
    argv = [str(clone / ".venv/bin/python"), "-c", ROWS_IN_POSTGRES, str(data_dir)]
    done = run(as_user(user, argv), clone, env)
    assert done.returncode == 0, done.stdout
    return sorted((name, year) for name, year in json.loads(done.stdout.splitlines()[-1]))


def live_processes(wanted) -> list[int]:
    """Pids of processes (zombies aside) whose /proc entry `wanted(stat_result)` accepts."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state not in ("Z", "X") and wanted(entry.stat()):
                pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def leftovers(*places: Path) -> list[str]:
    """Mounts under `places`, and live processes whose command line names one of them."""
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        if any(line.split()[1].startswith(str(place)) for place in places):
            found.append(f"mounted: {line}")
    for pid in live_processes(lambda info: True):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(str(place) in argv for place in places):
            found.append(f"running: {pid} {argv}")
    return found


@pytest.fixture
def private_clone() -> Iterator[Path]:
    """A clone in a 0700 directory of root's; the cluster pgfs moves out of it goes too."""
    folder = Path(tempfile.mkdtemp(prefix="pgfs-first-command-"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    clone = folder / "pgfs"
    moved = moved_data_dir(clone / ".pgfs" / "postgres")
    try:
        yield git_clone(clone)
    finally:
        subprocess.run(["fusermount3", "-uz", str(clone / ".pgfs" / "mnt")], capture_output=True)
        EmbeddedCluster(moved).stop("immediate")
        shutil.rmtree(moved.parent, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_as_root_from_a_private_directory(private_clone: Path) -> None:
    env = root_env()
    requested = private_clone / ".pgfs" / "postgres"
    first = run_demo(private_clone, env)
    assert rows_shown(first) == sorted(TITLES)
    user, data_dir = cluster_line(first)
    assert (user, data_dir) == ("postgres", moved_data_dir(requested))
    assert f"not in {requested}: postgres cannot enter {private_clone.parent}" in first
    owner = pwd.getpwnam("postgres").pw_uid
    for folder in (data_dir, data_dir.with_name("data.socket")):
        assert (folder.stat().st_uid, stat.S_IMODE(folder.stat().st_mode)) == (owner, 0o700)
    assert not requested.exists()
    assert leftovers(private_clone, data_dir) == []

    second = run_demo(private_clone, env)  # the cluster is found again, rows and all
    assert cluster_line(second) == (user, data_dir)
    assert rows_shown(second) == sorted([*TITLES, *TITLES])
    assert leftovers(private_clone, data_dir) == []
    assert rows_in_postgres(private_clone, data_dir, env, None) == sorted([*TITLES, *TITLES])
    assert leftovers(private_clone, data_dir) == []


def fuse_closed_to_users() -> bool:
    return FUSE_DEVICE.stat().st_mode & 0o006 != 0o006


@contextlib.contextmanager
def fuse_lent_to(user: User) -> Iterator[None]:
    """A stock Debian makes /dev/fuse 0666; where it is closed to users (this VM), the
    test user's group gets it for a while, then the old owner and mode come back."""
    info = FUSE_DEVICE.stat()
    if fuse_closed_to_users():
        os.chown(FUSE_DEVICE, -1, user.gid)
        FUSE_DEVICE.chmod(stat.S_IMODE(info.st_mode) | 0o060)
    try:
        yield
    finally:
        os.chown(FUSE_DEVICE, info.st_uid, info.st_gid)
        FUSE_DEVICE.chmod(stat.S_IMODE(info.st_mode))


def copy_pip_cache(user: User) -> None:
    """Root's pip cache (pyfuse3's built wheel among it) for the user's first venv."""
    found = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True
    )
    cache = Path(found.stdout.strip())
    if found.returncode == 0 and cache.is_dir():
        shutil.copytree(cache, user.home / ".cache" / "pip")
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(user.home / ".cache")])


@pytest.mark.slow
def test_as_a_user_in_their_own_home(demo_user: User) -> None:
    clone = git_clone(demo_user.home / "pgfs", owner=demo_user)
    env = user_env(demo_user)
    data_dir = clone / ".pgfs" / "postgres"
    copy_pip_cache(demo_user)
    if fuse_closed_to_users():
        # Where FUSE is closed to users, the demo sets up, then stops before PostgreSQL.
        refused = run(as_user(demo_user, ["./scripts/demo.sh"]), clone, env)
        assert refused.returncode != 0
        assert f"{demo_user.name} cannot open {FUSE_DEVICE}" in refused.stdout
        assert "chmod 0666 /dev/fuse" in refused.stdout
        assert not (data_dir / "PG_VERSION").exists()
        assert leftovers(clone) == []

    with fuse_lent_to(demo_user):
        first = run_demo(clone, env, demo_user)
        assert rows_shown(first) == sorted(TITLES)
        assert cluster_line(first) == (demo_user.name, data_dir)
        assert (data_dir / "PG_VERSION").stat().st_uid == demo_user.uid
        assert leftovers(clone) == []
        second = run_demo(clone, env, demo_user)
        assert rows_shown(second) == sorted([*TITLES, *TITLES])
    assert rows_in_postgres(clone, data_dir, env, demo_user) == sorted([*TITLES, *TITLES])
    assert leftovers(clone) == []
    assert live_processes(lambda info: info.st_uid == demo_user.uid) == []


def test_setup_names_missing_packages_instead_of_installing_them(demo_user: User) -> None:
    """Without root, setup.sh never calls apt-get: here fusermount3 is not on the PATH."""
    clone = git_clone(demo_user.home / "setup-check", owner=demo_user)
    bin_dir = demo_user.home / "bin-without-fusermount3"
    bin_dir.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "fusermount3":
            (bin_dir / tool.name).symlink_to(tool)
    done = run(
        as_user(demo_user, ["/bin/bash", "scripts/setup.sh"]),
        clone,
        user_env(demo_user, path=str(bin_dir)),
    )
    assert done.returncode == 1, done.stdout
    assert "setup: missing Debian packages: fuse3\n" in done.stdout
    assert "install them as root (apt-get install fuse3)" in done.stdout
    assert not (clone / ".venv").exists()


@pytest.mark.slow
def test_the_test_command_as_a_user_in_their_own_home(demo_user: User) -> None:
    """The README's second command, as the same user: it sets up its own venv and passes
    (a slice of the suite that starts its own PostgreSQL as that user)."""
    clone = git_clone(demo_user.home / "pgfs-tests", owner=demo_user)
    if not (demo_user.home / ".cache" / "pip").exists():
        copy_pip_cache(demo_user)
    argv = ["./scripts/test.sh", "-q", "-p", "no:cacheprovider", "tests/sqlite/test_varint.py"]
    argv += ["tests/store/postgres/test_store.py"]
    done = run(as_user(demo_user, argv), clone, user_env(demo_user))
    assert done.returncode == 0, done.stdout[-5000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
    assert live_processes(lambda info: info.st_uid == demo_user.uid) == []
