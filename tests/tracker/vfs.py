"""A real SQLite (apsw) whose file operations go straight to a `DatabaseFile`.

The tracker's state machines are driven by the bytes, truncations and
deletions SQLite itself issues, without FUSE in between: an apsw VFS whose
files call the tracker on a trio loop running in a background thread (the
way pyfuse3 would). There is no shared memory, so WAL needs
`PRAGMA locking_mode=EXCLUSIVE` (the wal-index then lives in heap memory).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import apsw
import trio

from pgfs.tracker.database_file import DatabaseFile, Role, TrackerError

T = TypeVar("T")
_names = itertools.count(1)


class TrioThread:
    """A trio loop in a daemon thread; `run(async_fn, *args)` calls into it."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._ready.set()
        await self._stop.wait()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        if self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


class TrackedFile(apsw.VFSFile):
    """One open file: the database file or a side file of `dbfile`."""

    def __init__(self, vfs: TrackerVFS, role: Role) -> None:  # no base file on purpose
        self.vfs = vfs
        self.role = role
        self.side = None if role is Role.DB else vfs.dbfile.side(role)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return self.vfs.loop.run(fn, *args)
        except TrackerError as exc:
            raise apsw.IOError(str(exc)) from exc

    def xRead(self, amount: int, offset: int) -> bytes:
        if self.side is None:
            return self._call(self.vfs.dbfile.read, offset, amount)
        return bytes(self.side.data[offset : offset + amount])

    def xWrite(self, data: bytes, offset: int) -> None:
        if self.side is None:
            self._call(self.vfs.dbfile.write, offset, bytes(data))
        else:
            self._call(self.vfs.dbfile.write_side, self.side, offset, bytes(data))

    def xTruncate(self, size: int) -> None:
        if self.side is None:
            self._call(self.vfs.dbfile.truncate, size)
        else:
            self._call(self.vfs.dbfile.truncate_side, self.side, size)

    def xFileSize(self) -> int:
        return self.vfs.dbfile.size if self.side is None else len(self.side.data)

    def xSync(self, flags: int) -> None:
        return None

    def xLock(self, level: int) -> None:
        return None

    def xUnlock(self, level: int) -> None:
        return None

    def xCheckReservedLock(self) -> bool:
        return False

    def xFileControl(self, op: int, ptr: int) -> bool:
        return False

    def xSectorSize(self) -> int:
        return 4096

    def xDeviceCharacteristics(self) -> int:
        return 0

    def xClose(self) -> None:
        return None


class TrackerVFS(apsw.VFS):
    """Files `/NAME`, `/NAME-journal`, `/NAME-wal` of one DatabaseFile."""

    def __init__(self, dbfile: DatabaseFile, loop: TrioThread) -> None:
        self.dbfile = dbfile
        self.loop = loop
        self.vfs_name = f"pgfs-tracker-{next(_names)}"
        super().__init__(self.vfs_name, "")

    def _role(self, name: str) -> Role:
        base = "/" + self.dbfile.name
        for role in (Role.JOURNAL, Role.WAL, Role.SHM):
            if name == base + role.value:
                return role
        if name == base:
            return Role.DB
        raise apsw.CantOpenError(f"unexpected file {name}")

    def xOpen(self, name: Any, flags: list[int]) -> TrackedFile:
        text = name if isinstance(name, str) else name.filename()
        role = self._role(text)
        if role is not Role.DB and self.dbfile.side(role) is None:
            self.dbfile.create_side(role)
        return TrackedFile(self, role)

    def xDelete(self, name: str, syncdir: bool) -> None:
        try:
            self.loop.run(self.dbfile.unlink_side, self._role(name))
        except TrackerError as exc:
            raise apsw.IOError(str(exc)) from exc

    def xAccess(self, name: str, flags: int) -> bool:
        role = self._role(name)
        return role is Role.DB or self.dbfile.side(role) is not None

    def xFullPathname(self, name: str) -> str:
        return "/" + name.lstrip("/")

    def connect(self) -> apsw.Connection:
        return apsw.Connection(self.dbfile.name, vfs=self.vfs_name)

    def connect_in_mode(self, mode: str, pragmas: list[str]) -> apsw.Connection:
        """A connection in journal mode `mode` (after `pragmas`), with a small page cache
        (so transactions spill) and the table `t(id INTEGER PRIMARY KEY, v TEXT)`."""
        conn = self.connect()
        for pragma in pragmas:
            conn.execute(pragma)
        assert conn.execute(f"PRAGMA journal_mode={mode}").fetchone()[0] == mode
        conn.execute("PRAGMA cache_size=5")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        return conn
