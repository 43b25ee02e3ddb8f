"""Run a pgfs mount: pyfuse3 on trio until unmounted or told to stop.

`run_mount` mounts, serves requests until the mount goes away (`fusermount3
-u`, `pgfs unmount`) or SIGTERM/SIGINT arrives, then unmounts. On a signal
it stops taking new requests, lets the requests in flight finish — a commit
in flight completes in PostgreSQL and its system call gets its answer —
and unmounts (lazily, so a busy mount cannot keep the process alive).

pyfuse3 keeps one session per process, so one process serves one mount
(with any number of database names in it).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from pgfs.fuse.operations import PgfsOperations
from pgfs.fuse.options import MountOptions
from pgfs.fuse.warmup import warm_cache
from pgfs.tracker import Backend, DatabaseFile

log = logging.getLogger("pgfs.fuse")

LEASE_CHECK_TICKS = 3
"""Probe the lease connections every this many seconds."""


FUSE_DEVICE = Path("/dev/fuse")


def fuse_problem() -> str | None:
    """Why this process cannot mount, before anything else starts; None when it can.

    libfuse opens /dev/fuse itself and, without root, lets the setuid fusermount3
    do the mount: a user needs both (a stock Debian makes /dev/fuse 0666).
    """
    if not FUSE_DEVICE.exists():
        return f"{FUSE_DEVICE} is absent: load the fuse module (modprobe fuse)"
    if os.geteuid() == 0:
        return None
    me = pwd.getpwuid(os.geteuid()).pw_name
    if not os.access(FUSE_DEVICE, os.R_OK | os.W_OK):
        mode = stat.S_IMODE(FUSE_DEVICE.stat().st_mode)
        return (
            f"{me} cannot open {FUSE_DEVICE} (mode {mode:04o}): as root, chmod 0666 "
            f"{FUSE_DEVICE} (Debian's default), or run pgfs as root"
        )
    if shutil.which("fusermount3") is None:
        return f"fusermount3 is not installed, and {me} needs it to mount: apt-get install fuse3"
    return None


class MountSession:
    """A mount in progress; `stop()` may be called from any thread."""

    def __init__(
        self,
        options: MountOptions,
        databases: Mapping[str, Backend],
        extra_status: Mapping[str, Any] | None = None,
    ) -> None:
        self.options = options
        self.extra_status = dict(extra_status or {})
        self.files = {
            name: DatabaseFile(name, database, read_only=options.read_only)
            for name, database in databases.items()
        }
        self.started = time.time()
        self.operations = PgfsOperations(
            self.files,
            uid=options.uid,
            gid=options.gid,
            mode=options.mode,
            attr_timeout=options.attr_timeout,
            status=self._status,
            backing_dir=options.backing_dir,
            read_only=options.read_only,
        )
        self._token: trio.lowlevel.TrioToken | None = None
        self._stopping = False
        self.ready = threading.Event()

    def _status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "mountpoint": str(self.options.mountpoint),
            "started": self.started,
            "read_only": self.options.read_only,
            "stopping": self._stopping,
            **self.extra_status,
        }

    def stop(self) -> None:
        """Stop serving (from another thread) and unmount."""
        token = self._token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._terminate, trio_token=token)

    def _terminate(self) -> None:
        if not self._stopping:
            self._stopping = True
            log.info("stopping: finishing requests in flight, then unmounting")
            pyfuse3.terminate()

    async def _watch_signals(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            # Stays open until the mount is gone: a second signal must not fall back to
            # the default action (death, or KeyboardInterrupt) in the middle of a commit.
            async for signum in signals:
                log.info("%s received", signal.Signals(signum).name)
                in_flight = sum(f.commits_in_flight for f in self.files.values())
                if in_flight:
                    log.info("%d commit(s) in flight will complete first", in_flight)
                self._terminate()

    async def _housekeeping(self) -> None:
        """Every second: learn the outcome of a commit whose answer was lost (and undo it
        if it landed after SQLite was told it failed); every few seconds, probe the lease
        connections, so a dropped one is noticed before the next commit needs it."""
        ticks = 0
        while True:
            await trio.sleep(1.0)
            ticks += 1
            for dbfile in self.files.values():
                database = dbfile.database
                try:
                    await trio.to_thread.run_sync(database.resolve_pending)
                    if ticks % LEASE_CHECK_TICKS == 0:
                        await trio.to_thread.run_sync(database.check_lease)
                except Exception:  # the next call says what is wrong
                    log.debug("housekeeping of %s failed", dbfile.name, exc_info=True)

    async def _warm_caches(self) -> None:
        """Fill every database's local page cache in the background (`--warm-cache`)."""
        for name, dbfile in self.files.items():
            await warm_cache(name, dbfile.database)

    async def _main(self, handle_signals: bool, on_ready: Callable[[], None] | None) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            if handle_signals:
                await nursery.start(self._watch_signals)
            nursery.start_soon(self._housekeeping)
            if self.options.metrics_addr:
                from pgfs.fuse.metrics import MountMetrics, serve_metrics

                metrics = MountMetrics(self.files, self.operations)
                await nursery.start(serve_metrics, metrics, self.options.metrics_addr)
            self.ready.set()
            if on_ready is not None:
                on_ready()
            if self.options.warm_cache:
                nursery.start_soon(self._warm_caches)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    def run(
        self, *, handle_signals: bool = True, on_ready: Callable[[], None] | None = None
    ) -> None:
        mountpoint = str(self.options.mountpoint)
        pyfuse3.init(self.operations, mountpoint, self.options.fuse_options())
        log.info(
            "mounted %s on %s%s",
            ", ".join(self.files),
            mountpoint,
            " (read-only)" if self.options.read_only else "",
        )
        unmounted = False
        try:
            trio.run(self._main, handle_signals, on_ready)
            unmounted = not is_mounted(mountpoint)
        finally:
            self._token = None
            try:
                pyfuse3.close(unmount=not unmounted)
            except Exception:  # pragma: no cover - best effort at exit
                log.exception("unmounting %s failed", mountpoint)
            self.ready.clear()
            log.info("unmounted %s", mountpoint)


def mounted_filesystems() -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/self/mountinfo.

    Never stats a mount point: a FUSE mount whose server stopped answering
    would hang the caller.
    """
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        found[point] = right.split()[0]
    return found


def is_mounted(mountpoint: Path | str) -> bool:
    """Whether a FUSE filesystem is mounted exactly at `mountpoint`."""
    absolute = os.path.abspath(mountpoint)
    # Resolve only the parent: resolving the mount point itself would stat it.
    path = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
    return mounted_filesystems().get(path, "").startswith("fuse")


def wait_until_mounted(
    mountpoint: Path | str, process: subprocess.Popen, timeout: float | None = None
) -> None:
    """Poll until `process` (a `pgfs mount --foreground`, or any FUSE server) has
    mounted a FUSE filesystem at `mountpoint`. ChildProcessError when the process
    exits first; TimeoutError once `timeout` seconds have passed (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not is_mounted(mountpoint):
        if process.poll() is not None:
            raise ChildProcessError(f"the mount exited with status {process.returncode}")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{mountpoint} was not mounted within {timeout:g} s")
        time.sleep(0.05)


M_ARENA_MAX = -8
"""mallopt's parameter number for the most malloc arenas (glibc malloc.h)."""
M_MMAP_THRESHOLD = -3
"""mallopt's parameter number for the size from which malloc maps memory (glibc malloc.h)."""
MMAP_THRESHOLD = 128 * 1024
"""Blocks of this size and more get their own mapping, returned to the system when freed."""


def tune_malloc(arenas: int = 2, mmap_threshold: int = MMAP_THRESHOLD) -> None:
    """Let glibc keep at most `arenas` malloc arenas, and map every block of
    `mmap_threshold` bytes or more.

    glibc gives each thread that allocates its own arena (up to 8 per core). The
    mount renders and commits page images on trio's worker threads, each freeing
    what another one allocated: the process then holds on to memory no arena
    reuses, and a VACUUM of 100 MB peaked 70 MB higher.

    glibc also raises its mapping threshold each time a mapped block is freed (up
    to 32 MB): after the first batch of 256 rendered pages or the first part of a
    commit, buffers of that size and the page map's growing arrays come from the
    heap, where each reallocation leaves a hole that long-lived objects pin. A
    fixed threshold keeps them mapped: freed, they leave the process (a VACUUM of
    100 MB held 18 MB less while SQLite read the pages). The same as starting the
    process with MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072; nothing happens
    off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    except (OSError, AttributeError):
        log.debug("not glibc: malloc left as it is")


def run_mount(
    options: MountOptions,
    databases: Mapping[str, Backend],
    *,
    extra_status: Mapping[str, Any] | None = None,
    handle_signals: bool = True,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount `databases` (name -> Database) on `options.mountpoint` and serve until unmounted;
    `.pgfs-status` adds `extra_status` to what the mount reports of itself.

    `handle_signals` installs SIGTERM/SIGINT/SIGHUP handlers (main thread only).
    """
    tune_malloc()
    MountSession(options, databases, extra_status).run(
        handle_signals=handle_signals, on_ready=on_ready
    )
