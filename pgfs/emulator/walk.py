"""Walking b-trees page by page: the one walker the diff and the import share.

`iter_tree` visits every page of a b-tree from its root; `walk_table`
turns a rowid table's tree into what the store keeps of it (raw interior
pages; leaves as rowid ranges; rows with their overflow chains), and
`walk_index_tree` an index-shaped tree (indexes, WITHOUT ROWID tables,
`sqlite_schema` is a table tree) into raw pages and cell payloads. The rule
that turns a leaf into its page record lives here, once: `leaf_record`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pgfs.emulator.source import PageSource
from pgfs.sqlite.btree import (
    BTreePage,
    BTreeScan,
    CellSpan,
    PageType,
    parse_btree_page,
    scan_btree_page,
)
from pgfs.sqlite.errors import CorruptPageError, FormatError
from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.overflow import follow_chain
from pgfs.sqlite.record import decode_record
from pgfs.sqlite.schema import SchemaEntry
from pgfs.store.changeset import PageKind, PageRecord

SCHEMA_OWNER = "sqlite_schema"
BTREE_KINDS = {
    PageType.TABLE_LEAF: PageKind.TABLE_LEAF,
    PageType.TABLE_INTERIOR: PageKind.TABLE_INTERIOR,
    PageType.INDEX_LEAF: PageKind.INDEX_LEAF,
    PageType.INDEX_INTERIOR: PageKind.INDEX_INTERIOR,
}

Claim = Callable[[int], None]
Read = Callable[[int], bytes]


def btree_kind(page_type: PageType) -> PageKind:
    return BTREE_KINDS[PageType(page_type)]


def iter_tree(
    source: PageSource,
    root: int,
    usable_size: int,
    *,
    table: bool,
    batch: int = 128,
    claim: Claim | None = None,
    validate: bool = False,
    spilling_only: bool = False,
) -> Iterator[tuple[int, BTreeScan | BTreePage, bytes]]:
    """Every page of the b-tree at `root`: (pgno, its scan, image).

    Level order, children in key order: all leaves of a SQLite b-tree are at
    the same depth, so the leaves come out in key order. Pages are read in
    batches of `batch` (one query when the source renders from the store).
    `claim(pgno)` is called for every child before it is read (the importer
    uses it to find pages used twice); without it a local set does that.
    Pages are scanned (`scan_btree_page`: cell boundaries, no copies) unless
    `validate` asks for every check of `parse_btree_page` (a damage report);
    `spilling_only` leaves out leaf cells that do not spill.
    Raises CorruptPageError for a page of the wrong kind, a child out of range
    or reached twice.
    """
    if claim is None:
        seen = {root}

        def claim(pgno: int) -> None:
            if pgno in seen:
                raise CorruptPageError(pgno, "page is reached twice in one b-tree")
            seen.add(pgno)

    def read(image: bytes, pgno: int, usable: int) -> BTreeScan | BTreePage:
        if validate:
            return parse_btree_page(image, pgno, usable)
        return scan_btree_page(image, pgno, usable, spilling_only=spilling_only)

    level = [root]
    family = "table" if table else "index"
    while level:
        following: list[int] = []
        for start in range(0, len(level), batch):
            chunk = level[start : start + batch]
            images = source.read_many(chunk)
            for pgno in chunk:
                image = images[pgno]
                page = read(image, pgno, usable_size)
                if page.is_table != table:
                    raise CorruptPageError(
                        pgno, f"{btree_kind(page.page_type)} page in a {family} b-tree"
                    )
                for child in page.children():
                    if not 1 <= child <= source.page_count:
                        raise CorruptPageError(pgno, f"child page {child} out of range")
                    claim(child)
                    following.append(child)
                yield pgno, page, image
        level = following


def span_payload(
    span: CellSpan, image: bytes, read: Read, usable_size: int, pgno: int
) -> tuple[bytes, list[int]]:
    """The full payload of a scanned cell, and its overflow chain."""
    local = image[span.local_start : span.local_end]
    if span.overflow is None:
        return local, []
    return follow_chain(local, span.payload_size, span.overflow, read, usable_size, pgno)


@dataclass(frozen=True)
class TableRow:
    """A row as a table leaf holds it: rowid, full record payload, overflow chain."""

    rowid: int
    payload: bytes
    chain: list[int]


@dataclass(frozen=True)
class WalkedPage:
    """One page of a walked tree.

    A leaf of a rowid table carries its rows (`image` None: it is rendered);
    every other page carries its image (stored raw) and, on index-shaped
    trees, the payloads of its cells with their chains.
    """

    pgno: int
    kind: PageKind
    image: bytes | None
    rows: list[TableRow]
    payloads: list[tuple[bytes, list[int]]]

    @property
    def is_leaf(self) -> bool:
        return self.kind in (PageKind.TABLE_LEAF, PageKind.INDEX_LEAF)


def leaf_record(pgno: int, owner: str, rowids: list[int]) -> PageRecord:
    """The page record of a rendered table leaf: exactly the owner's rows in [lo, hi]."""
    if not rowids:
        return PageRecord(pgno, PageKind.TABLE_LEAF, owner)
    return PageRecord(pgno, PageKind.TABLE_LEAF, owner, rowids[0], rowids[-1])


def overflow_records(owner: str, rowid: int, chain: list[int]) -> list[PageRecord]:
    """The page records of a rendered row's overflow pages."""
    return [
        PageRecord(pgno, PageKind.OVERFLOW, owner, rowid, None, seq)
        for seq, pgno in enumerate(chain)
    ]


def walk_table(
    source: PageSource,
    root: int,
    usable_size: int,
    *,
    claim: Claim | None = None,
    read_chain: Read | None = None,
    batch: int = 128,
) -> Iterator[WalkedPage]:
    """A rowid table's tree: interior pages raw, leaves with their rows.

    `read_chain(pgno)` reads overflow pages (the importer claims them as it
    reads); by default `source.read`.
    """
    read = read_chain or source.read
    for pgno, page, image in iter_tree(
        source, root, usable_size, table=True, batch=batch, claim=claim
    ):
        if not page.is_leaf:
            yield WalkedPage(pgno, btree_kind(page.page_type), image, [], [])
            continue
        rows = []
        for span in page.cells:
            payload, chain = span_payload(span, image, read, usable_size, pgno)
            rows.append(TableRow(span.rowid or 0, payload, chain))
        yield WalkedPage(pgno, PageKind.TABLE_LEAF, None, rows, [])


def walk_index_tree(
    source: PageSource,
    root: int,
    usable_size: int,
    *,
    table: bool = False,
    claim: Claim | None = None,
    read_chain: Read | None = None,
    batch: int = 128,
    with_payloads: bool = True,
) -> Iterator[WalkedPage]:
    """A tree whose pages are all stored raw: every page with its image, and the
    payloads (with chains) of its cells — only those that spill unless
    `with_payloads` (a WITHOUT ROWID table's rows are refilled from all of them)."""
    read = read_chain or source.read
    for pgno, page, image in iter_tree(
        source,
        root,
        usable_size,
        table=table,
        batch=batch,
        claim=claim,
        spilling_only=not with_payloads,
    ):
        payloads = []
        interior_table = page.page_type == PageType.TABLE_INTERIOR
        for span in [] if interior_table else page.cells:
            if with_payloads or span.overflow is not None:
                payloads.append(span_payload(span, image, read, usable_size, pgno))
        yield WalkedPage(pgno, btree_kind(page.page_type), image, [], payloads)


def read_schema(source: PageSource, usable_size: int, encoding: TextEncoding) -> list[SchemaEntry]:
    """The rows of `sqlite_schema` (the table b-tree at page 1), in rowid order."""
    entries = []
    for page in walk_table(source, 1, usable_size):
        for row in page.rows:
            try:
                entries.append(SchemaEntry.from_values(decode_record(row.payload, encoding)))
            except FormatError as exc:
                raise CorruptPageError(page.pgno, f"sqlite_schema row: {exc}") from exc
    return entries
