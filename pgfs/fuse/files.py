"""The virtual files of a mount, one class per kind, and open handles on them.

- `RootDirectory`: the mount directory (mirrors the backing directory's
  owner, mode and times when there is one);
- `DatabaseNode`: a database file `N`, rendered from the store, its writes
  and truncations going to the tracker's `DatabaseFile`;
- `SideNode`: `N-journal`, `N-wal` or `N-shm`, bytes the tracker keeps in
  memory; unlinking it is the commit point of journal_mode=DELETE;
- `StatusNode`: `.pgfs-status`, a read-only JSON snapshot taken at open.

Each answers `size`, `read`, `write`, `truncate`, `unlink` and `attributes`
for itself; what a kind does not support raises the errno the kernel
expects. `pgfs.fuse.operations` routes each request to one of these or to
the passthrough (`OpenBacking` for a backing file's handle).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyfuse3

from pgfs.fuse.passthrough import Passthrough
from pgfs.tracker import DatabaseFile, Role, SideFile

BLOCK_SIZE = 4096


@dataclass(eq=False)
class VirtualFile:
    """What every virtual file has: an inode, a name, ownership, times and counts."""

    inode: int
    name: str
    mode: int
    uid: int
    gid: int
    lookups: int = 0
    opens: int = 0
    linked: bool = True
    mtime_ns: int = field(default_factory=time.time_ns)
    ctime_ns: int = 0
    atime_ns: int = 0

    def __post_init__(self) -> None:
        self.ctime_ns = self.ctime_ns or self.mtime_ns
        self.atime_ns = self.atime_ns or self.mtime_ns

    # --- what each kind defines ------------------------------------------------------

    def size(self) -> int:
        return 0

    def timeout(self, default: float) -> float:
        """How long the kernel may cache this file's attributes and entry."""
        return default

    def open(self, flags: int) -> OpenVirtual:
        return OpenVirtual(self)

    async def read(self, offset: int, size: int) -> bytes:
        raise pyfuse3.FUSEError(errno.EBADF)

    async def write(self, offset: int, data: bytes) -> None:
        raise pyfuse3.FUSEError(errno.EBADF)

    async def truncate(self, size: int) -> None:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def unlink(self) -> bool:
        """Remove the file; False when this kind cannot be removed."""
        return False

    # --- shared ------------------------------------------------------------------------

    @property
    def unused(self) -> bool:
        """Unlinked, and neither looked up nor open: its inode can go."""
        return not self.linked and self.lookups <= 0 and self.opens <= 0

    def links(self) -> int:
        return 1 if self.linked else 0

    def attributes(self, attr_timeout: float) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = self.inode
        entry.generation = 0
        entry.entry_timeout = entry.attr_timeout = self.timeout(attr_timeout)
        entry.st_mode = self.mode
        entry.st_nlink = self.links()
        entry.st_uid = self.uid
        entry.st_gid = self.gid
        entry.st_rdev = 0
        size = self.size()
        entry.st_size = size
        entry.st_blksize = BLOCK_SIZE
        entry.st_blocks = (size + 511) // 512
        entry.st_atime_ns = self.atime_ns
        entry.st_mtime_ns = self.mtime_ns
        entry.st_ctime_ns = self.ctime_ns
        return entry

    def set_attributes(self, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> None:
        """chmod, chown and utimes (a truncation is `truncate`)."""
        if fields.update_mode:
            self.mode = stat.S_IFMT(self.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            self.uid = attr.st_uid
        if fields.update_gid:
            self.gid = attr.st_gid
        if fields.update_atime:
            self.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            self.mtime_ns = attr.st_mtime_ns
        self.ctime_ns = time.time_ns()


@dataclass(eq=False)
class RootDirectory(VirtualFile):
    """The mount directory. With a backing directory it shows that directory's owner,
    mode and times (who may create files there), and chmod/chown/utimes go to it."""

    backing: Passthrough | None = None

    def links(self) -> int:
        return 2

    def timeout(self, default: float) -> float:
        return self.backing.attr_timeout if self.backing is not None else default

    def open(self, flags: int) -> OpenVirtual:
        raise pyfuse3.FUSEError(errno.EISDIR)

    async def truncate(self, size: int) -> None:
        raise pyfuse3.FUSEError(errno.EISDIR)

    def attributes(self, attr_timeout: float) -> pyfuse3.EntryAttributes:
        if self.backing is not None:
            info = self.backing.root_stat()
            self.mode = stat.S_IFDIR | stat.S_IMODE(info.st_mode)
            self.uid, self.gid = info.st_uid, info.st_gid
            self.mtime_ns, self.ctime_ns = info.st_mtime_ns, info.st_ctime_ns
        return super().attributes(attr_timeout)

    def set_attributes(self, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> None:
        if self.backing is not None:
            self.backing.apply_attributes(self.backing.root, attr, fields)
        else:
            super().set_attributes(attr, fields)


@dataclass(eq=False)
class DatabaseNode(VirtualFile):
    """A database file: reads rendered from the store, writes tracked until a commit."""

    dbfile: DatabaseFile = field(kw_only=True)

    def size(self) -> int:
        return self.dbfile.size

    async def read(self, offset: int, size: int) -> bytes:
        return await self.dbfile.read(offset, size)

    async def write(self, offset: int, data: bytes) -> None:
        await self.dbfile.write(offset, data)

    async def truncate(self, size: int) -> None:
        await self.dbfile.truncate(size)


@dataclass(eq=False)
class SideNode(VirtualFile):
    """A database's -journal, -wal or -shm file, kept in memory by the tracker."""

    dbfile: DatabaseFile = field(kw_only=True)
    side: SideFile = field(kw_only=True)

    def size(self) -> int:
        return len(self.side.data)

    def open(self, flags: int) -> OpenVirtual:
        # -shm is mmap-ed by SQLite (wal.html "Implementation Of Shared-Memory For The
        # WAL-Index"): it keeps the page cache. -wal and -journal are only read and
        # written with pread/pwrite: direct I/O (OpenLog).
        if self.side.role is Role.SHM:
            return OpenVirtual(self)
        return OpenLog(self)

    async def read(self, offset: int, size: int) -> bytes:
        return self.dbfile.read_side(self.side, offset, size)

    async def write(self, offset: int, data: bytes) -> None:
        await self.dbfile.write_side(self.side, offset, data)

    async def truncate(self, size: int) -> None:
        await self.dbfile.truncate_side(self.side, size)

    async def unlink(self) -> bool:
        # Deleting an active rollback journal is the commit point of journal_mode=DELETE.
        await self.dbfile.unlink_side(self.side.role)
        self.linked = False
        self.ctime_ns = time.time_ns()
        return True


@dataclass(eq=False)
class StatusNode(VirtualFile):
    """`.pgfs-status`: read-only; each open reads a snapshot of the mount's status."""

    render: Callable[[], bytes] = field(kw_only=True)

    def size(self) -> int:
        return len(self.render())

    def timeout(self, default: float) -> float:
        return 0

    def open(self, flags: int) -> OpenVirtual:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EACCES)
        return OpenSnapshot(self, self.render())


# --- open files ----------------------------------------------------------------------


class OpenVirtual:
    """An open virtual file. Cached by the kernel (`keep_cache`): pgfs never changes
    a file's content behind the kernel's back."""

    direct_io = False
    keep_cache = True
    fd: int | None = None

    def __init__(self, file: VirtualFile) -> None:
        self.file = file
        file.opens += 1

    def info(self, fh: int) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=fh, direct_io=self.direct_io, keep_cache=self.keep_cache)

    async def read(self, offset: int, size: int) -> bytes:
        return await self.file.read(offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        await self.file.write(offset, data)
        return len(data)

    def fsync(self, datasync: bool) -> None:
        """Committed data is in the store already; side files are memory by design."""

    def close(self) -> None:
        self.file.opens -= 1


class OpenLog(OpenVirtual):
    """An open -wal or -journal: direct I/O, so each write SQLite makes is one request.

    Through the page cache (FUSE without writeback cache) the kernel ends a write
    request at every page it leaves partly written and not up to date, and asks
    for `security.capability` before every write (`file_remove_privs`; direct
    writes leave that to the filesystem). WAL frames are 24 + page-size bytes
    (fileformat2 §4.1), so every page of the -wal is written in pieces and none
    is ever up to date: a frame cost three write requests and three getxattr
    round trips, and SQLite's reads of it missed the cache anyway. With direct
    I/O a frame is two requests (header, page), as SQLite writes it.
    """

    direct_io = True
    keep_cache = False


class OpenSnapshot(OpenVirtual):
    """`.pgfs-status` as it was at open (direct I/O: every open reads afresh)."""

    direct_io = True
    keep_cache = False

    def __init__(self, file: VirtualFile, snapshot: bytes) -> None:
        super().__init__(file)
        self.snapshot = snapshot

    async def read(self, offset: int, size: int) -> bytes:
        return self.snapshot[offset : offset + size]


class OpenBacking:
    """An open file of the backing directory, read and written through its descriptor.
    Not cached by the kernel: the file may change outside the mount."""

    file = None
    direct_io = False
    keep_cache = False

    def __init__(self, backing: Passthrough, inode: int, fd: int) -> None:
        self.backing = backing
        self.inode = inode
        self.fd = fd

    def info(self, fh: int) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=fh, direct_io=self.direct_io, keep_cache=self.keep_cache)

    async def read(self, offset: int, size: int) -> bytes:
        return Passthrough.read(self.fd, offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        return Passthrough.write(self.fd, offset, data)

    def fsync(self, datasync: bool) -> None:
        Passthrough.fsync(self.fd, datasync)

    def close(self) -> None:
        self.backing.release(self.inode, self.fd)


OpenFile = OpenVirtual | OpenBacking
