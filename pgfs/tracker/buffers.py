"""Bytes the tracker holds for SQLite, in memory while small and in a local file past that.

A transaction of any size must not grow the mount's memory: a VACUUM of a
1 GB database writes 1 GB of WAL frames (or of journal and overlay pages).
`SpillBuffer` is the byte image of one side file (`-wal`, `-journal`);
`BlockStore` holds fixed-size blocks by index (the rollback overlay, the WAL
pre-images). Both keep their bytes in memory up to `SPILL_BYTES`, then move
them to an unlinked temporary file (in `$PGFS_SPILL_DIR`, else the system's
temporary directory) and serve them with pread/pwrite. The file is gone when
the buffer is closed or the process ends.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator, MutableMapping

from pgfs.emulator.pageset import DENSE_AFTER, DenseKeys

SPILL_BYTES = 4 * 1024 * 1024
"""A buffer moves to a local file once it holds more than this."""


def _spill_file() -> int:
    folder = os.environ.get("PGFS_SPILL_DIR") or None
    handle, path = tempfile.mkstemp(prefix="pgfs-spill-", dir=folder)
    os.unlink(path)
    return handle


class SpillBuffer:
    """A growable byte image (bytearray semantics for what the tracker needs)."""

    def __init__(self, spill_bytes: int = SPILL_BYTES) -> None:
        self._spill_bytes = spill_bytes
        self._memory: bytearray | None = bytearray()
        self._fd = -1
        self._size = 0

    @property
    def spilled(self) -> bool:
        return self._memory is None

    @property
    def memory_bytes(self) -> int:
        """Bytes held in memory (0 once spilled to the file)."""
        return len(self._memory) if self._memory is not None else 0

    def __len__(self) -> int:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset+size), cut at the end."""
        end = min(offset + size, self._size)
        if offset >= end:
            return b""
        if self._memory is not None:
            return bytes(self._memory[offset:end])
        return os.pread(self._fd, end - offset, offset)

    def __bytes__(self) -> bytes:
        return self.read(0, self._size)

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self._size)
        return self.read(start, stop - start)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write at `offset` (a gap before it reads as zeros)."""
        end = offset + len(data)
        if self._memory is not None and max(end, self._size) > self._spill_bytes:
            self._spill()
        if self._memory is not None:
            if offset > len(self._memory):
                self._memory.extend(bytes(offset - len(self._memory)))
            self._memory[offset:end] = data
        else:
            if offset > self._size:
                os.ftruncate(self._fd, offset)
            os.pwrite(self._fd, data, offset)
        self._size = max(self._size, end)

    def truncate(self, size: int) -> None:
        if self._memory is not None:
            if size < len(self._memory):
                del self._memory[size:]
            else:
                self._memory.extend(bytes(size - len(self._memory)))
        else:
            os.ftruncate(self._fd, size)
        self._size = size

    def _spill(self) -> None:
        assert self._memory is not None
        self._fd = _spill_file()
        os.pwrite(self._fd, self._memory, 0)
        self._memory = None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._memory = bytearray()
        self._size = 0

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)


class PageIndex(MutableMapping[int, int]):
    """int -> int for page numbers and block indexes (keys and values >= 0).

    A dict while it is small, an array of 8 bytes a key once the keys are many and
    dense (`DenseKeys`): a VACUUM of a 1 GB database keeps one entry per page (the
    frame of each page, the slot of each pre-image), while a commit of a few
    pages costs nothing per database page. In array mode a key far past the
    others (`MAX_GAP`) is kept in a dict, so a stray offset cannot allocate the
    gap. Iterates in key order.
    """

    DENSE_AFTER = DENSE_AFTER
    MAX_GAP = 1 << 20
    _ABSENT = -1

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._values: array | None = None
        self._sparse: dict[int, int] = {}
        self._count = 0
        self._dense = DenseKeys(self.DENSE_AFTER)

    def __getitem__(self, key: int) -> int:
        values = self._values
        if values is not None and 0 <= key < len(values):
            value = values[key]
            if value != self._ABSENT:
                return value
            raise KeyError(key)
        return self._sparse[key]

    def __setitem__(self, key: int, value: int) -> None:
        if key < 0 or value < 0:
            raise ValueError("PageIndex holds keys and values >= 0")
        values = self._values
        if values is None:
            self._sparse[key] = value
            if self._dense.due(key, len(self._sparse)):
                self._to_array()
            return
        if key < len(values) + self.MAX_GAP:
            if key >= len(values):
                values.extend(array("q", [self._ABSENT]) * (key + 1 - len(values)))
            if values[key] == self._ABSENT:
                self._count += 1
            values[key] = value
            return
        self._sparse[key] = value

    def _to_array(self) -> None:
        sparse = self._sparse
        values = array("q", [self._ABSENT]) * (self._dense.top + 1)
        for key, value in sparse.items():
            values[key] = value
        self._values, self._count, self._sparse = values, len(sparse), {}

    def __delitem__(self, key: int) -> None:
        values = self._values
        if values is not None and 0 <= key < len(values) and values[key] != self._ABSENT:
            values[key] = self._ABSENT
            self._count -= 1
            return
        del self._sparse[key]

    def __contains__(self, key: object) -> bool:
        values = self._values
        if values is not None and isinstance(key, int) and 0 <= key < len(values):
            return values[key] != self._ABSENT
        return key in self._sparse

    def __iter__(self) -> Iterator[int]:
        if self._values is not None:
            absent = self._ABSENT
            yield from (key for key, value in enumerate(self._values) if value != absent)
        yield from sorted(self._sparse)

    def __len__(self) -> int:
        return self._count + len(self._sparse)


class BlockStore:
    """Blocks of `block_size` bytes by index, in memory then in a file of slots."""

    def __init__(self, block_size: int, spill_bytes: int = SPILL_BYTES) -> None:
        self.block_size = block_size
        self._limit = max(1, spill_bytes // block_size)
        self._memory: dict[int, bytes] = {}
        self._slots = PageIndex()
        self._next_slot = 0
        self._fd = -1

    def __len__(self) -> int:
        return len(self._memory) + len(self._slots)

    @property
    def memory_bytes(self) -> int:
        return len(self._memory) * self.block_size

    def __contains__(self, index: object) -> bool:
        return index in self._memory or index in self._slots

    def __bool__(self) -> bool:
        return len(self) > 0

    def indexes(self) -> Iterator[int]:
        yield from self._memory
        yield from self._slots

    def get(self, index: int) -> bytes | None:
        block = self._memory.get(index)
        if block is not None:
            return block
        slot = self._slots.get(index)
        if slot is None:
            return None
        return os.pread(self._fd, self.block_size, slot * self.block_size)

    def put(self, index: int, block: bytes) -> None:
        """Set a whole block (padded or cut to the block size)."""
        if len(block) != self.block_size:
            block = bytes(block[: self.block_size]).ljust(self.block_size, b"\0")
        if index in self._slots:
            os.pwrite(self._fd, block, self._slots[index] * self.block_size)
        elif index in self._memory or len(self._memory) < self._limit:
            self._memory[index] = bytes(block)
        else:
            if self._fd < 0:
                self._fd = _spill_file()
            slot = self._next_slot  # never len(): a discarded block's slot stays taken
            self._next_slot += 1
            self._slots[index] = slot
            os.pwrite(self._fd, block, slot * self.block_size)

    def discard(self, index: int) -> None:
        self._memory.pop(index, None)
        self._slots.pop(index, None)  # its slot stays unused until the store is cleared

    def discard_many(self, indexes: Iterable[int]) -> None:
        for index in list(indexes):
            self.discard(index)

    def clear(self) -> None:
        self._memory.clear()
        self._slots.clear()
        self._next_slot = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
