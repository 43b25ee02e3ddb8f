"""The frame of one write, whatever the backend: `WriterFrame`.

A backend's writer subclasses it and supplies the statements (`_drop_table`,
`_create_table`, `_apply_alter`, `_apply_rows`, `_apply_chains`,
`_apply_pages`, `_apply_schema_mirror`, `_rename`, `_temp_name`); the frame
applies each part in the same order on every backend and keeps what the store
needs afterwards (the last part, the new sqlite_schema, the table definitions,
the counts).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader, TextEncoding
from pgfs.sqlite.schema import SchemaEntry, TableDefinition
from pgfs.store.changeset import Changeset, PageRecord, SchemaChange, TableRows
from pgfs.store.errors import StoreError
from pgfs.store.interface import CommitStats
from pgfs.store.stored import tables_after


@dataclass(frozen=True)
class WriteContext:
    """What every statement of one write needs to know."""

    catalog: Any
    """The backend's catalog: the names of the store's tables."""
    commit_id: uuid.UUID
    epoch: int
    seq: int
    source: str
    started: float
    """`time.perf_counter()` when the write began."""


PAGE_COLUMNS = ["pgno", "kind", "owner", "lo", "hi", "seq", "data"]
"""The columns of the pages meta table, in the order `page_rows` gives them."""


def page_rows(pages: list[PageRecord]) -> list[tuple[Any, ...]]:
    """The pages meta rows for `pages`, one per page number (the last record of a page
    number wins), in the order of PAGE_COLUMNS."""
    rows = {}
    for page in pages:
        rows[page.pgno] = (
            page.pgno,
            str(page.kind),
            page.owner,
            page.lo,
            page.hi,
            page.seq,
            None if page.data is None else bytes(page.data),
        )
    return list(rows.values())


class WriterFrame:
    """Applies the parts of one write in order; the caller owns the transaction."""

    def __init__(self, context: WriteContext, tables: dict[str, TableDefinition]) -> None:
        self.context = context
        self.catalog = context.catalog
        self.tables = dict(tables)
        self.stats = CommitStats(source=context.source, commit_seq=context.seq)
        self._last: Changeset | None = None
        self.entries: list[SchemaEntry] | None = None
        """The new sqlite_schema when this write changed it."""
        self.sent = False
        """Whether the COMMIT may have reached the server (set by whoever sends it)."""

    def apply(self, part: Changeset) -> None:
        header = DatabaseHeader.parse(part.header)
        encoding, fmt = header.text_encoding, header.schema_format
        self._apply_schema(part.schema, encoding, fmt)
        if part.schema_entries is not None:
            # The data tables after the DDL must be exactly those sqlite_schema describes.
            self.tables = tables_after(self.tables, part.schema_entries)
        for key, rows in part.rows.items():
            definition = self.tables.get(rows.table or key)
            if definition is None:
                raise StoreError(f"rows for table {rows.table or key!r}, which has no data table")
            self._apply_rows(definition, rows, encoding, fmt)
        self._apply_chains(part.chains)
        self.stats.pages += self._apply_pages(part.pages, part.removed_pages_from)
        if part.schema_entries is not None:
            self._apply_schema_mirror(part.schema_entries)
            self.entries = list(part.schema_entries)
        self._last = part

    def apply_all(self, first: Changeset, rest: Iterable[Changeset], clear: bool) -> None:
        """The whole of one write inside the caller's transaction: the fence, the store
        emptied when `clear`, every part in order, then the commit log and meta rows."""
        self.fence()
        if clear:
            self.clear()
        for part in itertools.chain((first,), rest):
            self.apply(part)
        self.finish()

    def fence(self) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def final_part(self) -> Changeset:
        if self._last is None:
            raise StoreError("a write with no parts")
        return self._last

    def _meta_rows(self, part: Changeset) -> list[tuple[str, str | None, bytes | None]]:
        """The meta table's (key, value, data) rows after the write whose last part is
        `part`."""
        header = DatabaseHeader.parse(part.header)
        return [
            ("header", None, bytes(part.header[:HEADER_SIZE])),
            ("page_count", str(part.page_count), None),
            ("page_size", str(header.page_size), None),
            ("text_encoding", header.text_encoding.name, None),
            ("schema_format", str(header.schema_format), None),
            ("commit_seq", str(self.context.seq), None),
        ]

    def _log_row(self, commit_id: Any, tables: Any) -> tuple[Any, ...]:
        """The commit-log row: (commit_id, seq, epoch, source, inserted, updated, deleted,
        pages, ms, tables), with the id and the per-table counts as the driver wants them."""
        stats, context = self.stats, self.context
        return (
            commit_id,
            context.seq,
            context.epoch,
            context.source,
            stats.total_inserted,
            stats.total_updated,
            stats.total_deleted,
            stats.pages,
            (time.perf_counter() - context.started) * 1000,
            tables,
        )

    def _apply_schema(self, change: SchemaChange, encoding: TextEncoding, fmt: int) -> None:
        """Drops, renames, creates, alters — in that order, so that a name can be
        dropped and created again, or freed by a rename and reused, in one commit."""
        for name in change.dropped:
            self._drop_table(name)
            self._delete_chains_of(name)
            self.tables.pop(name, None)
        self._apply_renames(change.renamed)
        for definition in change.created:
            if definition.name.lower().startswith("sqlite_"):
                continue
            self._create_table(definition)
            self.tables[definition.name] = definition
        for old, new in change.altered:
            self._apply_alter(self.tables.get(new.name, old), new, encoding, fmt)

    def _apply_renames(self, renames: list[tuple[str, str]]) -> None:
        """Table renames; when one frees a name another takes, every table is parked
        under a temporary name first (a swap)."""
        renames = [(old, new) for old, new in renames if old != new]
        if not renames:
            return
        olds = {old for old, _ in renames}
        if any(new in olds for _, new in renames):
            parked = [(old, self._temp_name("rename")) for old, _ in renames]
            for old, temp in parked:
                self._rename(old, temp)
            for (_, temp), (_, new) in zip(parked, renames, strict=True):
                self._rename(temp, new)
        else:
            for old, new in renames:
                self._rename(old, new)

    # -------------------------------------------------------------- the backend's part

    def _temp_name(self, prefix: str) -> str:
        raise NotImplementedError

    def _rename(self, old: str, new: str) -> None:
        raise NotImplementedError

    def _drop_table(self, name: str) -> None:
        """Drop the data table of `name` (its chains and definition go in `_apply_schema`)."""
        raise NotImplementedError

    def _create_table(self, definition: TableDefinition) -> None:
        """Make an empty data table for `definition` (one of its name is gone first)."""
        raise NotImplementedError

    def _delete_chains_of(self, owner: str) -> None:
        raise NotImplementedError

    def _apply_alter(
        self, old: TableDefinition, new: TableDefinition, encoding: TextEncoding, fmt: int
    ) -> None:
        raise NotImplementedError

    def _apply_rows(
        self, definition: TableDefinition, rows: TableRows, encoding: TextEncoding, fmt: int
    ) -> None:
        raise NotImplementedError

    def _apply_chains(self, chains: dict[tuple[str, int], list[int]]) -> None:
        raise NotImplementedError

    def _apply_pages(self, pages: list[PageRecord], removed_from: int | None) -> int:
        raise NotImplementedError

    def _apply_schema_mirror(self, entries: list[SchemaEntry]) -> None:
        raise NotImplementedError
