"""`--backing-dir`: every name that is not a database file behaves as a plain folder.

The same sequence of operations runs on the mount and on a plain folder; every
result (return values, errno of failures, stat sizes and modes, the final tree
and contents) must be the same. Beside them, jellyfin.db is still served from
PostgreSQL.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .helpers import Client, Mount

Op = tuple[str, Callable[[Path], Any]]


def _write(path: Path, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    fd = os.open(path, flags, 0o644)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def _pread(path: Path, size: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _mmap_write(path: Path) -> bytes:
    """Grow a file with ftruncate, write through a shared mapping, msync, read it back."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 3 * mmap.PAGESIZE)
        with mmap.mmap(fd, 3 * mmap.PAGESIZE) as mapped:
            mapped[:5] = b"head!"
            mapped[mmap.PAGESIZE + 100 : mmap.PAGESIZE + 106] = b"middle"
            mapped[-4:] = b"tail"
            mapped.flush()
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapped:
            seen = bytes(mapped[:5]) + bytes(mapped[-4:])
    finally:
        os.close(fd)
    return seen + _pread(path, 6, mmap.PAGESIZE + 100)


def _stat(path: Path) -> tuple[str, int, int]:
    st = os.lstat(path)
    size = st.st_size if not stat.S_ISDIR(st.st_mode) else -1  # directory sizes are the FS's
    return stat.filemode(st.st_mode), size, st.st_nlink if not stat.S_ISDIR(st.st_mode) else -1


def _append(path: Path, data: bytes) -> tuple[int, int]:
    written = _write(path, data, os.O_WRONLY | os.O_APPEND)
    return written, os.stat(path).st_size


def _truncate(path: Path, size: int) -> tuple[int, bytes]:
    os.truncate(path, size)
    return os.stat(path).st_size, path.read_bytes()


OPS: list[Op] = [
    ("create+write", lambda r: _write(r / "a.txt", b"hello world")),
    ("read", lambda r: (r / "a.txt").read_bytes()),
    ("pread middle", lambda r: _pread(r / "a.txt", 4, 3)),
    ("pread past end", lambda r: _pread(r / "a.txt", 10, 100)),
    ("exclusive create of existing", lambda r: os.open(r / "a.txt", os.O_CREAT | os.O_EXCL)),
    ("append", lambda r: _append(r / "a.txt", b" and more")),
    ("stat file", lambda r: _stat(r / "a.txt")),
    ("pwrite beyond end (hole)", lambda r: _write(r / "sparse", b"")),
    (
        "hole write",
        lambda r: (
            os.pwrite(fd := os.open(r / "sparse", os.O_WRONLY), b"z", 9000) + (os.close(fd) or 0)
        ),
    ),
    ("hole contents", lambda r: ((r / "sparse").read_bytes().count(b"\0"), _stat(r / "sparse"))),
    ("truncate shorter", lambda r: _truncate(r / "a.txt", 5)),
    ("truncate longer", lambda r: _truncate(r / "a.txt", 8)),
    ("mkdir", lambda r: os.mkdir(r / "dir")),
    ("mkdir again", lambda r: os.mkdir(r / "dir")),
    ("mkdir nested", lambda r: os.makedirs(r / "dir" / "sub" / "deeper")),
    ("file in dir", lambda r: _write(r / "dir" / "sub" / "f.bin", bytes(range(256)) * 40)),
    ("stat dir file", lambda r: _stat(r / "dir" / "sub" / "f.bin")),
    ("rmdir non-empty", lambda r: os.rmdir(r / "dir" / "sub")),
    ("rmdir deeper", lambda r: os.rmdir(r / "dir" / "sub" / "deeper")),
    ("rmdir missing", lambda r: os.rmdir(r / "nope")),
    ("unlink a dir", lambda r: os.unlink(r / "dir")),
    ("rename file", lambda r: os.rename(r / "a.txt", r / "dir" / "b.txt")),
    ("rename missing", lambda r: os.rename(r / "a.txt", r / "c.txt")),
    (
        "rename over file",
        lambda r: (
            _write(r / "c.txt", b"c"),
            os.rename(r / "c.txt", r / "dir" / "b.txt"),
            (r / "dir" / "b.txt").read_bytes(),
        ),
    ),
    ("rename dir", lambda r: os.rename(r / "dir" / "sub", r / "moved")),
    ("rename dir over non-empty", lambda r: os.rename(r / "moved", r / "dir")),
    ("symlink", lambda r: os.symlink("moved/f.bin", r / "link")),
    ("readlink", lambda r: os.readlink(r / "link")),
    ("read via link", lambda r: len((r / "link").read_bytes())),
    ("dangling symlink", lambda r: os.symlink("no/such", r / "dangling")),
    ("read dangling", lambda r: (r / "dangling").read_bytes()),
    ("lstat link", lambda r: _stat(r / "link")[0]),
    ("symlink exists", lambda r: os.symlink("x", r / "link")),
    ("hard link", lambda r: os.link(r / "moved" / "f.bin", r / "hard")),
    ("stat hard", lambda r: _stat(r / "hard")),
    ("chmod", lambda r: (os.chmod(r / "hard", 0o600), _stat(r / "moved" / "f.bin"))),
    ("chmod dir", lambda r: (os.chmod(r / "dir", 0o750), _stat(r / "dir")[0])),
    ("mmap write+read", lambda r: _mmap_write(r / "mapped")),
    ("mmap file read", lambda r: (r / "mapped").read_bytes().strip(b"\0")),
    ("stat mapped", lambda r: _stat(r / "mapped")),
    ("setxattr", lambda r: os.setxattr(r / "dir" / "b.txt", "user.pgfs", b"v1")),
    ("getxattr", lambda r: os.getxattr(r / "dir" / "b.txt", "user.pgfs")),
    (
        "setxattr create existing",
        lambda r: os.setxattr(r / "dir" / "b.txt", "user.pgfs", b"v2", os.XATTR_CREATE),
    ),
    (
        "setxattr replace missing",
        lambda r: os.setxattr(r / "dir" / "b.txt", "user.other", b"v2", os.XATTR_REPLACE),
    ),
    ("setxattr on dir", lambda r: os.setxattr(r / "dir", "user.dir", b"d" * 300)),
    (
        "listxattr",
        lambda r: sorted(n for n in os.listxattr(r / "dir" / "b.txt") if n.startswith("user.")),
    ),
    ("getxattr missing", lambda r: os.getxattr(r / "dir", "user.nope")),
    ("xattr on symlink", lambda r: os.setxattr(r / "link", "user.l", b"", follow_symlinks=False)),
    ("removexattr", lambda r: os.removexattr(r / "dir" / "b.txt", "user.pgfs")),
    ("removexattr missing", lambda r: os.removexattr(r / "dir" / "b.txt", "user.pgfs")),
    (
        "xattrs after",
        lambda r: (
            os.getxattr(r / "dir", "user.dir"),
            sorted(n for n in os.listxattr(r / "dir" / "b.txt") if n.startswith("user.")),
        ),
    ),
    ("unlink", lambda r: os.unlink(r / "hard")),
    ("unlink missing", lambda r: os.unlink(r / "hard")),
    ("unlink link", lambda r: os.unlink(r / "dangling")),
    ("open missing", lambda r: (r / "missing").read_bytes()),
    ("open dir for write", lambda r: os.open(r / "dir", os.O_WRONLY)),
    ("readdir root", lambda r: sorted(os.listdir(r))),
    ("readdir sub", lambda r: sorted(os.listdir(r / "dir"))),
    (
        "scandir kinds",
        lambda r: sorted(
            (e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in os.scandir(r)
        ),
    ),
    (
        "utime",
        lambda r: (
            os.utime(r / "dir" / "b.txt", (1_000_000, 2_000_000)),
            os.stat(r / "dir" / "b.txt").st_mtime,
        ),
    ),
]


def _run(root: Path) -> list[tuple[str, Any]]:
    results: list[tuple[str, Any]] = []
    for name, op in OPS:
        try:
            value = op(root)
            if isinstance(value, int) and name.startswith("exclusive"):
                os.close(value)
            results.append((name, value))
        except OSError as exc:
            results.append((name, ("error", errno.errorcode.get(exc.errno or 0, exc.errno))))
    return results


def _tree(root: Path, skip: set[str]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs.sort()
        for name in sorted(dirs + files):
            if rel == Path(".") and name in skip:
                continue
            path = Path(folder) / name
            mode = stat.filemode(os.lstat(path).st_mode)
            if path.is_symlink():
                found.append((str(rel / name), mode, os.readlink(path)))
            elif path.is_dir():
                found.append((str(rel / name), mode, None))
            else:
                found.append((str(rel / name), mode, path.read_bytes()))
    return found


@pytest.fixture
def umask() -> Iterator[None]:
    """The same umask for both folders (and put back afterwards)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask")
def test_passthrough_matches_a_plain_folder(
    tmp_path: Path, pg_dsn: str, mount_factory: Callable[..., Mount]
) -> None:
    plain, backing = tmp_path / "plain", tmp_path / "backing"
    plain.mkdir()
    backing.mkdir()
    mount = mount_factory(pg_dsn, extra=["--backing-dir", str(backing)])

    # The database beside the ordinary files, before and during: PostgreSQL's.
    with Client(mount.db) as client:
        client.execute("PRAGMA journal_mode=WAL")
        client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        client.execute("INSERT INTO t (v) VALUES ('before')")

        expected = _run(plain)
        got = _run(mount.path)
        # The database, its -wal/-shm and .pgfs-status are the mount's own names.
        virtual = {n for n in os.listdir(mount.path) if n.startswith((mount.db.name, ".pgfs"))}
        assert {mount.db.name, f"{mount.db.name}-wal"} <= virtual
        for (name, want), (_, have) in zip(expected, got, strict=True):
            if name in ("readdir root", "scandir kinds"):
                have = [h for h in have if (h[0] if isinstance(h, tuple) else h) not in virtual]
            assert have == want, name

        # The database file itself has no extended attributes and takes none.
        assert os.listxattr(mount.db) == []
        with pytest.raises(OSError) as refused:
            os.setxattr(mount.db, "user.x", b"1")
        assert refused.value.errno == errno.EOPNOTSUPP
        with pytest.raises(OSError) as missing:
            os.getxattr(mount.db, "user.x")
        assert missing.value.errno == errno.ENODATA
        client.execute("INSERT INTO t (v) VALUES ('after')")
        assert client.execute("SELECT v FROM t ORDER BY id") == [("before",), ("after",)]

    assert _tree(mount.path, virtual) == _tree(plain, set())
    assert _tree(backing, set()) == _tree(plain, set())
    assert not (backing / mount.db.name).exists()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT v FROM jellyfin.t ORDER BY id").fetchall()
    assert rows == [("before",), ("after",)]
    assert os.stat(mount.db).st_size > 0
