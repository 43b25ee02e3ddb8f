"""Page images of the current state: a bounded memory LRU, over an optional local file.

Rendering a page from the server costs a query and Python work; a page
image stays valid until a commit changes it, and only this mount commits
(it holds the lease). So every image rendered or committed is kept:

- in memory, up to `memory_bytes` (least recently used first out);
- on local disk when a cache directory is given (`DiskPages`): one file of
  page slots, plus which slots hold a page. It survives a restart of the
  mount: at mount it is used only if it was closed cleanly for exactly the
  store and commit sequence the server now has (LiteFS keeps its local copy
  for the same reason); otherwise it starts empty. The server stays the
  source of truth: a commit reaches it before the cache changes.

Memory stays bounded whatever the database size; the disk file grows to the
database's size at most.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

from pgfs.emulator.pageset import PageSet

log = logging.getLogger("pgfs.emulator")

MEMORY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Warmth:
    """How much of the database the local cache file holds (`pgfs mount --warm-cache`)."""

    cached: int
    total: int

    @property
    def complete(self) -> bool:
        return self.cached >= self.total


@dataclass(frozen=True)
class CacheStamp:
    """What a cache file holds: pages of this store at this commit, this page size."""

    store_id: str
    commit_seq: int
    page_size: int


class DiskPages:
    """Page slots in one local file, and a bitmap of the slots that hold a page.

    `open` returns the pages of a cleanly closed cache whose stamp equals
    `expected`, else an empty cache. While open, the stamp on disk says
    "dirty": a crash leaves a cache the next mount will not trust.
    """

    DATA = "pages"
    PRESENT = "present"
    STAMP = "stamp.json"

    def __init__(self, folder: Path, page_size: int, slots: PageSet, fd: int) -> None:
        self.folder = folder
        self.page_size = page_size
        self.slots = slots
        """The slots that hold a page: slot n holds page n + 1 (stored as a bitmap)."""
        self._fd = fd

    @classmethod
    def open(cls, folder: Path, expected: CacheStamp) -> DiskPages:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = _read_stamp(folder / cls.STAMP)
        slots = PageSet.from_bitmap(b"")  # the slots of a whole file: a bitmap from the start
        reused = stamp == expected
        if reused:
            try:
                slots = PageSet.from_bitmap((folder / cls.PRESENT).read_bytes())
            except OSError:
                reused = False
        (folder / cls.STAMP).write_text(json.dumps({"dirty": True}))
        flags = os.O_RDWR | os.O_CREAT | (0 if reused else os.O_TRUNC)
        fd = os.open(folder / cls.DATA, flags, 0o600)
        if reused:
            log.info(
                "local page cache %s: %d pages kept from the last mount (commit %d)",
                folder,
                len(slots),
                expected.commit_seq,
            )
        else:
            log.info("local page cache %s: starting empty", folder)
        return cls(folder, expected.page_size, slots, fd)

    def get(self, pgno: int) -> bytes | None:
        if not self.has(pgno):
            return None
        data = os.pread(self._fd, self.page_size, (pgno - 1) * self.page_size)
        return data if len(data) == self.page_size else None

    def put(self, pgno: int, image: bytes) -> None:
        os.pwrite(self._fd, image, (pgno - 1) * self.page_size)
        self.slots.add(pgno - 1)

    def discard(self, pgno: int) -> None:
        self.slots.discard(pgno - 1)

    def truncate(self, page_count: int) -> None:
        self.slots.drop_from(page_count)
        os.ftruncate(self._fd, page_count * self.page_size)

    def clear(self) -> None:
        self.slots.clear()
        os.ftruncate(self._fd, 0)

    def close(self, stamp: CacheStamp | None) -> None:
        """Close; with a stamp the cache is trusted by the next mount of that state."""
        if self._fd < 0:
            return
        try:
            if stamp is not None and stamp.page_size == self.page_size:
                os.fsync(self._fd)
                (self.folder / self.PRESENT).write_bytes(self.slots.bitmap())
                temp = self.folder / (self.STAMP + ".tmp")
                temp.write_text(json.dumps(asdict(stamp)))
                os.replace(temp, self.folder / self.STAMP)
        finally:
            os.close(self._fd)
            self._fd = -1

    def first_missing(self, start: int, page_count: int) -> int | None:
        """The first page number in [start, page_count] no slot holds, or None."""
        slot = self.slots.first_absent(max(start, 1) - 1, page_count)
        return None if slot is None else slot + 1

    def count(self, page_count: int) -> int:
        """How many of pages 1..page_count the file holds."""
        return self.slots.count_below(page_count)

    def has(self, pgno: int) -> bool:
        return pgno - 1 in self.slots


def _read_stamp(path: Path) -> CacheStamp | None:
    try:
        raw = json.loads(path.read_text())
        return CacheStamp(str(raw["store_id"]), int(raw["commit_seq"]), int(raw["page_size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class PageCache:
    """Valid images of pages of the current state (see module docstring)."""

    def __init__(self, memory_bytes: int = MEMORY_BYTES, disk: DiskPages | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.disk = disk
        self._memory: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.disk_hits = 0

    def get(self, pgno: int) -> bytes | None:
        image = self._memory.get(pgno)
        if image is not None:
            self._memory.move_to_end(pgno)
            self.hits += 1
            return image
        if self.disk is not None:
            image = self.disk.get(pgno)
            if image is not None:
                self.disk_hits += 1
                self._remember(pgno, image)
                return image
        return None

    def put(self, pgno: int, image: bytes) -> None:
        if self.disk is not None:
            self.disk.put(pgno, image)
        self._remember(pgno, image)

    def _remember(self, pgno: int, image: bytes) -> None:
        old = self._memory.pop(pgno, None)
        if old is not None:
            self._bytes -= len(old)
        if len(image) > self.memory_bytes:
            return
        self._memory[pgno] = image
        self._bytes += len(image)
        while self._bytes > self.memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._bytes -= len(evicted)

    def discard(self, pgno: int) -> None:
        old = self._memory.pop(pgno, None)
        if old is not None:
            self._bytes -= len(old)
        if self.disk is not None:
            self.disk.discard(pgno)

    def truncate(self, page_count: int) -> None:
        for pgno in [p for p in self._memory if p > page_count]:
            self.discard(pgno)
        if self.disk is not None:
            self.disk.truncate(page_count)

    def clear(self) -> None:
        self._memory.clear()
        self._bytes = 0
        if self.disk is not None:
            self.disk.clear()

    def __contains__(self, pgno: int) -> bool:
        return pgno in self._memory or (self.disk is not None and self.disk.has(pgno))

    @property
    def memory_used(self) -> int:
        return self._bytes

    def close(self, stamp: CacheStamp | None) -> None:
        if self.disk is not None:
            self.disk.close(stamp)
