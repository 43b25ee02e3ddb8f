"""`--backing-dir`: every name that is not a database file passes through to a directory.

Jellyfin keeps more than `jellyfin.db` in its data folder (playlists,
collections, scheduled task state, its own backups of the database...). With
a backing directory the mount shows the virtual database files *and* that
directory's contents: names of the virtual files (`NAME`, `NAME-journal`,
`NAME-wal`, `NAME-shm`, `.pgfs-status`) are pgfs', everything else is an
ordinary file, directory or symlink of the backing directory, read and
written with plain system calls. A `jellyfin.db` left in the backing
directory is hidden by the virtual one.

Inodes: one per underlying (st_dev, st_ino), so hard links share an inode;
the path kept for a node follows renames. Files are opened with the flags
the application asked for and served through their own file descriptors.
Attributes of passthrough files are cached for at most `attr_timeout`
seconds (1 s by default: the backing directory may also change outside
the mount). Local-disk system calls are made on the trio loop: they are
short, and keeping them there keeps the ordering of requests simple.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyfuse3

ROOT_PARENT = pyfuse3.ROOT_INODE


@dataclass
class BackingNode:
    inode: int
    path: str
    key: tuple[int, int]
    lookups: int = 0
    fds: set[int] = field(default_factory=set)


@contextmanager
def os_errors() -> Iterator[None]:
    """OSError from the backing directory -> the same errno for the caller."""
    try:
        yield
    except OSError as exc:
        raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc


def entry_from_stat(inode: int, info: os.stat_result, timeout: float) -> pyfuse3.EntryAttributes:
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = inode
    entry.generation = 0
    entry.entry_timeout = timeout
    entry.attr_timeout = timeout
    entry.st_mode = info.st_mode
    entry.st_nlink = info.st_nlink
    entry.st_uid = info.st_uid
    entry.st_gid = info.st_gid
    entry.st_rdev = info.st_rdev
    entry.st_size = info.st_size
    entry.st_blksize = info.st_blksize
    entry.st_blocks = info.st_blocks
    entry.st_atime_ns = info.st_atime_ns
    entry.st_mtime_ns = info.st_mtime_ns
    entry.st_ctime_ns = info.st_ctime_ns
    return entry


class Passthrough:
    """The backing-directory half of the mount (see module docstring)."""

    def __init__(
        self,
        root: str,
        allocate: Callable[[], int],
        *,
        attr_timeout: float = 1.0,
        read_only: bool = False,
    ) -> None:
        self.root = os.path.abspath(root)
        self.read_only = read_only
        if not os.path.isdir(self.root):
            raise NotADirectoryError(errno.ENOTDIR, "backing directory is not a directory", root)
        self.allocate = allocate
        self.attr_timeout = attr_timeout
        self.nodes: dict[int, BackingNode] = {}
        self.by_key: dict[tuple[int, int], int] = {}
        self.is_root_owner = os.geteuid() == 0

    # --- inodes ---------------------------------------------------------------------

    def owns(self, inode: int) -> bool:
        return inode in self.nodes

    def _refuse_if_read_only(self) -> None:
        """`--read-only` covers the passthrough names too: every change fails with EROFS."""
        if self.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)

    def node(self, inode: int) -> BackingNode:
        found = self.nodes.get(inode)
        if found is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return found

    def dir_path(self, parent: int) -> str:
        if parent == ROOT_PARENT:
            return self.root
        node = self.node(parent)
        return node.path

    def child_path(self, parent: int, name: bytes) -> str:
        return os.path.join(self.dir_path(parent), os.fsdecode(name))

    def _remember(self, path: str, info: os.stat_result) -> BackingNode:
        key = (info.st_dev, info.st_ino)
        inode = self.by_key.get(key)
        if inode is None:
            inode = self.allocate()
            node = BackingNode(inode, path, key)
            self.nodes[inode] = node
            self.by_key[key] = inode
        else:
            node = self.nodes[inode]
            node.path = path
        return node

    def _entry(self, path: str) -> pyfuse3.EntryAttributes:
        """Lookup result for `path`: counts one lookup."""
        with os_errors():
            info = os.lstat(path)
        node = self._remember(path, info)
        node.lookups += 1
        return entry_from_stat(node.inode, info, self.attr_timeout)

    def forget(self, inode: int, count: int) -> None:
        node = self.nodes.get(inode)
        if node is None:
            return
        node.lookups -= count
        if node.lookups <= 0 and not node.fds:
            del self.nodes[inode]
            if self.by_key.get(node.key) == inode:
                del self.by_key[node.key]

    def _stat(self, node: BackingNode) -> os.stat_result:
        try:
            return os.lstat(node.path)
        except OSError:
            for fd in node.fds:  # unlinked while open
                return os.fstat(fd)
            raise

    def _own(self, path: str, ctx: pyfuse3.RequestContext) -> None:
        if self.is_root_owner:
            os.chown(path, ctx.uid, ctx.gid, follow_symlinks=False)

    # --- requests -------------------------------------------------------------------

    def lookup(self, parent: int, name: bytes) -> pyfuse3.EntryAttributes:
        path = self.child_path(parent, name)
        if not os.path.lexists(path):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(path)

    def getattr(self, inode: int) -> pyfuse3.EntryAttributes:
        node = self.node(inode)
        with os_errors():
            return entry_from_stat(inode, self._stat(node), self.attr_timeout)

    def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
    ) -> pyfuse3.EntryAttributes:
        node = self.node(inode)
        self.apply_attributes(fh if fh is not None else node.path, attr, fields)
        return self.getattr(inode)

    def apply_attributes(
        self, target: int | str, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields
    ) -> None:
        """truncate/chmod/chown/utime on a path or an open descriptor."""
        self._refuse_if_read_only()
        with os_errors():
            if fields.update_size:
                os.truncate(target, attr.st_size)
            if fields.update_mode:
                os.chmod(target, stat.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                uid = attr.st_uid if fields.update_uid else -1
                gid = attr.st_gid if fields.update_gid else -1
                if isinstance(target, int):
                    os.fchown(target, uid, gid)
                else:
                    os.chown(target, uid, gid, follow_symlinks=False)
            if fields.update_atime or fields.update_mtime:
                current = os.fstat(target) if isinstance(target, int) else os.lstat(target)
                times = (
                    attr.st_atime_ns if fields.update_atime else current.st_atime_ns,
                    attr.st_mtime_ns if fields.update_mtime else current.st_mtime_ns,
                )
                if isinstance(target, int):
                    os.utime(target, ns=times)
                else:
                    os.utime(target, ns=times, follow_symlinks=False)

    def readlink(self, inode: int) -> bytes:
        with os_errors():
            return os.fsencode(os.readlink(self.node(inode).path))

    def mknod(
        self, parent: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._refuse_if_read_only()
        path = self.child_path(parent, name)
        with os_errors():
            os.mknod(path, mode & ~ctx.umask, rdev)
            self._own(path, ctx)
        return self._entry(path)

    def mkdir(
        self, parent: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._refuse_if_read_only()
        path = self.child_path(parent, name)
        with os_errors():
            os.mkdir(path, mode & ~ctx.umask)
            self._own(path, ctx)
        return self._entry(path)

    def symlink(
        self, parent: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._refuse_if_read_only()
        path = self.child_path(parent, name)
        with os_errors():
            os.symlink(os.fsdecode(target), path)
            self._own(path, ctx)
        return self._entry(path)

    def link(self, inode: int, new_parent: int, new_name: bytes) -> pyfuse3.EntryAttributes:
        self._refuse_if_read_only()
        path = self.child_path(new_parent, new_name)
        with os_errors():
            os.link(self.node(inode).path, path, follow_symlinks=False)
        return self._entry(path)

    def unlink(self, parent: int, name: bytes) -> None:
        self._refuse_if_read_only()
        with os_errors():
            os.unlink(self.child_path(parent, name))

    def rmdir(self, parent: int, name: bytes) -> None:
        self._refuse_if_read_only()
        with os_errors():
            os.rmdir(self.child_path(parent, name))

    def rename(self, old_parent: int, old: bytes, new_parent: int, new: bytes, flags: int) -> None:
        self._refuse_if_read_only()
        source = self.child_path(old_parent, old)
        target = self.child_path(new_parent, new)
        with os_errors():
            if flags & pyfuse3.RENAME_NOREPLACE and os.path.lexists(target):
                raise OSError(errno.EEXIST, "exists")
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise OSError(errno.EINVAL, "RENAME_EXCHANGE is not supported")
            os.rename(source, target)
        prefix = source + os.sep
        for node in self.nodes.values():
            if node.path == source:
                node.path = target
            elif node.path.startswith(prefix):
                node.path = target + node.path[len(source) :]

    def open(self, inode: int, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self._refuse_if_read_only()
        node = self.node(inode)
        with os_errors():
            fd = os.open(node.path, flags & ~(os.O_CREAT | os.O_APPEND))
        node.fds.add(fd)
        return fd

    def create(
        self, parent: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[int, pyfuse3.EntryAttributes]:
        self._refuse_if_read_only()
        path = self.child_path(parent, name)
        with os_errors():
            fd = os.open(path, (flags & ~os.O_APPEND) | os.O_CREAT, mode & ~ctx.umask)
            self._own(path, ctx)
        entry = self._entry(path)
        self.nodes[entry.st_ino].fds.add(fd)
        return fd, entry

    def release(self, inode: int, fd: int) -> None:
        node = self.nodes.get(inode)
        if node is not None:
            node.fds.discard(fd)
        with os_errors():
            os.close(fd)
        if node is not None and node.lookups <= 0 and not node.fds:
            self.forget(inode, 0)

    @staticmethod
    def read(fd: int, offset: int, size: int) -> bytes:
        with os_errors():
            return os.pread(fd, size, offset)

    @staticmethod
    def write(fd: int, offset: int, data: bytes) -> int:
        with os_errors():
            return os.pwrite(fd, data, offset)

    @staticmethod
    def fsync(fd: int, datasync: bool) -> None:
        with os_errors():
            if datasync:
                os.fdatasync(fd)
            else:
                os.fsync(fd)

    def listdir(self, inode: int) -> list[str]:
        with os_errors():
            return sorted(os.listdir(self.dir_path(inode)))

    def dir_entry(self, parent: int, name: str) -> pyfuse3.EntryAttributes | None:
        """readdir's attributes for one name (None when it vanished); no lookup counted."""
        path = os.path.join(self.dir_path(parent), name)
        try:
            info = os.lstat(path)
        except OSError:
            return None
        node = self._remember(path, info)
        return entry_from_stat(node.inode, info, self.attr_timeout)

    def counted(self, inode: int) -> None:
        """readdir handed the entry to the kernel: one more lookup."""
        node = self.nodes.get(inode)
        if node is not None:
            node.lookups += 1

    def statfs(self) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        with os_errors():
            info = os.statvfs(self.root)
        for name in (
            "f_bsize",
            "f_frsize",
            "f_blocks",
            "f_bfree",
            "f_bavail",
            "f_files",
            "f_ffree",
            "f_favail",
            "f_namemax",
        ):
            setattr(data, name, getattr(info, name))
        return data

    def root_stat(self) -> os.stat_result:
        with os_errors():
            return os.stat(self.root)

    # --- extended attributes: whatever the backing filesystem supports ------------------

    def _xattr_path(self, inode: int) -> str:
        return self.root if inode == ROOT_PARENT else self.node(inode).path

    def getxattr(self, inode: int, name: bytes) -> bytes:
        with os_errors():
            return os.getxattr(self._xattr_path(inode), name, follow_symlinks=False)

    def setxattr(self, inode: int, name: bytes, value: bytes) -> None:
        self._refuse_if_read_only()
        with os_errors():
            os.setxattr(self._xattr_path(inode), name, value, follow_symlinks=False)

    def listxattr(self, inode: int) -> list[bytes]:
        with os_errors():
            names = os.listxattr(self._xattr_path(inode), follow_symlinks=False)
        return [os.fsencode(n) for n in names]

    def removexattr(self, inode: int, name: bytes) -> None:
        self._refuse_if_read_only()
        with os_errors():
            os.removexattr(self._xattr_path(inode), name, follow_symlinks=False)
