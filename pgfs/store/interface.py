"""What the layers above the store use of it: one protocol, every backend behind it.

The emulator and the tracker know a store only as `Store`. A backend
(`pgfs.store.postgres`, `pgfs.store.mariadb`) implements it; `pgfs.store.open_store`
picks one from the URL. Nothing here imports a driver.

A mount is the store's only writer while it holds the lease
(`acquire_lease`): every `write` checks the lease's fencing epoch inside its
own transaction, so a mount that lost the lease can never commit. That is
what makes it safe for the mount to keep the catalog, the page map and
rendered pages in its own memory and on local disk.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pgfs.sqlite.header import DatabaseHeader, TextEncoding
from pgfs.sqlite.schema import SchemaEntry, TableDefinition
from pgfs.store.changeset import Changeset, CommitSource, PageRecord


@dataclass(frozen=True)
class StoreState:
    """What the store holds, as the emulator needs it.

    `tables` has every table whose rows are kept as rows (rendered from
    them); every other object's pages are raw. Without a stored database
    `header` is None, `page_count` 0 and the rest defaults. `commit_seq` is
    the number of the last write the store applied (the local page cache is
    valid only for that number).
    """

    header: bytes | None
    page_size: int
    page_count: int
    encoding: TextEncoding
    schema_format: int
    entries: tuple[SchemaEntry, ...]
    tables: dict[str, TableDefinition]
    commit_seq: int = 0
    store_id: str = ""
    """Names this store for the local page cache (stays the same across writes)."""

    @classmethod
    def empty(cls, store_id: str = "") -> StoreState:
        return cls(None, 4096, 0, TextEncoding.UTF8, 4, (), {}, 0, store_id)

    @property
    def usable_size(self) -> int:
        if self.header is None:
            return self.page_size
        return DatabaseHeader.parse(self.header).usable_size

    def advanced_by(
        self,
        last: Changeset,
        entries: list[SchemaEntry] | None,
        tables: dict[str, TableDefinition],
        commit_seq: int,
    ) -> StoreState:
        """The state after a write whose last part is `last` (the mount is the only
        writer): `entries` is the new sqlite_schema when the write changed it."""
        header = DatabaseHeader.parse(last.header)
        return dataclasses.replace(
            self,
            header=bytes(last.header),
            page_size=header.page_size,
            page_count=last.page_count,
            encoding=header.text_encoding,
            schema_format=header.schema_format,
            entries=self.entries if entries is None else tuple(entries),
            tables=dict(tables),
            commit_seq=commit_seq,
        )


@dataclass
class CommitStats:
    """Rows inserted/updated/deleted per table, page records written, milliseconds."""

    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    ms: float = 0.0
    source: str = ""
    commit_seq: int = 0

    def count(self, table: str, *, inserted: int = 0, updated: int = 0, deleted: int = 0) -> None:
        for target, n in (
            (self.inserted, inserted),
            (self.updated, updated),
            (self.deleted, deleted),
        ):
            if n:
                target[table] = target.get(table, 0) + n

    @property
    def total_inserted(self) -> int:
        return sum(self.inserted.values())

    @property
    def total_updated(self) -> int:
        return sum(self.updated.values())

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())

    def per_table(self) -> dict[str, dict[str, int]]:
        names = sorted(set(self.inserted) | set(self.updated) | set(self.deleted))
        return {
            name: {
                "inserted": self.inserted.get(name, 0),
                "updated": self.updated.get(name, 0),
                "deleted": self.deleted.get(name, 0),
            }
            for name in names
        }

    def summary(self) -> str:
        """'T +i ~u -d, ...' per table."""
        parts = [
            f"{name} +{n['inserted']} ~{n['updated']} -{n['deleted']}"
            for name, n in self.per_table().items()
        ]
        return ", ".join(parts) if parts else "no row changes"


class LeafRow(NamedTuple):
    """A row as a table leaf renders it: rowid, record payload, first overflow page.
    A named tuple: a cold read makes hundreds of thousands of them."""

    rowid: int
    payload: bytes
    first_overflow: int | None


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds (or asks for) the lease: shown to a mount that is refused."""

    host: str
    pid: int
    mountpoint: str
    since: float

    @classmethod
    def this_process(cls, mountpoint: str) -> LeaseHolder:
        import os

        return cls(socket.gethostname(), os.getpid(), mountpoint, time.time())

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.since))
        return f"host {self.host}, pid {self.pid}, mount {self.mountpoint}, since {when}"

    def to_json(self) -> str:
        """As the meta table's `lease_holder` value keeps it."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> LeaseHolder | None:
        """The holder a `lease_holder` value names (None when empty or not one)."""
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class LeaseStatus:
    """The lease as this store sees it (status, metrics)."""

    held: bool
    epoch: int | None
    holder: LeaseHolder | None
    reacquired: int = 0
    lost_reason: str | None = None


@dataclass(frozen=True)
class Health:
    """Whether the server answers, and how fast (the mount's /healthz)."""

    ok: bool
    detail: str
    seconds: float


def new_commit_id() -> uuid.UUID:
    """The id a commit carries into the commit log, to find its outcome after a lost
    connection (README "Failures")."""
    return uuid.uuid4()


class Store(Protocol):
    """A database kept in a server: the interface every backend implements.

    All methods may be called from worker threads; a backend serialises what
    must be. Errors are `pgfs.store.errors.StoreError` and its subclasses,
    never a driver's exception, and never carry a password.
    """

    @property
    def target(self) -> str:
        """Where the store lives, for messages (server, database, schemas; no password)."""
        ...

    def initialise(self) -> None:
        """Create the store's own tables if missing (idempotent)."""
        ...

    def is_empty(self) -> bool:
        """True when no database is stored."""
        ...

    def load_state(self) -> StoreState:
        """Header, page count, schema mirror, table definitions, commit sequence."""
        ...

    def page_records(self, pgnos: Iterable[int]) -> dict[int, PageRecord]:
        """The page map entries of `pgnos` (an absent page number is not stored)."""
        ...

    def leaf_rows(self, table: str, ranges: list[tuple[int, int]]) -> list[LeafRow]:
        """The rows of `table` with rowid inside any of the inclusive ranges, rowid order."""
        ...

    def leaf_rows_of(
        self, requests: Mapping[str, list[tuple[int, int]]]
    ) -> dict[str, list[LeafRow]]:
        """`leaf_rows` of several tables at once (one round trip where the backend can)."""
        ...

    def row_payloads(self, table: str, rowids: Iterable[int]) -> dict[int, bytes]:
        """Record payloads of these rows (absent rowids are left out)."""
        ...

    def overflow_chains(self, table: str, rowids: Iterable[int]) -> dict[int, list[int]]:
        """Overflow page numbers of these rows (rows without overflow left out)."""
        ...

    def table_rows(self, table: str) -> Iterator[tuple[int, bytes]]:
        """Every row of `table` as (rowid, record payload), rowid order (streamed)."""
        ...

    def acquire_lease(self, holder: LeaseHolder, *, takeover: bool = False) -> LeaseStatus:
        """Become the store's only writer (LeaseHeldError naming the holder if another
        one is alive; `takeover` fences it instead)."""
        ...

    def release_lease(self) -> None: ...

    def lease_status(self) -> LeaseStatus: ...

    def check_lease(self) -> None:
        """Probe the lease's connection (a mount calls this every few seconds), so that a
        dropped one is noticed, and taken again, before the next write needs it."""
        ...

    def write(
        self,
        parts: Iterable[Changeset],
        *,
        source: CommitSource,
        commit_id: uuid.UUID | None = None,
        clear: bool = False,
    ) -> CommitStats:
        """Apply the parts of one commit in one server transaction, fenced by the lease.

        `clear` empties the store first (an import that replaces). Raises
        StoreError when nothing was written, CommitOutcomeUnknownError when the
        connection was lost after the commit was sent and the server could not
        be asked within the deadline.
        """
        ...

    def commit_landed(self, commit_id: uuid.UUID) -> bool:
        """Whether a write with this id is in the store (after any transaction that
        could still write it has ended)."""
        ...

    def inspect(self) -> dict[str, object]:
        """A JSON-serialisable report for `pgfs inspect`."""
        ...

    def health(self) -> Health: ...

    def close(self) -> None: ...
