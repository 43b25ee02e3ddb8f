"""Step 3 of the diff: the row changes of every table whose rows the store keeps.

README Design "The diff", step 4, done cell by cell. For each such table
(not walked whole): the old cells are those on the old images of its leaves
that changed, were freed or were cut off; the new cells those on its changed
leaves. A cell whose bytes did not change holds the same row (same rowid,
same local payload, same first overflow page), and is skipped unless one of
its overflow pages changed; every other new cell is assembled through the new
version. Old cells without a new one are deleted rows. Nothing here asks the
server: old images come from the page cache (or one batched render), so a
commit costs what it changed, never what the table holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain, pairwise
from typing import Protocol

from pgfs.emulator.diff.objects import Identity
from pgfs.emulator.diff.roles import ChangedPages, Role, Roles
from pgfs.emulator.pageset import PageSet
from pgfs.emulator.source import PageSource
from pgfs.emulator.walk import SCHEMA_OWNER
from pgfs.sqlite.btree import CellSpan, PageType, TableLeafCell, local_payload_size, scan_btree_page
from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.overflow import assemble_payload, overflow_page_count
from pgfs.store.changeset import PageKind, PageRecord, TableRows


class OldVersion(PageSource, Protocol):
    """The store's current state as the diff reads it: page images and page map."""

    def records(self, pgnos: Iterable[int]) -> Mapping[int, PageRecord | None]:
        """Page-map entries (None: no record) of these page numbers."""
        ...

    def row(self, table: str, rowid: int) -> tuple[bytes, list[int]] | None:
        """A row's payload and overflow chain as the store holds them (None: no such row)."""
        ...


@dataclass(frozen=True)
class RowChanges:
    """What step 3 found.

    `overflow_roles` are the roles of the overflow pages of every row written
    (they override step 2's); `leaf_ranges` the rowid range of every changed
    leaf of a table kept as rows; `mirrors_touched` the WITHOUT ROWID tables
    one of whose pages changed (their rows are refilled).
    """

    rows: Mapping[str, TableRows]
    chains: Mapping[tuple[str, int], list[int]]
    overflow_roles: Mapping[int, Role]
    leaf_ranges: Mapping[int, tuple[int | None, int | None]]
    mirrors_touched: frozenset[str]
    rows_examined: int


@dataclass
class _Cell:
    """A table-leaf cell as found on a page image."""

    pgno: int
    span: CellSpan
    raw: bytes
    image: bytes

    def leaf_cell(self) -> TableLeafCell:
        local = self.image[self.span.local_start : self.span.local_end]
        return TableLeafCell(
            self.span.rowid or 0, self.span.payload_size, local, self.span.overflow
        )


@dataclass
class _TableWork:
    """What step 3 collects for one table before diffing it."""

    new_leaves: list[int] = field(default_factory=list)
    departed: list[int] = field(default_factory=list)
    overflowed: set[int] = field(default_factory=set)


class _RowDiff:
    def __init__(
        self,
        identity: Identity,
        roles: Roles,
        changed: ChangedPages,
        old: OldVersion,
        new: PageSource,
    ) -> None:
        self.identity = identity
        self.roles = roles
        self.changed = changed
        self.old = old
        self.new = new
        self.usable = identity.usable_size
        self.rows: dict[str, TableRows] = {}
        self.chains: dict[tuple[str, int], list[int]] = {}
        self.overflow_roles: dict[int, Role] = {}
        self.leaf_ranges: dict[int, tuple[int | None, int | None]] = {}
        self.mirrors: set[str] = set()
        self.examined = 0

    def collect(self) -> dict[str, _TableWork]:
        identity = self.identity
        work: dict[str, _TableWork] = defaultdict(_TableWork)
        for pgno, role in self.roles.of.items():
            obj = identity.new_objects.get(role.owner or "")
            if obj is None:
                continue
            if obj.mirrored:
                self.mirrors.add(obj.name)
                continue
            if not obj.rendered or obj.name in identity.full_walk or pgno not in self.changed:
                continue
            if role.kind == PageKind.TABLE_LEAF:
                work[obj.name].new_leaves.append(pgno)
            elif role.kind == PageKind.OVERFLOW and role.rowid is not None:
                work[obj.name].overflowed.add(role.rowid)
        gone = PageSet(chain(self.changed, self.roles.freed, identity.truncated))
        old_to_new = identity.old_to_new
        for pgno, record in self.old.records(gone).items():
            if record is None or record.owner is None:
                continue
            owner = old_to_new.get(record.owner)
            if owner is None or owner == SCHEMA_OWNER:
                continue
            obj = identity.new_objects[owner]
            if obj.mirrored:
                self.mirrors.add(owner)
            elif (
                record.kind == PageKind.TABLE_LEAF
                and record.data is None
                and obj.rendered
                and owner not in identity.full_walk
            ):
                work[owner].departed.append(pgno)
        return work

    def run(self) -> RowChanges:
        for name, work in sorted(self.collect().items()):
            self.table(name, work)
        return RowChanges(
            self.rows,
            self.chains,
            self.overflow_roles,
            self.leaf_ranges,
            frozenset(self.mirrors),
            self.examined,
        )

    def cells_of(self, pgno: int, image: bytes) -> list[_Cell]:
        scan = scan_btree_page(image, pgno, self.usable)
        if scan.page_type != PageType.TABLE_LEAF:
            raise CorruptPageError(pgno, "a table leaf is not a table leaf page")
        return [_Cell(pgno, span, image[span.start : span.end], image) for span in scan.cells]

    def table(self, name: str, work: _TableWork) -> None:
        old_name = self.identity.identity[name]
        if old_name is None:
            return
        old_images = self.old.read_many(work.departed) if work.departed else {}
        old_cells: dict[int, _Cell] = {}
        for pgno in work.departed:
            for cell in self.cells_of(pgno, old_images[pgno]):
                old_cells[cell.span.rowid or 0] = cell
        new_cells: dict[int, _Cell] = {}
        for pgno in sorted(work.new_leaves):
            cells = self.cells_of(pgno, self.changed.image(pgno))
            rowids = [c.span.rowid or 0 for c in cells]
            if any(a >= b for a, b in pairwise(rowids)):
                raise CorruptPageError(pgno, "rowids out of order")
            self.leaf_ranges[pgno] = (rowids[0], rowids[-1]) if rowids else (None, None)
            for rowid, cell in zip(rowids, cells, strict=True):
                if rowid in new_cells:
                    raise CorruptPageError(pgno, f"rowid {rowid} is also on another leaf")
                new_cells[rowid] = cell
        rows = TableRows(name)
        for rowid, cell in new_cells.items():
            before = old_cells.get(rowid)
            if before is not None and before.raw == cell.raw and rowid not in work.overflowed:
                continue
            self.examined += 1
            self.write_row(rows, rowid, cell.leaf_cell(), cell.pgno, before)
        for rowid in sorted(work.overflowed - set(new_cells) - set(old_cells)):
            self.recompute(rows, old_name, rowid)
        rows.deleted = set(old_cells) - set(new_cells)
        self.examined += len(rows.deleted)
        if not rows.is_empty():
            self.rows[name] = rows

    def write_row(
        self, rows: TableRows, rowid: int, cell: TableLeafCell, pgno: int, before: _Cell | None
    ) -> None:
        payload, chain = assemble_payload(
            cell, self.new.read, self.usable, PageType.TABLE_LEAF, pgno
        )
        if before is None:
            rows.inserted[rowid] = payload
        elif not self.same_payload(before, payload):
            rows.updated[rowid] = payload
        old_length = 0
        if before is not None and before.span.overflow is not None:
            old_length = overflow_page_count(
                before.span.payload_size, self.usable, PageType.TABLE_LEAF
            )
        self.place_chain(rows.table, rowid, chain, old_length)

    def same_payload(self, before: _Cell, payload: bytes) -> bool:
        """Whether the old row's payload equals `payload` (only worth asking when the
        sizes match: then the old chain is read from the old version)."""
        if before.span.payload_size != len(payload):
            return False
        if before.span.overflow is None:
            return before.image[before.span.local_start : before.span.local_end] == payload
        old_payload, _ = assemble_payload(
            before.leaf_cell(), self.old.read, self.usable, PageType.TABLE_LEAF, before.pgno
        )
        return old_payload == payload

    def recompute(self, rows: TableRows, old_name: str, rowid: int) -> None:
        """A row whose overflow pages changed while its leaf did not (a chain page moved
        by auto-vacuum): its cell is rebuilt from what the store holds."""
        found = self.old.row(old_name, rowid)
        if found is None:
            return
        old_payload, old_chain = found
        if not old_chain:
            return
        n_local = local_payload_size(len(old_payload), self.usable, PageType.TABLE_LEAF)
        cell = TableLeafCell(rowid, len(old_payload), old_payload[:n_local], old_chain[0])
        payload, chain = assemble_payload(
            cell, self.new.read, self.usable, PageType.TABLE_LEAF, old_chain[0]
        )
        self.examined += 1
        if payload != old_payload:
            rows.updated[rowid] = payload
        self.place_chain(rows.table, rowid, chain, len(old_chain))

    def place_chain(self, table: str, rowid: int, chain: list[int], old_length: int) -> None:
        """Record a written row's chain, and the pages of it whose page-map entry changes.

        `old_length` is the row's old chain length (0: no old row or no overflow).
        A long row whose one overflow page changed keeps its other pages' entries
        and its chain row: the commit costs the pages it changed.
        """
        if not chain:
            if old_length:
                self.chains[(table, rowid)] = []
            return
        old_name = self.identity.identity.get(table) or table
        entries = self.old.records(chain) if old_length else {}
        in_place = [_same_entry(entries.get(p), old_name, rowid, s) for s, p in enumerate(chain)]
        if old_length != len(chain) or not all(in_place):
            self.chains[(table, rowid)] = chain
        for seq, pgno in enumerate(chain):
            if pgno in self.changed or not in_place[seq]:
                self.overflow_roles[pgno] = Role(PageKind.OVERFLOW, table, rowid, seq, keep=False)


def _same_entry(record: PageRecord | None, owner: str, rowid: int, seq: int) -> bool:
    return (
        record is not None
        and record.kind == PageKind.OVERFLOW
        and record.owner == owner
        and record.lo == rowid
        and record.seq == seq
    )


def diff_rows(
    identity: Identity, roles: Roles, changed: ChangedPages, old: OldVersion, new: PageSource
) -> RowChanges:
    """Step 3: row changes of the tables kept as rows that are not walked whole."""
    return _RowDiff(identity, roles, changed, old, new).run()
