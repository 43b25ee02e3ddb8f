"""The request router and the virtual file kinds, called directly on a trio loop: no
kernel mount, no PostgreSQL (the database file is a `DatabaseFile` over the tracker
tests' in-memory backend)."""

from __future__ import annotations

import errno
import json
import os
import stat
from types import SimpleNamespace

import pyfuse3
import pytest
import trio

from pgfs.fuse.files import DatabaseNode, RootDirectory, SideNode, StatusNode
from pgfs.fuse.operations import FIRST_DB_INODE, STATUS_INODE, STATUS_NAME, PgfsOperations
from pgfs.tracker import DatabaseFile
from tests.support.memory_backend import MemoryBackend

CTX = SimpleNamespace(uid=os.getuid(), gid=os.getgid(), umask=0o022, pid=os.getpid())
ROOT = pyfuse3.ROOT_INODE


@pytest.fixture(autouse=True)
def _needs_fuse() -> None:
    """Overrides the FUSE check of tests/fuse/conftest.py: nothing is mounted here."""


def fields(**updates: bool) -> SimpleNamespace:
    names = ("size", "mode", "uid", "gid", "atime", "mtime", "ctime")
    return SimpleNamespace(**{f"update_{n}": updates.get(n, False) for n in names})


def attr(**values: int) -> pyfuse3.EntryAttributes:
    entry = pyfuse3.EntryAttributes()
    for name, value in values.items():
        setattr(entry, name, value)
    return entry


def router(read_only: bool = False) -> PgfsOperations:
    dbfile = DatabaseFile("test.db", MemoryBackend(), read_only=read_only)
    return PgfsOperations({"test.db": dbfile}, status=lambda: {"pid": 1}, read_only=read_only)


def errno_of(outcome: pytest.ExceptionInfo[pyfuse3.FUSEError]) -> int:
    return outcome.value.errno


def test_each_name_has_its_file_kind() -> None:
    ops = router()
    assert isinstance(ops.root, RootDirectory)
    assert isinstance(ops.entries["test.db"], DatabaseNode)
    assert isinstance(ops.entries[STATUS_NAME], StatusNode)
    assert ops.entries["test.db"].inode == FIRST_DB_INODE

    async def main() -> None:
        entry = await ops.lookup(ROOT, b"test.db", CTX)
        assert entry.st_ino == FIRST_DB_INODE and entry.st_size == 0
        assert (await ops.lookup(ROOT, b"test.db-wal", CTX)).st_ino == 0  # cached absence
        assert (await ops.lookup(ROOT, b"elsewhere.txt", CTX)).st_ino == 0
        assert (await ops.getattr(STATUS_INODE, CTX)).attr_timeout == 0
        assert stat.S_ISDIR((await ops.getattr(ROOT, CTX)).st_mode)

    trio.run(main)


def test_side_files_are_created_written_read_and_unlinked() -> None:
    ops = router()

    async def main() -> None:
        info, entry = await ops.create(ROOT, b"test.db-wal", 0o666, os.O_RDWR, CTX)
        node = ops.nodes[entry.st_ino]
        assert isinstance(node, SideNode) and stat.S_IMODE(node.mode) == 0o644
        assert await ops.write(info.fh, 0, b"not a WAL header") == 16
        assert await ops.read(info.fh, 4, 5) == b"a WAL"
        assert (await ops.getattr(entry.st_ino, CTX)).st_size == 16
        await ops.setattr(entry.st_ino, attr(st_size=3), fields(size=True), info.fh, CTX)
        assert await ops.read(info.fh, 0, 100) == b"not"
        with pytest.raises(pyfuse3.FUSEError) as exists:
            await ops.create(ROOT, b"test.db-wal", 0o644, os.O_RDWR | os.O_EXCL, CTX)
        assert errno_of(exists) == errno.EEXIST
        await ops.unlink(ROOT, b"test.db-wal", CTX)
        assert "test.db-wal" not in ops.entries
        assert entry.st_ino in ops.nodes, "open and looked up: the inode stays"
        await ops.release(info.fh)
        await ops.forget([(entry.st_ino, 1)])  # the lookup create counted
        assert entry.st_ino not in ops.nodes
        assert ops.reads == 2 and ops.writes == 1

    trio.run(main)


def test_what_a_kind_does_not_support_gets_the_kernels_errno() -> None:
    ops = router()

    async def expect(code: int, request) -> None:
        with pytest.raises(pyfuse3.FUSEError) as outcome:
            await request
        assert errno_of(outcome) == code

    async def main() -> None:
        await expect(errno.EISDIR, ops.open(ROOT, os.O_RDONLY, CTX))
        await expect(errno.EACCES, ops.open(STATUS_INODE, os.O_RDWR, CTX))
        await expect(errno.EPERM, ops.unlink(ROOT, b"test.db", CTX))
        await expect(errno.EPERM, ops.unlink(ROOT, STATUS_NAME.encode(), CTX))
        await expect(errno.ENOENT, ops.unlink(ROOT, b"test.db-journal", CTX))
        await expect(errno.ENOENT, ops.unlink(ROOT, b"elsewhere.txt", CTX))
        status = fields(size=True)
        await expect(errno.EPERM, ops.setattr(STATUS_INODE, attr(st_size=0), status, None, CTX))
        await expect(errno.EISDIR, ops.setattr(ROOT, attr(st_size=0), status, None, CTX))
        await expect(errno.EPERM, ops.create(ROOT, b"elsewhere.txt", 0o644, os.O_RDWR, CTX))
        await expect(errno.EPERM, ops.mkdir(ROOT, b"test.db-journal", 0o755, CTX))
        await expect(errno.ENOTDIR, ops.opendir(FIRST_DB_INODE, CTX))
        await expect(errno.ENOENT, ops.getattr(99999, CTX))
        # No backing directory, no extended attributes: ENOSYS stops the kernel's
        # security.capability lookup before every write.
        await expect(errno.ENOSYS, ops.getxattr(FIRST_DB_INODE, b"user.x", CTX))
        assert await ops.listxattr(FIRST_DB_INODE, CTX) == []

    trio.run(main)


def test_the_status_file_is_a_snapshot_taken_at_open() -> None:
    ops = router()

    async def main() -> None:
        info = await ops.open(STATUS_INODE, os.O_RDONLY, CTX)
        assert info.direct_io and not info.keep_cache
        document = json.loads(await ops.read(info.fh, 0, 1 << 20))
        assert document["pid"] == 1 and set(document["databases"]) == {"test.db"}
        await ops.release(info.fh)

    trio.run(main)


def test_chmod_and_chown_of_a_virtual_file() -> None:
    ops = router()

    async def main() -> None:
        changes = fields(mode=True, uid=True)
        values = attr(st_mode=stat.S_IFREG | 0o600, st_uid=4242)
        entry = await ops.setattr(FIRST_DB_INODE, values, changes, None, CTX)
        assert stat.S_IMODE(entry.st_mode) == 0o600 and stat.S_ISREG(entry.st_mode)
        assert entry.st_uid == 4242

    trio.run(main)


def test_the_logs_use_direct_io_and_the_shared_memory_the_page_cache() -> None:
    ops = router()

    async def main() -> None:
        for name in (b"test.db-wal", b"test.db-journal"):
            info, _ = await ops.create(ROOT, name, 0o644, os.O_RDWR, CTX)
            assert info.direct_io and not info.keep_cache, "one request per write"
        info, _ = await ops.create(ROOT, b"test.db-shm", 0o644, os.O_RDWR, CTX)
        assert not info.direct_io and info.keep_cache, "-shm is mmap-ed"
        info = await ops.open(FIRST_DB_INODE, os.O_RDWR, CTX)
        assert not info.direct_io and info.keep_cache, "database reads are cached"

    trio.run(main)
