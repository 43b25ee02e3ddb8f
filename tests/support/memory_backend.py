"""`MemoryBackend`: the tracker's `Backend` as plain page images in a dict.

What a commit sends is what the database file then holds: the pages SQLite
wrote, the new page count. The tracker's tests run a real SQLite over it
without PostgreSQL, and can make a commit fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pgfs.emulator.pagecache import Warmth
from pgfs.sqlite.header import DatabaseHeader
from pgfs.store.changeset import CommitSource
from pgfs.store.interface import CommitStats, Health, LeaseStatus


@dataclass
class MemoryBackend:
    page_size: int = 4096
    page_count: int = 0
    pages: dict[int, bytes] = field(default_factory=dict)
    commits: list[tuple[CommitSource, frozenset[int], int]] = field(default_factory=list)
    fail_next: Exception | None = None
    pages_rendered: int = 0
    cache_hits: int = 0

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        wanted = list(pgnos)
        self.pages_rendered += len(wanted)
        return {p: self.pages.get(p, bytes(self.page_size)) for p in wanted}

    def read_range(self, first: int, last: int) -> dict[int, bytes]:
        return self.read_many(range(first, last + 1))

    def cached_range(self, first: int, last: int) -> dict[int, bytes] | None:
        return None  # nothing is cached: every read takes the worker-thread path

    def commit(
        self, changed: Mapping[int, bytes], page_count: int, source: CommitSource
    ) -> CommitStats:
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        images = {p: bytes(changed[p]) for p in changed}
        if 1 in images:
            self.page_size = DatabaseHeader.parse(images[1][:100]).page_size
        self.pages.update(images)
        self.pages = {p: image for p, image in self.pages.items() if p <= page_count}
        self.page_count = page_count
        self.commits.append((source, frozenset(images), page_count))
        return CommitStats(pages=len(images), source=str(source), commit_seq=len(self.commits))

    def file_bytes(self) -> bytes:
        """The database file the committed pages make."""
        return b"".join(self.read_many(range(1, self.page_count + 1)).values())

    def lease_status(self) -> LeaseStatus:
        return LeaseStatus(held=True, epoch=1, holder=None)

    def check_lease(self) -> None:
        return None

    def resolve_pending(self) -> None:
        return None

    def health(self) -> Health:
        return Health(ok=True, detail="memory", seconds=0.0)

    def warm_step(self) -> Warmth | None:
        return None  # no local page cache

    def warmth(self) -> Warmth | None:
        return None
