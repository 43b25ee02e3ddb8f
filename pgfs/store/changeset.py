"""The store's input: everything one SQLite commit changes, as the emulator builds it.

A commit is written by `Store.write` as one server transaction. It may come
in several `Changeset` parts (a big commit or an import streams them, so memory
does not grow with its size); the parts are applied in order, each part's
pieces in this order: schema changes (drops, renames, creates, alters), table
rows (replace_all, deletes, upserts), overflow chains, page records, and meta
(header, page count, schema mirror) from the last part that carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgfs.sqlite.schema import SchemaEntry, TableDefinition


class PageKind(StrEnum):
    """What a page is (README Design, "What the server holds")."""

    TABLE_LEAF = "table_leaf"
    TABLE_INTERIOR = "table_interior"
    INDEX_LEAF = "index_leaf"
    INDEX_INTERIOR = "index_interior"
    OVERFLOW = "overflow"
    FREELIST_TRUNK = "freelist_trunk"
    FREE = "free"
    PTRMAP = "ptrmap"

    @property
    def is_btree(self) -> bool:
        return self in _BTREE_KINDS


_BTREE_KINDS = frozenset(
    {PageKind.TABLE_LEAF, PageKind.TABLE_INTERIOR, PageKind.INDEX_LEAF, PageKind.INDEX_INTERIOR}
)


class CommitSource(StrEnum):
    """Where a write came from (the commit log's `source`)."""

    IMPORT = "import"
    JOURNAL = "journal"
    WAL = "wal"
    CLEAR = "clear"
    UNDO = "undo"
    """A commit that puts back what SQLite was told when an earlier commit whose
    outcome was unknown turned out to have landed (README "Failures")."""


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One entry of the page map: what page `pgno` is and, for raw pages, its bytes.

    - table leaf of a rendered table: `owner`, `lo`/`hi` = the rowid range the
      page holds exactly (both None for an empty leaf), `data` None;
    - overflow page of a rendered table's row: `owner`, `lo` = the rowid,
      `seq` = 0-based position in the chain, `data` None;
    - everything else: `data` = the raw page image (None for a free leaf page,
      which renders as zeros).
    """

    pgno: int
    kind: PageKind
    owner: str | None
    lo: int | None = None
    hi: int | None = None
    seq: int | None = None
    data: bytes | None = None

    @property
    def raw(self) -> bool:
        """True when the page's bytes are stored (else it is rendered, or a free page)."""
        return self.data is not None

    def without_data(self) -> PageRecord:
        """The record as the page map keeps it in memory: a raw page's bytes are
        replaced by b"" (they live in the page cache, or are read again)."""
        if not self.data:
            return self
        return PageRecord(self.pgno, self.kind, self.owner, self.lo, self.hi, self.seq, b"")


@dataclass
class TableRows:
    """Row changes of one table that has a data table.

    `inserted` and `updated` map rowid -> the SQLite record payload (the full
    payload, overflow included): the emulator knows which rows are new.
    `deleted` are rowids. `replace_all` empties the table (and its overflow
    chains) before the rows are written: every row is then in `inserted`.
    For a WITHOUT ROWID table (a mirror table) the rows are replaced wholesale:
    its first TableRows in a write empties the mirror, later ones (parts of a
    streamed write) append; the keys of `inserted` only give the order.
    """

    table: str
    inserted: dict[int, bytes] = field(default_factory=dict)
    updated: dict[int, bytes] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    replace_all: bool = False

    def is_empty(self) -> bool:
        return not (self.inserted or self.updated or self.deleted or self.replace_all)

    def row_count(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.deleted)


@dataclass
class SchemaChange:
    """Data-schema DDL of one commit.

    `dropped` and the first element of `renamed` pairs are old names; `created`
    and `altered` pairs' second element carry new names. Applied as: drops,
    renames, creates (a created name whose table still exists is dropped and
    recreated: SQLite names are unique, so the old table is gone), alters
    (old definition, new definition; the table already has its new name).
    `renamed` lists every renamed object that owns pages (indexes too): page
    and chain owners follow the rename.
    """

    created: list[TableDefinition] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    altered: list[tuple[TableDefinition, TableDefinition]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.created or self.dropped or self.renamed or self.altered)


@dataclass
class Changeset:
    """Everything one commit (or one part of a streamed write) changes in the store.

    - `source`: where it comes from (goes to the commit log);
    - `header`: the new 100-byte database header (page 1's first 100 bytes);
    - `page_count`: the new size of the database in pages;
    - `schema_entries`: the full new `sqlite_schema` when it changed, else None;
    - `rows`: table name -> row changes;
    - `chains`: (table, rowid) -> overflow page numbers of that row (an empty
      list removes the chain; deleted rows and replace_all tables lose theirs
      automatically);
    - `pages`: page records to upsert;
    - `removed_pages_from`: delete every page record with pgno >= this
      (the file shrank), applied after the upserts.
    """

    source: CommitSource
    header: bytes
    page_count: int
    schema_entries: list[SchemaEntry] | None = None
    schema: SchemaChange = field(default_factory=SchemaChange)
    rows: dict[str, TableRows] = field(default_factory=dict)
    chains: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    pages: list[PageRecord] = field(default_factory=list)
    removed_pages_from: int | None = None

    def is_empty(self) -> bool:
        """True when applying it would change nothing but the header/page count."""
        return (
            self.schema_entries is None
            and self.schema.is_empty()
            and all(rows.is_empty() for rows in self.rows.values())
            and not self.chains
            and not self.pages
            and self.removed_pages_from is None
        )

    def row_count(self) -> int:
        return sum(rows.row_count() for rows in self.rows.values())
