"""A Changeset streamed in parts of bounded size, and what a walked table page adds.

A commit of many pages and an import send their Changeset in parts of about
`PART_BYTES` (the store applies them in one transaction), so that neither
ever holds the database in memory. The diff's build step and the importer
collect pages and rows in a `ChangesetParts`, and add a walked page of a
table kept as rows with the same `add_table_page`: an import is a commit of
every page onto an empty store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pgfs.emulator.walk import TableRow, WalkedPage, leaf_record, overflow_records
from pgfs.store.changeset import Changeset, PageRecord, TableRows

PART_BYTES = 4 * 1024 * 1024
"""A part is sent once its rows and raw pages reach about this many bytes."""


class ChangesetParts:
    """Collects one part at a time; `take()` hands it over and starts the next."""

    def __init__(
        self,
        first: Changeset,
        next_part: Callable[[], Changeset],
        *,
        record_overhead: int,
        on_page: Callable[[PageRecord], None] | None = None,
    ) -> None:
        self.part = first
        self.size = 0
        self.taken = 0
        self._next_part = next_part
        self._overhead = record_overhead
        """Bytes a row or page record costs beyond its data (Python objects)."""
        self._on_page = on_page

    def add_page(self, record: PageRecord) -> None:
        self.part.pages.append(record)
        self.size += self._overhead + (len(record.data) if record.data else 0)
        if self._on_page is not None:
            self._on_page(record)

    def rows_of(self, table: str, *, replace_all: bool) -> TableRows:
        rows = self.part.rows.get(table)
        if rows is None:
            rows = self.part.rows[table] = TableRows(table, replace_all=replace_all)
        return rows

    def add_row(self, rows: TableRows, key: int, payload: bytes) -> None:
        rows.inserted[key] = payload
        self.count(payload)

    def count(self, payload: bytes) -> None:
        """A row added to the part some other way."""
        self.size += len(payload) + self._overhead

    def full(self) -> bool:
        return self.size >= PART_BYTES

    def take(self) -> Changeset:
        part, self.part, self.size = self.part, self._next_part(), 0
        self.taken += 1
        return part

    def take_if_full(self) -> Changeset | None:
        return self.take() if self.full() else None


def add_table_page(
    parts: ChangesetParts, name: str, page: WalkedPage, rows: Iterable[TableRow] | None = None
) -> None:
    """A walked page of a table kept as rows, which replaces all its rows: an interior
    page's image; or a leaf's `rows` (all of them by default), their overflow chains
    and records, and the leaf's record."""
    if page.image is not None:
        parts.add_page(PageRecord(page.pgno, page.kind, name, data=page.image))
        return
    kept = page.rows if rows is None else list(rows)
    table = parts.rows_of(name, replace_all=True)
    for row in kept:
        parts.add_row(table, row.rowid, row.payload)
        if row.chain:
            parts.part.chains[(name, row.rowid)] = row.chain
            for record in overflow_records(name, row.rowid, row.chain):
                parts.add_page(record)
    parts.add_page(leaf_record(page.pgno, name, [row.rowid for row in kept]))


def add_mirror_rows(parts: ChangesetParts, name: str, page: WalkedPage) -> None:
    """The cells of a page of a WITHOUT ROWID table, appended to its refilled mirror."""
    rows = parts.rows_of(name, replace_all=True)
    for payload, _chain in page.payloads:
        parts.add_row(rows, len(rows.inserted), payload)
