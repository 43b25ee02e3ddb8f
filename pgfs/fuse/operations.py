"""pyfuse3 request handlers: one flat directory of virtual database files.

The mount directory holds, for each configured database name `N`: `N`
itself (always there, rendered from PostgreSQL), and when SQLite creates them
`N-journal`, `N-wal` and `N-shm` (bytes kept in memory by the tracker: they
are per host and transient). `.pgfs-status` is a read-only JSON snapshot of
the mount. Without a backing directory any other name is refused with EPERM
and a log line (a file an application expects to keep there would be silently
lost otherwise); with `--backing-dir` every other name passes through to that
directory (pgfs/fuse/passthrough.py).

`PgfsOperations` is a router: a request on a name or an inode goes either to
a virtual file (pgfs/fuse/files.py, one class per kind, each doing its own
read/write/truncate/unlink/attributes) or to the passthrough; a request on a
handle goes to the open file it names (a virtual file's or a backing file's).

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
- `direct_io` on `-wal` and `-journal` (SQLite only preads and pwrites them, and
  through the page cache each WAL frame would cost three write requests and three
  getxattr round trips: files.py `OpenLog`) and on `.pgfs-status`; not on the
  database file (its reads are cached) nor on `-shm` (it must stay mmap-able);
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyfuse3

from pgfs.fuse.files import (
    DatabaseNode,
    OpenBacking,
    OpenFile,
    RootDirectory,
    SideNode,
    StatusNode,
    VirtualFile,
)
from pgfs.fuse.passthrough import Passthrough
from pgfs.tracker import DatabaseFile, Role, TrackerError

log = logging.getLogger("pgfs.fuse")

STATUS_NAME = ".pgfs-status"
STATUS_INODE = 2
FIRST_DB_INODE = 3
FIRST_SIDE_INODE = 1000

T = TypeVar("T")


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
        self.root = RootDirectory(
            pyfuse3.ROOT_INODE, "", stat.S_IFDIR | 0o755, self.uid, self.gid, backing=self.backing
        )
        self.nodes: dict[int, VirtualFile] = {self.root.inode: self.root}
        self.entries: dict[str, VirtualFile] = {}
        self._add(
            StatusNode(
                STATUS_INODE, STATUS_NAME, stat.S_IFREG | 0o444, 0, 0, render=self.status_bytes
            )
        )
        for number, (name, dbfile) in enumerate(self.databases.items()):
            inode = FIRST_DB_INODE + number
            mode_bits = stat.S_IFREG | mode
            self._add(DatabaseNode(inode, name, mode_bits, self.uid, self.gid, dbfile=dbfile))
        self._handles: dict[int, OpenFile] = {}
        self._dirs: dict[int, DirHandle] = {}
        self._next_handle = 1
        self.reads = 0
        self.writes = 0
        self.bytes_read = 0
        self.bytes_written = 0

    # --- routing --------------------------------------------------------------------

    def _allocate(self) -> int:
        inode = self._next_inode
        self._next_inode += 1
        return inode

    def _add(self, node: VirtualFile) -> None:
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

    def _route(self, inode: int) -> VirtualFile | Passthrough:
        """The virtual file `inode` is, or the passthrough when it is a backing inode."""
        if self.backing is not None and self.backing.owns(inode):
            return self.backing
        node = self.nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _route_name(self, what: str, parent: int, name: str) -> Passthrough | None:
        """None for a name pgfs serves itself; else the passthrough (EPERM, logged, when
        the mount has no backing directory)."""
        if self._is_virtual(parent, name):
            return None
        return self._backing(what, name)

    def _backing(self, what: str, name: str) -> Passthrough:
        if self.backing is None:
            raise self._refuse(what, name)
        return self.backing

    def _release_node(self, node: VirtualFile) -> None:
        if node.unused:
            self.nodes.pop(node.inode, None)

    def _attrs(self, node: VirtualFile) -> pyfuse3.EntryAttributes:
        return node.attributes(self.attr_timeout)

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
                if node is not self.root:
                    node.lookups -= count
                    self._release_node(node)
            elif self.backing is not None:
                self.backing.forget(inode, count)

    @_guard
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        target = self._route(inode)
        if isinstance(target, Passthrough):
            return target.getattr(inode)
        return self._attrs(target)

    @_guard
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        target = self._route(inode)
        if isinstance(target, Passthrough):
            handle = self._handles.get(fh) if fh is not None else None
            return target.setattr(inode, attr, fields, handle.fd if handle else None)
        if fields.update_size:
            await target.truncate(attr.st_size)
        target.set_attributes(attr, fields)
        return self._attrs(target)

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
        used = sum(n.size() for n in self.nodes.values()) // 4096 + 1
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
    # The virtual files have none and take none. With a backing directory never ENOSYS:
    # the kernel would then turn off extended attributes for the whole mount. Without
    # one the mount has none at all, and getxattr answers ENOSYS so that the kernel
    # stops asking: it asks for security.capability before every cached write
    # (`file_remove_privs`), a round trip per page a checkpoint writes.

    def _xattr_backing(self, inode: int) -> Passthrough | None:
        if inode == pyfuse3.ROOT_INODE:
            return self.backing
        target = self._route(inode)
        return target if isinstance(target, Passthrough) else None

    @_guard
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if self.backing is None:
            raise pyfuse3.FUSEError(errno.ENOSYS)  # the kernel answers EOPNOTSUPP from now on
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
        backing = self._route_name("create", parent_inode, text)
        if backing is not None:
            fd, entry = backing.create(parent_inode, name, mode, flags, ctx)
            return self._open(OpenBacking(backing, entry.st_ino, fd)), entry
        node = self.entries.get(text)
        if node is not None:
            if flags & os.O_EXCL:
                raise pyfuse3.FUSEError(errno.EEXIST)
        else:
            node = self._create_side(text, stat.S_IMODE(mode) & ~ctx.umask, ctx)
        node.lookups += 1
        return self._open(node.open(flags)), self._attrs(node)

    def _create_side(self, name: str, mode: int, ctx: pyfuse3.RequestContext) -> SideNode:
        target = self._side_target(name)
        assert target is not None, "a virtual name that is no entry is a side file's"
        dbfile, role = target
        node = SideNode(
            self._allocate(),
            name,
            stat.S_IFREG | mode,
            ctx.uid,
            ctx.gid,
            dbfile=dbfile,
            side=dbfile.create_side(role),
        )
        self._add(node)
        log.debug("created %s (inode %d)", name, node.inode)
        return node

    @_guard
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._creator("mknod", parent_inode, name).mknod(parent_inode, name, mode, rdev, ctx)

    @_guard
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._creator("mkdir", parent_inode, name).mkdir(parent_inode, name, mode, ctx)

    @_guard
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        creator = self._creator("symlink", parent_inode, name)
        return creator.symlink(parent_inode, name, target, ctx)

    def _creator(self, what: str, parent: int, name: bytes) -> Passthrough:
        """The passthrough, for a new name that is not a virtual file's."""
        text = os.fsdecode(name)
        backing = self._route_name(what, parent, text)
        if backing is None:
            raise self._refuse(what, text)
        return backing

    @_guard
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        backing = self._creator("link", new_parent_inode, new_name)
        if not backing.owns(inode):
            raise self._refuse("link", os.fsdecode(new_name))
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
        if not await node.unlink():
            raise self._refuse("unlink", text)
        del self.entries[text]
        self._release_node(node)

    # --- files ----------------------------------------------------------------------

    def _open(self, handle: OpenFile) -> pyfuse3.FileInfo:
        number = self._next_handle
        self._next_handle += 1
        self._handles[number] = handle
        return handle.info(number)

    def _handle(self, fh: int) -> OpenFile:
        handle = self._handles.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle

    @_guard
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        target = self._route(inode)
        if isinstance(target, Passthrough):
            return self._open(OpenBacking(target, inode, target.open(inode, flags)))
        return self._open(target.open(flags))

    @_guard
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handle(fh)
        data = await handle.read(off, size)
        if handle.file is not None:
            self.reads += 1
            self.bytes_read += len(data)
        return data

    @_guard
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        written = await handle.write(off, buf)
        if handle.file is not None:
            self.writes += 1
            self.bytes_written += len(buf)
        return written

    async def flush(self, fh: int) -> None:
        return None

    @_guard
    async def fsync(self, fh: int, datasync: bool) -> None:
        self._handle(fh).fsync(datasync)

    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        try:
            handle.close()
        except pyfuse3.FUSEError:
            log.warning("closing a backing file failed", exc_info=True)
        if handle.file is not None:
            self._release_node(handle.file)
