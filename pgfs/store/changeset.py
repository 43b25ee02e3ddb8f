"""The store's input: everything one SQLite commit changed, as built by the emulator.

A `Changeset` is applied by `Store.apply` (or `StoreTransaction.apply`) in one
PostgreSQL transaction. Its parts are applied in this order: schema changes
(drops, renames, creates, alters), table rows (replace_all truncation, deletes,
upserts), overflow chains, page records, meta (header, page count, schema
mirror), then the commit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgfs.sqlite.schema import SchemaEntry, TableDefinition

PAGE_KINDS = frozenset(
    {
        "table_leaf",
        "table_interior",
        "index_leaf",
        "index_interior",
        "overflow",
        "freelist_trunk",
        "free",
        "ptrmap",
    }
)
"""Allowed values of `PageRecord.kind` (README Design, "What PostgreSQL holds")."""


@dataclass
class PageRecord:
    """One row of `pgfs.pages`: what page `pgno` is and, for raw pages, its bytes.

    - table leaf of a rendered table: `owner`, `lo`/`hi` = the rowid range the
      page holds exactly (both None for an empty leaf), `data` None;
    - overflow page of a rendered table's row: `owner`, `lo` = the rowid,
      `seq` = 0-based position in the chain, `data` None;
    - everything else: `data` = the raw page image (None for a free leaf page,
      which renders as zeros).
    """

    pgno: int
    kind: str
    owner: str | None
    lo: int | None = None
    hi: int | None = None
    seq: int | None = None
    data: bytes | None = None


@dataclass
class TableRows:
    """Row changes of one table that has a data-schema table.

    `upserts` maps rowid -> SQLite record payload (the full payload, overflow
    included); `deletes` are rowids; `replace_all` empties the table (and its
    overflow chains) before the upserts. For a WITHOUT ROWID table (a mirror
    table) the rows are replaced wholesale: its first TableRows in a
    transaction empties the mirror, later ones (parts of a streamed import)
    append; the keys of `upserts` only give the order, `deletes` is ignored.
    """

    table: str
    upserts: dict[int, bytes] = field(default_factory=dict)
    deletes: set[int] = field(default_factory=set)
    replace_all: bool = False

    def is_empty(self) -> bool:
        return not (self.upserts or self.deletes or self.replace_all)


@dataclass
class SchemaChange:
    """Data-schema DDL of one commit.

    `dropped` and the first element of `renamed` pairs are old names; `created`
    and `altered` pairs' second element carry new names. Applied as: drops,
    renames, creates (a created name whose table still exists is dropped and
    recreated: SQLite names are unique, so the old table is gone), alters
    (old definition, new definition; the table already has its new name).
    """

    created: list[TableDefinition] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    altered: list[tuple[TableDefinition, TableDefinition]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.created or self.dropped or self.renamed or self.altered)


@dataclass
class Changeset:
    """Everything one commit (or one part of an import) changes in PostgreSQL.

    - `source`: "import", "journal", "wal", ... (goes to the commit log);
    - `header`: the new 100-byte database header (page 1's first 100 bytes);
    - `page_count`: the new size of the database in pages;
    - `schema_entries`: the full new `sqlite_schema` when it changed, else None;
    - `rows`: table name -> row changes;
    - `chains`: (table, rowid) -> overflow page numbers of that row (set; an
      empty list removes the chain; deleted rows and replace_all tables lose
      theirs automatically);
    - `pages`: page records to upsert;
    - `removed_pages_from`: delete every page record with pgno >= this
      (the file shrank), applied after the upserts.
    """

    source: str
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
