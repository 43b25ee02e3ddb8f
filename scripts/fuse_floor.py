"""The cost of one FUSE request on this machine, for a filesystem that does nothing.

A FUSE filesystem written with pyfuse3 on trio (the fixed stack of pgfs) pays,
for every read or write request the kernel sends, the kernel's round trip and
pyfuse3's and trio's dispatch, before its own handler runs. This script mounts
a filesystem whose handlers do no work at all — one 64 MB file of zeros, opened
with direct I/O so that every pread and pwrite is one request — and times 4 KB
preads and pwrites against it. The result is the floor under every figure of
pgfs that goes through the kernel: `bench_scale` multiplies the requests a step
makes by it ("at the floor").

    .venv/bin/python -m scripts.fuse_floor            # prints µs per request
    .venv/bin/python -m scripts.fuse_floor serve DIR  # the filesystem itself
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyfuse3
import trio

from pgfs.fuse.mount import wait_until_mounted

FILE_NAME = b"zeros"
FILE_SIZE = 64 << 20
FILE_INODE = 2
REQUEST_SIZE = 4096
REQUESTS = 20_000


class DoNothing(pyfuse3.Operations):
    """One read-write file whose reads are zeros and whose writes are dropped."""

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None):
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        if inode == pyfuse3.ROOT_INODE:
            entry.st_mode = stat.S_IFDIR | 0o755
        elif inode == FILE_INODE:
            entry.st_mode = stat.S_IFREG | 0o644
            entry.st_size = FILE_SIZE
        else:
            raise pyfuse3.FUSEError(errno.ENOENT)
        entry.attr_timeout = entry.entry_timeout = 3600
        return entry

    async def lookup(self, parent: int, name: bytes, ctx: pyfuse3.RequestContext | None = None):
        if parent != pyfuse3.ROOT_INODE or name != FILE_NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return await self.getattr(FILE_INODE)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext):
        return pyfuse3.FileInfo(fh=inode, direct_io=True, keep_cache=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return bytes(size)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return len(buf)


def serve(mountpoint: str) -> None:
    pyfuse3.init(DoNothing(), mountpoint, {"fsname=fuse-floor", "subtype=fuse-floor"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close()


def time_requests(path: Path, requests: int = REQUESTS) -> float:
    """Seconds per request: half preads, half pwrites of 4 KB, each one request."""
    fd = os.open(path, os.O_RDWR)
    block = bytes(REQUEST_SIZE)
    slots = FILE_SIZE // REQUEST_SIZE
    try:
        started = time.perf_counter()
        for n in range(requests // 2):
            os.pread(fd, REQUEST_SIZE, (n % slots) * REQUEST_SIZE)
            os.pwrite(fd, block, (n % slots) * REQUEST_SIZE)
        return (time.perf_counter() - started) / (requests // 2 * 2)
    finally:
        os.close(fd)


def measure_floor(rounds: int = 3) -> float:
    """Seconds per request of the do-nothing filesystem (the best of `rounds`)."""
    with tempfile.TemporaryDirectory(prefix="fuse-floor-") as work:
        mountpoint = Path(work) / "mnt"
        mountpoint.mkdir()
        server = subprocess.Popen(
            [sys.executable, "-m", "scripts.fuse_floor", "serve", str(mountpoint)],
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            try:
                wait_until_mounted(mountpoint, server)
            except ChildProcessError:
                raise SystemExit("the do-nothing filesystem did not mount") from None
            file = mountpoint / FILE_NAME.decode()
            return min(time_requests(file) for _ in range(rounds))
        finally:
            subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
            server.wait(30)


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
        return
    print(f"one FUSE request, pyfuse3 on trio, doing nothing: {measure_floor() * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
