"""What the tracker needs and what it offers: the `Backend` it commits to (the
emulator's `Database`, or an in-memory fake in tests) and the side files of a
database (the errors a file operation raises are in errors.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from pgfs.emulator.pagecache import Warmth
from pgfs.store.changeset import CommitSource
from pgfs.store.interface import CommitStats, Health, LeaseStatus
from pgfs.tracker.buffers import SpillBuffer


class Backend(Protocol):
    """What the tracker needs of a database: `pgfs.emulator.database.Database`."""

    @property
    def page_size(self) -> int: ...

    @property
    def page_count(self) -> int: ...

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]: ...

    def read_range(self, first: int, last: int) -> dict[int, bytes]: ...

    def cached_range(self, first: int, last: int) -> dict[int, bytes] | None: ...

    def commit(
        self, changed: Mapping[int, bytes], page_count: int, source: CommitSource
    ) -> CommitStats: ...

    def lease_status(self) -> LeaseStatus: ...

    def check_lease(self) -> None: ...

    def resolve_pending(self) -> None: ...

    def health(self) -> Health: ...

    @property
    def pages_rendered(self) -> int: ...

    @property
    def cache_hits(self) -> int: ...

    def warm_step(self) -> Warmth | None:
        """Fill the next pages of the local page cache (None: there is none)."""
        ...

    def warmth(self) -> Warmth | None: ...


class Role(Enum):
    """The files of one database, by name suffix."""

    DB = ""
    JOURNAL = "-journal"
    WAL = "-wal"
    SHM = "-shm"


@dataclass
class SideFile:
    """A `-journal`, `-wal` or `-shm` file: its bytes (spilling to disk when big).

    `attached` is False once the file was unlinked: writes still land in its
    buffer (an mmap of `-shm` is written back after SQLite unlinked it) but
    mean nothing to the tracker.
    """

    role: Role
    data: SpillBuffer = field(default_factory=SpillBuffer)
    attached: bool = True
