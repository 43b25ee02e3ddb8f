"""pyfuse3 request handlers: one flat directory of virtual database files.

The mount directory holds, for each configured database name `N`: `N`
itself (always there, rendered from PostgreSQL), and when SQLite creates them
`N-journal`, `N-wal` and `N-shm` (bytes kept in memory by the tracker: they
are per host and transient). `.pgfs-status` is a read-only JSON snapshot of
the mount. Without a backing directory any other name is refused with EPERM
and a log line (a file an application expects to keep there would be silently
lost otherwise); with `--backing-dir` every other name passes through to that
directory (pgfs/fuse/passthrough.py).

Kernel caching, chosen deliberately (DESIGN "Tricky cases"):

- every change of size or content of these files goes through this mount's
  kernel (SQLite writes, ftruncate, create, unlink), and pgfs never changes a
  file's content behind the kernel's back (a rendered page is logically equal
  to what SQLite wrote), so attributes and entries are cached for
  `attr_timeout` seconds, negative lookups included, and files are opened
  with `keep_cache` — a getattr round trip per read transaction would make
  reads many times slower;
- mtimes do not move on writes: with libfuse's default auto_inval_data, a
  changed mtime would make the kernel drop the file's page cache, and for
  the mmap-ed `-shm` that means unmapping shared memory under SQLite;
- no `direct_io` except on `.pgfs-status` (`-shm` must stay mmap-able);
- FUSE's writeback cache stays off: with it a write returns before pgfs has
  seen it, and SQLite could report a commit PostgreSQL does not have;
- kernel caches are never invalidated from a handler (that can deadlock).

POSIX locks are left to the kernel: pyfuse3 has no lock handlers, so the
kernel arbitrates them locally (one host).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import pyfuse3

from pgfs.fuse.passthrough import Passthrough
from pgfs.tracker.database_file import DatabaseFile, Role, SideFile, TrackerError

log = logging.getLogger("pgfs.fuse")

STATUS_NAME = ".pgfs-status"
STATUS_INODE = 2
FIRST_DB_INODE = 3
FIRST_SIDE_INODE = 1000

T = TypeVar("T")


class Kind(Enum):
    DIR = "dir"
    DB = "db"
    SIDE = "side"
    STATUS = "status"


@dataclass
class Node:
    inode: int
    name: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    dbfile: DatabaseFile | None = None
    side: SideFile | None = None
    lookups: int = 0
    opens: int = 0
    linked: bool = True
    mtime_ns: int = field(default_factory=time.time_ns)
    ctime_ns: int = 0
    atime_ns: int = 0

    def __post_init__(self) -> None:
        self.ctime_ns = self.ctime_ns or self.mtime_ns
        self.atime_ns = self.atime_ns or self.mtime_ns


@dataclass
class Handle:
    """An open file: a virtual node, or a backing file (`fd`, `inode`)."""

    node: Node | None
    snapshot: bytes | None = None  # .pgfs-status content at open
    fd: int | None = None
    inode: int = 0


@dataclass
class DirHandle:
    inode: int
    names: list[str] = field(default_factory=list)  # backing names, snapshot at opendir


def _guard(handler: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn tracker errors into their errno and anything unexpected into EIO (logged)."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except TrackerError as exc:
            raise pyfuse3.FUSEError(exc.errno) from exc
        except Exception as exc:
            log.exception("%s failed unexpectedly", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from exc

    return wrapper


class PgfsOperations(pyfuse3.Operations):
    """The request handlers. All run on the trio loop; PostgreSQL work is in worker threads."""

    enable_writeback_cache = False
    supports_dot_lookup = True

    def __init__(
        self,
        databases: Mapping[str, DatabaseFile],
        *,
        uid: int | None = None,
        gid: int | None = None,
        mode: int = 0o644,
        attr_timeout: float = 30.0,
        status: Callable[[], dict[str, Any]] | None = None,
        backing_dir: str | os.PathLike[str] | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.attr_timeout = attr_timeout
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.mode = mode
        self._status = status or (lambda: {})
        self.databases = dict(databases)
        self._next_inode = FIRST_SIDE_INODE
        self.backing = (
            Passthrough(os.fspath(backing_dir), self._allocate, read_only=read_only)
            if backing_dir is not None
            else None
        )
        self.root = Node(pyfuse3.ROOT_INODE, "", Kind.DIR, stat.S_IFDIR | 0o755, self.uid, self.gid)
        self.nodes: dict[int, Node] = {self.root.inode: self.root}
        self.entries: dict[str, Node] = {}
        status_node = Node(STATUS_INODE, STATUS_NAME, Kind.STATUS, stat.S_IFREG | 0o444, 0, 0)
        self._add(status_node)
        for number, (name, dbfile) in enumerate(self.databases.items()):
            node = Node(FIRST_DB_INODE + number, name, Kind.DB, stat.S_IFREG | mode, 0, 0)
            node.uid, node.gid, node.dbfile = self.uid, self.gid, dbfile
            self._add(node)
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, DirHandle] = {}
        self._next_handle = 1
        self.reads = 0
        self.writes = 0
        self.bytes_read = 0
        self.bytes_written = 0

    # --- bookkeeping ----------------------------------------------------------------

    def _allocate(self) -> int:
        inode = self._next_inode
        self._next_inode += 1
        return inode

    def _add(self, node: Node) -> None:
        self.nodes[node.inode] = node
        self.entries[node.name] = node

    def _side_target(self, name: str) -> tuple[DatabaseFile, Role] | None:
        for dbname, dbfile in self.databases.items():
            if name.startswith(dbname):
                suffix = name[len(dbname) :]
                for role in (Role.JOURNAL, Role.WAL, Role.SHM):
                    if suffix == role.value:
                        return dbfile, role
        return None

    def _is_virtual(self, parent: int, name: str) -> bool:
        """Names pgfs serves itself (existing or not): never passed through."""
        return parent == pyfuse3.ROOT_INODE and (
            name in self.entries or self._side_target(name) is not None
        )

    def _node(self, inode: int) -> Node:
        node = self.nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _backing(self, what: str, name: str) -> Passthrough:
        if self.backing is None:
            raise self._refuse(what, name)
        return self.backing

    def _maybe_free(self, node: Node) -> None:
        if not node.linked and node.lookups <= 0 and node.opens <= 0:
            self.nodes.pop(node.inode, None)

    def _size(self, node: Node) -> int:
        if node.kind is Kind.DB:
            assert node.dbfile is not None
            return node.dbfile.size
        if node.kind is Kind.SIDE:
            assert node.side is not None
            return len(node.side.data)
        if node.kind is Kind.STATUS:
            return len(self.status_bytes())
        return 0

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = node.inode
        entry.generation = 0
        timeout = 0 if node.kind is Kind.STATUS else self.attr_timeout
        if node.kind is Kind.DIR and self.backing is not None:
            # The root mirrors the backing directory's owner and mode (who may create
            # files there), and its mtime moves with it.
            info = self.backing.root_stat()
            node.mode = stat.S_IFDIR | stat.S_IMODE(info.st_mode)
            node.uid, node.gid = info.st_uid, info.st_gid
            node.mtime_ns, node.ctime_ns = info.st_mtime_ns, info.st_ctime_ns
            timeout = self.backing.attr_timeout
        entry.entry_timeout = timeout
        entry.attr_timeout = timeout
        entry.st_mode = node.mode
        entry.st_nlink = (2 if node.kind is Kind.DIR else 1) if node.linked else 0
        entry.st_uid = node.uid
        entry.st_gid = node.gid
        entry.st_rdev = 0
        size = self._size(node)
        entry.st_size = size
        entry.st_blksize = 4096
        entry.st_blocks = (size + 511) // 512
        entry.st_atime_ns = node.atime_ns
        entry.st_mtime_ns = node.mtime_ns
        entry.st_ctime_ns = node.ctime_ns
        return entry

    def _negative(self) -> pyfuse3.EntryAttributes:
        """A cached 'no such file' (st_ino 0): creations go through this kernel anyway."""
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = 0
        entry.entry_timeout = self.attr_timeout
        return entry

    def status_bytes(self) -> bytes:
        document = dict(self._status())
        document["databases"] = {name: db.status() for name, db in self.databases.items()}
        document["backing_dir"] = self.backing.root if self.backing is not None else None
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    def _refuse(self, what: str, name: str, code: int = errno.EPERM) -> pyfuse3.FUSEError:
        names = ", ".join(self.databases)
        why = (
            "the names of the database files %s and their -journal, -wal and -shm files "
            "belong to pgfs"
            if self.backing is not None
            else "this mount only holds the database files %s and their -journal, -wal "
            "and -shm files (no --backing-dir)"
        )
        log.warning("refused %s %r (%s): " + why, what, name, os.strerror(code), names)
        return pyfuse3.FUSEError(code)

    # --- lookups and attributes -----------------------------------------------------

    @_guard
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        if parent_inode == pyfuse3.ROOT_INODE:
            if text in (".", ".."):
                return self._attrs(self.root)
            node = self.entries.get(text)
            if node is not None:
                node.lookups += 1
                return self._attrs(node)
            if self.backing is None or self._is_virtual(parent_inode, text):
                return self._negative()
        if self.backing is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.backing.lookup(parent_inode, name)

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            node = self.nodes.get(inode)
            if node is not None:
                if node.kind is not Kind.DIR:
                    node.lookups -= count
                    self._maybe_free(node)
            elif self.backing is not None:
                self.backing.forget(inode, count)

    @_guard
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if self.backing is not None and self.backing.owns(inode):
            return self.backing.getattr(inode)
        return self._attrs(self._node(inode))

    @_guard
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if self.backing is not None and self.backing.owns(inode):
            fd = self._handles[fh].fd if fh is not None and fh in self._handles else None
            return self.backing.setattr(inode, attr, fields, fd)
        node = self._node(inode)
        if fields.update_size:
            if node.kind is Kind.DB:
                assert node.dbfile is not None
                await node.dbfile.truncate(attr.st_size)
            elif node.kind is Kind.SIDE:
                assert node.dbfile is not None and node.side is not None
                await node.dbfile.truncate_side(node.side, attr.st_size)
            else:
                raise pyfuse3.FUSEError(errno.EPERM if node.kind is Kind.STATUS else errno.EISDIR)
        if node.kind is Kind.DIR and self.backing is not None:
            self.backing.apply_attributes(self.backing.root, attr, fields)
            return self._attrs(node)
        now = time.time_ns()
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        node.ctime_ns = now
        return self._attrs(node)

    @_guard
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        if self.backing is None or not self.backing.owns(inode):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return self.backing.readlink(inode)

    # --- directories ----------------------------------------------------------------

    @_guard
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if inode != pyfuse3.ROOT_INODE and (self.backing is None or not self.backing.owns(inode)):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        handle = DirHandle(inode)
        if self.backing is not None:
            names = self.backing.listdir(inode)
            handle.names = [n for n in names if not self._is_virtual(inode, n)]
        number = self._next_handle
        self._next_handle += 1
        self._dirs[number] = handle
        return number

    @_guard
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._dirs.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        # Entry ids: 1..n for the virtual files (root only), then n+1.. for backing names.
        virtual = (
            sorted(self.entries.values(), key=lambda n: n.inode)
            if handle.inode == pyfuse3.ROOT_INODE
            else []
        )
        for position, node in enumerate(virtual, start=1):
            if position <= start_id:
                continue
            if not pyfuse3.readdir_reply(
                token, os.fsencode(node.name), self._attrs(node), position
            ):
                return
            node.lookups += 1
        if self.backing is None:
            return
        for position, name in enumerate(handle.names, start=len(virtual) + 1):
            if position <= start_id:
                continue
            entry = self.backing.dir_entry(handle.inode, name)
            if entry is None:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(name), entry, position):
                self.backing.forget(entry.st_ino, 0)
                return
            self.backing.counted(entry.st_ino)

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        """SQLite fsyncs the directory after creating or deleting a journal: nothing to do."""
        return None

    @_guard
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        if self.backing is not None:
            return self.backing.statfs()
        data = pyfuse3.StatvfsData()
        used = sum(self._size(n) for n in self.nodes.values()) // 4096 + 1
        data.f_bsize = 4096
        data.f_frsize = 4096
        data.f_blocks = used + (1 << 24)
        data.f_bfree = 1 << 24
        data.f_bavail = 1 << 24
        data.f_files = len(self.nodes) + 1000
        data.f_ffree = 1000
        data.f_favail = 1000
        data.f_namemax = 255
        return data

    # --- extended attributes --------------------------------------------------------
    # Passed through for backing names and the root (the backing directory itself).
    # The virtual files have none and take none. Never ENOSYS: the kernel would then
    # turn off extended attributes for the whole mount.

    def _xattr_backing(self, inode: int) -> Passthrough | None:
        if self.backing is not None and (inode == pyfuse3.ROOT_INODE or self.backing.owns(inode)):
            return self.backing
        self._node(inode)  # ENOENT for an unknown inode
        return None

    @_guard
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        backing = self._xattr_backing(inode)
        if backing is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return backing.getxattr(inode, name)

    @_guard
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        backing = self._xattr_backing(inode)
        return [] if backing is None else backing.listxattr(inode)

    @_guard
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        backing = self._xattr_backing(inode)
        if backing is None:
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        backing.setxattr(inode, name, value)

    @_guard
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        backing = self._xattr_backing(inode)
        if backing is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        backing.removexattr(inode, name)

    # --- creating and removing ------------------------------------------------------

    @_guard
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        text = os.fsdecode(name)
        if not self._is_virtual(parent_inode, text):
            fd, entry = self._backing("create", text).create(parent_inode, name, mode, flags, ctx)
            return self._open_backing(entry.st_ino, fd), entry
        node = self.entries.get(text)
        if node is not None:
            if flags & os.O_EXCL:
                raise pyfuse3.FUSEError(errno.EEXIST)
        else:
            target = self._side_target(text)
            assert target is not None
            dbfile, role = target
            side = dbfile.create_side(role)
            node = Node(
                self._allocate(),
                text,
                Kind.SIDE,
                stat.S_IFREG | (stat.S_IMODE(mode) & ~ctx.umask),
                ctx.uid,
                ctx.gid,
                dbfile=dbfile,
                side=side,
            )
            self._add(node)
            log.debug("created %s (inode %d)", text, node.inode)
        node.lookups += 1
        return self._open_node(node), self._attrs(node)

    @_guard
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        if self._is_virtual(parent_inode, text):
            raise self._refuse("mknod", text)
        return self._backing("mknod", text).mknod(parent_inode, name, mode, rdev, ctx)

    @_guard
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        if self._is_virtual(parent_inode, text):
            raise self._refuse("mkdir", text)
        return self._backing("mkdir", text).mkdir(parent_inode, name, mode, ctx)

    @_guard
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        if self._is_virtual(parent_inode, text):
            raise self._refuse("symlink", text)
        return self._backing("symlink", text).symlink(parent_inode, name, target, ctx)

    @_guard
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(new_name)
        backing = self._backing("link", text)
        if self._is_virtual(new_parent_inode, text) or not backing.owns(inode):
            raise self._refuse("link", text)
        return backing.link(inode, new_parent_inode, new_name)

    @_guard
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        old, new = os.fsdecode(name_old), os.fsdecode(name_new)
        if self._is_virtual(parent_inode_old, old) or self._is_virtual(parent_inode_new, new):
            raise self._refuse("rename", f"{old} -> {new}")
        self._backing("rename", f"{old} -> {new}").rename(
            parent_inode_old, name_old, parent_inode_new, name_new, flags
        )

    @_guard
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        text = os.fsdecode(name)
        if self.backing is None or self._is_virtual(parent_inode, text):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        self.backing.rmdir(parent_inode, name)

    @_guard
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        text = os.fsdecode(name)
        if not self._is_virtual(parent_inode, text):
            if self.backing is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            self.backing.unlink(parent_inode, name)
            return
        node = self.entries.get(text)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if node.kind is not Kind.SIDE:
            raise self._refuse("unlink", text)
        assert node.dbfile is not None and node.side is not None
        # Deleting an active rollback journal is the commit point of journal_mode=DELETE.
        await node.dbfile.unlink_side(node.side.role)
        del self.entries[text]
        node.linked = False
        node.ctime_ns = time.time_ns()
        self._maybe_free(node)

    # --- files ----------------------------------------------------------------------

    def _new_handle(self, handle: Handle) -> int:
        number = self._next_handle
        self._next_handle += 1
        self._handles[number] = handle
        return number

    def _open_node(self, node: Node) -> pyfuse3.FileInfo:
        handle = Handle(node)
        if node.kind is Kind.STATUS:
            handle.snapshot = self.status_bytes()
        number = self._new_handle(handle)
        node.opens += 1
        if node.kind is Kind.STATUS:
            return pyfuse3.FileInfo(fh=number, direct_io=True, keep_cache=False)
        return pyfuse3.FileInfo(fh=number, direct_io=False, keep_cache=True)

    def _open_backing(self, inode: int, fd: int) -> pyfuse3.FileInfo:
        # Without keep_cache: the backing file may change outside the mount.
        number = self._new_handle(Handle(None, fd=fd, inode=inode))
        return pyfuse3.FileInfo(fh=number, direct_io=False, keep_cache=False)

    def _handle(self, fh: int) -> Handle:
        handle = self._handles.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle

    @_guard
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if self.backing is not None and self.backing.owns(inode):
            return self._open_backing(inode, self.backing.open(inode, flags))
        node = self._node(inode)
        if node.kind is Kind.DIR:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.kind is Kind.STATUS and flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EACCES)
        return self._open_node(node)

    @_guard
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handle(fh)
        node = handle.node
        if node is None:
            assert handle.fd is not None
            return Passthrough.read(handle.fd, off, size)
        self.reads += 1
        if node.kind is Kind.DB:
            assert node.dbfile is not None
            data = await node.dbfile.read(off, size)
        elif node.kind is Kind.SIDE:
            assert node.dbfile is not None and node.side is not None
            data = node.dbfile.read_side(node.side, off, size)
        else:
            data = (handle.snapshot or b"")[off : off + size]
        self.bytes_read += len(data)
        return data

    @_guard
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        node = handle.node
        if node is None:
            assert handle.fd is not None
            return Passthrough.write(handle.fd, off, buf)
        if node.kind is Kind.DB:
            assert node.dbfile is not None
            await node.dbfile.write(off, buf)
        elif node.kind is Kind.SIDE:
            assert node.dbfile is not None and node.side is not None
            await node.dbfile.write_side(node.side, off, buf)
        else:
            raise pyfuse3.FUSEError(errno.EBADF)
        self.writes += 1
        self.bytes_written += len(buf)
        return len(buf)

    async def flush(self, fh: int) -> None:
        return None

    @_guard
    async def fsync(self, fh: int, datasync: bool) -> None:
        """Virtual files: committed data is in PostgreSQL already, side files are memory by
        design. Backing files: fsync."""
        handle = self._handle(fh)
        if handle.fd is not None:
            Passthrough.fsync(handle.fd, datasync)

    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.node is not None:
            handle.node.opens -= 1
            self._maybe_free(handle.node)
        elif handle.fd is not None and self.backing is not None:
            try:
                self.backing.release(handle.inode, handle.fd)
            except pyfuse3.FUSEError:
                log.warning("closing a backing file failed", exc_info=True)
