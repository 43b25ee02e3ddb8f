"""Sparse byte images of the database file, kept in fixed-size blocks.

Two of them live in each `DatabaseFile`:

- the rollback *overlay*: database-file writes of the transaction in progress
  (rollback-journal modes), served back to SQLite until the journal's end
  decides the commit;
- the WAL *pre-images*: for pages changed by a WAL commit but not yet
  checkpointed, what the database file holds on disk (the image before the
  first uncheckpointed commit, replaced by checkpoint writes).

Both are layered over the *base*: the pages PostgreSQL renders. A block is
one page of the layer's block size; a write that covers only part of an
absent block needs the block's base bytes first (`missing_for_write`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pgfs.tracker.buffers import BlockStore


class BlockMap:
    """Blocks of `block_size` bytes keyed by 0-based block index (spilling to a
    local file past `buffers.SPILL_BYTES`, so a transaction of any size fits)."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.blocks = BlockStore(block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __bool__(self) -> bool:
        return len(self.blocks) > 0

    def __contains__(self, index: int) -> bool:
        return index in self.blocks

    def indexes(self) -> list[int]:
        return sorted(self.blocks.indexes())

    def clear(self) -> None:
        self.blocks.clear()

    def span(self, offset: int, length: int) -> range:
        """Indexes of the blocks that bytes [offset, offset+length) touch."""
        if length <= 0:
            return range(0)
        size = self.block_size
        return range(offset // size, (offset + length - 1) // size + 1)

    def missing_for_write(self, offset: int, length: int) -> list[int]:
        """Absent blocks that a write covers only partly (their base bytes are needed)."""
        size = self.block_size
        missing = []
        for index in self.span(offset, length):
            start = index * size
            whole = offset <= start and offset + length >= start + size
            if not whole and index not in self.blocks:
                missing.append(index)
        return missing

    def write(self, offset: int, data: bytes | memoryview, fill: dict[int, bytes]) -> None:
        """Copy `data` in at `offset`; `fill` gives the base bytes of partly covered new blocks."""
        size = self.block_size
        view = memoryview(data)
        position = 0
        while position < len(view):
            absolute = offset + position
            index, within = divmod(absolute, size)
            count = min(size - within, len(view) - position)
            if count == size:
                self.blocks.put(index, bytes(view[position : position + count]))
            else:
                old = self.blocks.get(index)
                block = bytearray(old if old is not None else fill[index][:size].ljust(size, b"\0"))
                block[within : within + count] = view[position : position + count]
                self.blocks.put(index, bytes(block))
            position += count

    def put(self, index: int, image: bytes) -> None:
        """Set a whole block."""
        self.blocks.put(index, image)

    def truncate(self, size: int) -> None:
        """Forget blocks wholly past `size`; zero the tail of the block holding `size`."""
        bsize = self.block_size
        self.blocks.discard_many([i for i in self.blocks.indexes() if i * bsize >= size])
        index, within = divmod(size, bsize)
        block = self.blocks.get(index)
        if block is not None and within:
            self.blocks.put(index, block[:within] + bytes(bsize - within))

    def get(self, index: int) -> bytes | None:
        return self.blocks.get(index)


@dataclass(frozen=True)
class Segment:
    """Part of a read: bytes [start, end) of the file from one layer, or from the base."""

    start: int
    end: int
    block: bytes | None  # None: from the base
    block_start: int = 0


def plan_read(offset: int, length: int, layers: list[BlockMap]) -> list[Segment]:
    """Cut [offset, offset+length) into segments served by the first layer holding them."""
    segments: list[Segment] = []
    position = offset
    end = offset + length
    while position < end:
        served = False
        for layer in layers:
            index = position // layer.block_size
            block = layer.blocks.get(index)
            if block is not None:
                stop = min(end, (index + 1) * layer.block_size)
                segments.append(Segment(position, stop, block, index * layer.block_size))
                position = stop
                served = True
                break
        if served:
            continue
        # From the base up to the next block boundary of the finest layer (a later
        # block may be present in some layer).
        stop = end
        for layer in layers:
            stop = min(stop, (position // layer.block_size + 1) * layer.block_size)
        if segments and segments[-1].block is None and segments[-1].end == position:
            segments[-1] = Segment(segments[-1].start, stop, None)
        else:
            segments.append(Segment(position, stop, None))
        position = stop
    return segments


def base_ranges(segments: list[Segment]) -> Iterator[tuple[int, int]]:
    for segment in segments:
        if segment.block is None:
            yield segment.start, segment.end


def assemble(segments: list[Segment], base: Callable[[int, int], bytes]) -> bytes:
    """Join the segments; `base(start, end)` gives the base bytes of a base segment."""
    parts = []
    for segment in segments:
        if segment.block is None:
            parts.append(base(segment.start, segment.end))
        else:
            lo = segment.start - segment.block_start
            parts.append(bytes(segment.block[lo : lo + segment.end - segment.start]))
    return b"".join(parts)
