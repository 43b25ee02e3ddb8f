"""The diff: the pages of one SQLite commit -> a Changeset (README Design, "The diff").

Everything is page images. The old version of a page is the store's rendering
of it (`base`); the new version is the commit's image, else the old one
(`OverlayPageSource`). The steps, as in the README:

1. the header from the new page 1; the new `sqlite_schema`, read through the
   overlay when any of its pages changed;
2. the identity of every table and index (kept, renamed, rebuilt, created,
   dropped) from root pages and names;
3. the new role of every changed page: roots, freelist pages, pointer-map
   pages, then children and overflow chains of changed b-tree pages (passed
   down until nothing changes); whatever is left keeps its old owner with the
   kind its new image shows, or is stored raw;
4. the rows of every rendered table from its changed and departed leaves;
5. rebuilt and created tables (and every table at import) walked whole;
6. the Changeset.

A commit reads only its changed pages, the records of those pages and the rows
on them: it costs O(changed pages), never O(database). The streaming import
in `transfer.py` uses the same building blocks (`iter_tree`, `leaf_rows`).
"""

from __future__ import annotations

import logging
import re
import struct
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING

from pgfs.emulator.source import OverlayPageSource, PageSource, lock_byte_page, read_many
from pgfs.sqlite.btree import (
    BTreePage,
    IndexInteriorCell,
    IndexLeafCell,
    PageType,
    TableLeafCell,
    local_payload_size,
    parse_btree_page,
)
from pgfs.sqlite.errors import CorruptPageError, FormatError
from pgfs.sqlite.freelist import decode_freelist_trunk
from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader, TextEncoding
from pgfs.sqlite.overflow import assemble_payload, encode_overflow_page, split_payload
from pgfs.sqlite.ptrmap import is_ptrmap_page
from pgfs.sqlite.record import decode_record
from pgfs.sqlite.schema import SchemaEntry, TableDefinition, parse_create_table
from pgfs.store.changeset import Changeset, PageRecord, SchemaChange, TableRows
from pgfs.store.ddl import has_data_table

if TYPE_CHECKING:
    from pgfs.store.store import Store, StoreState

log = logging.getLogger(__name__)

SCHEMA_OWNER = "sqlite_schema"
BTREE_KINDS = {
    PageType.TABLE_LEAF: "table_leaf",
    PageType.TABLE_INTERIOR: "table_interior",
    PageType.INDEX_LEAF: "index_leaf",
    PageType.INDEX_INTERIOR: "index_interior",
}
BTREE_KIND_NAMES = frozenset(BTREE_KINDS.values())
_U32 = struct.Struct(">I")


# ---------------------------------------------------------------- schema objects


@dataclass(frozen=True)
class SchemaObject:
    """A table or index with pages: its schema row and, for tables with a
    data-schema table, the parsed definition.

    `rendered`: a rowid table with a data table (leaves and overflow pages are
    rendered from rows); `mirrored`: a WITHOUT ROWID table with a data table
    (raw pages, the data table refilled when a page changes); `table_tree`:
    the object is a table b-tree (rowid tables) rather than an index b-tree
    (indexes and WITHOUT ROWID tables).
    """

    entry: SchemaEntry
    definition: TableDefinition | None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def rootpage(self) -> int:
        return self.entry.rootpage

    @property
    def rendered(self) -> bool:
        return self.definition is not None and not self.definition.without_rowid

    @property
    def mirrored(self) -> bool:
        return self.definition is not None and self.definition.without_rowid

    @property
    def table_tree(self) -> bool:
        if self.entry.type != "table":
            return False
        if self.definition is None:
            return not declares_without_rowid(self.entry.sql)
        return not self.definition.without_rowid


def schema_objects(
    entries: Iterable[SchemaEntry],
    known: dict[str, TableDefinition] | None = None,
    known_sql: dict[str, str | None] | None = None,
) -> dict[str, SchemaObject]:
    """Tables and indexes that own pages, by name.

    Definitions are parsed from the CREATE text unless `known` already holds
    one for the same name and `known_sql` says the text is the same.
    """
    known = known or {}
    known_sql = known_sql or {}
    out: dict[str, SchemaObject] = {}
    for entry in entries:
        if entry.type not in ("table", "index") or entry.rootpage <= 0:
            continue
        definition = None
        if entry.type == "table" and has_data_table(entry):
            cached = known.get(entry.name)
            if cached is not None and known_sql.get(entry.name) == entry.sql:
                definition = cached
            else:
                try:
                    definition = parse_create_table(entry.sql or "")
                except FormatError as exc:  # kept raw, as the store does
                    log.warning("table %s stays raw pages: %s", entry.name, exc)
            if definition is not None and definition.name != entry.name:
                definition = replace(definition, name=entry.name)
        out[entry.name] = SchemaObject(entry, definition)
    return out


_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b[\s,A-Z]*;?\s*$", re.IGNORECASE)


def declares_without_rowid(sql: str | None) -> bool:
    """Whether a CREATE TABLE text ends in WITHOUT ROWID (table options, lang_createtable)."""
    return bool(sql and _WITHOUT_ROWID.search(sql))


# ---------------------------------------------------------------- tree walking


def btree_kind(page: BTreePage) -> str:
    return BTREE_KINDS[PageType(page.page_type)]


def iter_tree(
    source: PageSource,
    root: int,
    usable_size: int,
    *,
    table: bool,
    batch: int = 128,
    claim: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, BTreePage, bytes]]:
    """Every page of the b-tree at `root`: (pgno, parsed page, image).

    Level order, children in key order: all leaves of a SQLite b-tree are at
    the same depth, so the leaves come out in key order. Pages are read in
    batches of `batch` (one query when the source renders from the store).
    `claim(pgno)` is called for every child before it is read (the importer
    uses it to find pages used twice); without it a local set does that.
    Raises CorruptPageError for a page of the wrong kind, a child out of range
    or reached twice.
    """
    if claim is None:
        seen = {root}

        def claim(pgno: int) -> None:
            if pgno in seen:
                raise CorruptPageError(pgno, "page is reached twice in one b-tree")
            seen.add(pgno)

    level = [root]
    family = "table" if table else "index"
    while level:
        following: list[int] = []
        for start in range(0, len(level), batch):
            chunk = level[start : start + batch]
            images = read_many(source, chunk)
            for pgno in chunk:
                image = images[pgno]
                page = parse_btree_page(image, pgno, usable_size)
                if page.is_table != table:
                    raise CorruptPageError(pgno, f"{btree_kind(page)} page in a {family} b-tree")
                for child in page.children():
                    if not 1 <= child <= source.page_count:
                        raise CorruptPageError(pgno, f"child page {child} out of range")
                    claim(child)
                    following.append(child)
                yield pgno, page, image
        level = following


def cell_payload(
    cell, read: Callable[[int], bytes], usable_size: int, page: BTreePage
) -> tuple[bytes, list[int]]:
    """The full payload of a cell and its overflow chain (fileformat2 §1.6)."""
    return assemble_payload(cell, read, usable_size, PageType(page.page_type), page.pgno)


def index_cells(page: BTreePage) -> list:
    """Cells that carry a payload on an index b-tree page (leaf and interior)."""
    return [c for c in page.cells if isinstance(c, IndexLeafCell | IndexInteriorCell)]


def read_schema(source: PageSource, usable_size: int, encoding: TextEncoding) -> list[SchemaEntry]:
    """The rows of `sqlite_schema` (the table b-tree at page 1), in rowid order."""
    entries = []
    for _pgno, page, _image in iter_tree(source, 1, usable_size, table=True):
        for cell in page.cells:
            if isinstance(cell, TableLeafCell):
                payload, _ = cell_payload(cell, source.read, usable_size, page)
                try:
                    entries.append(SchemaEntry.from_values(decode_record(payload, encoding)))
                except FormatError as exc:
                    raise CorruptPageError(page.pgno, f"sqlite_schema row: {exc}") from exc
    return entries


# ---------------------------------------------------------------- roles


@dataclass(frozen=True)
class Role:
    """What a page is in the new version.

    `rowid`/`seq` place an overflow page in its row's chain (`rowid` None on
    index b-trees); `keep` stores the image even for a kind that is normally
    data-less (an unknown page stored as raw "free").
    """

    kind: str
    owner: str | None
    rowid: int | None = None
    seq: int | None = None
    keep: bool = True


FREE_LEAF = Role("free", None, keep=False)
UNKNOWN = Role("free", None, keep=True)


@dataclass
class DiffStats:
    """What one diff looked at (tests check that a commit is O(changed pages))."""

    changed_pages: int = 0
    old_records: int = 0
    rows_examined: int = 0
    full_walks: list[str] = field(default_factory=list)


class _Diff:
    """One run of the diff algorithm; see the module docstring."""

    def __init__(
        self,
        state: StoreState,
        store: Store,
        base: PageSource,
        changed: dict[int, bytes],
        page_count: int,
        source: str,
    ) -> None:
        self.state = state
        self.store = store
        self.base = base
        self.page_count = page_count
        self.source = source
        self.changed = {p: bytes(img) for p, img in changed.items() if 1 <= p <= page_count}
        if page_count < 1:
            raise ValueError("a database has at least one page")
        if state.header is None and 1 not in self.changed:
            raise ValueError("the first commit to an empty store must write page 1")
        self.new = OverlayPageSource(base, self.changed, page_count)
        self.header_bytes = self.new.read(1)[:HEADER_SIZE]
        self.header = DatabaseHeader.parse(self.header_bytes)
        self.page_size = self.header.page_size
        self.usable = self.header.usable_size
        for pgno, image in self.changed.items():
            if len(image) != self.page_size:
                raise ValueError(f"page {pgno}: {len(image)} bytes, page size {self.page_size}")
        self.old_header = DatabaseHeader.parse(state.header) if state.header else None
        # No usable old version: an empty store, or a new page layout (VACUUM with a
        # new page size or reserved space): every page must be in the commit.
        self.fresh = self.old_header is None or (
            (self.old_header.page_size, self.old_header.usable_size)
            != (self.page_size, self.usable)
        )
        if self.fresh:
            lock = lock_byte_page(self.page_size)
            missing = [p for p in range(1, page_count + 1) if p not in self.changed and p != lock]
            if missing and state.header is not None:
                raise ValueError(f"page layout changed but page {missing[0]} was not written")
        self.old_page_count = state.page_count if state.header else 0
        self.stats = DiffStats(changed_pages=len(self.changed))
        self._old: dict[int, PageRecord | None] = {}
        self._parsed: dict[int, BTreePage | None] = {}
        self.roles: dict[int, Role] = {}
        self.leaf_ranges: dict[int, tuple[int | None, int | None]] = {}
        self.rows: dict[str, TableRows] = {}
        self.chains: dict[tuple[str, int], list[int]] = {}
        self.freed: set[int] = set()
        self.truncated: list[int] = list(range(page_count + 1, self.old_page_count + 1))
        self.row_pages: set[int] = set()  # rendered overflow pages placed by the row step

    # -- old records ---------------------------------------------------------------------

    def fetch_old(self, pgnos: Iterable[int]) -> None:
        need = [p for p in pgnos if p not in self._old]
        if not need:
            return
        if self.fresh:
            found: dict[int, PageRecord] = {}
        else:
            found = self.store.page_records(need)
            self.stats.old_records += len(need)
        for pgno in need:
            self._old[pgno] = found.get(pgno)

    def old(self, pgno: int) -> PageRecord | None:
        if pgno not in self._old:
            self.fetch_old((pgno,))
        return self._old[pgno]

    # -- step 1: header and schema -------------------------------------------------------

    def schema_changed(self) -> bool:
        if self.fresh:
            return True
        assert self.old_header is not None
        if self.old_header.schema_cookie != self.header.schema_cookie:
            return True
        for pgno in self.changed:
            record = self.old(pgno)
            if pgno != 1 and record is not None and record.owner == SCHEMA_OWNER:
                return True
        if 1 in self.changed:
            return self.changed[1][HEADER_SIZE:] != self.base.read(1)[HEADER_SIZE:]
        return False

    # -- step 2: identity ----------------------------------------------------------------

    def identify(self) -> None:
        self.fetch_old(list(self.changed) + self.truncated)
        self.new_schema_changed = self.schema_changed()
        if self.new_schema_changed:
            self.entries = read_schema(self.new, self.usable, self.header.text_encoding)
        else:
            self.entries = list(self.state.entries)
        old_sql = {e.name: e.sql for e in self.state.entries}
        self.old_objects = schema_objects(self.state.entries, self.state.tables, old_sql)
        self.new_objects = schema_objects(self.entries, self.state.tables, old_sql)
        self.identity: dict[str, str | None] = {}
        self.rebuilt: set[str] = set()
        claimed: set[str] = set()
        old_by_root = {o.rootpage: o for o in self.old_objects.values()}
        if not self.fresh:
            # Same root page number: the same b-tree, renamed or not — when the page
            # is unchanged (README step 2), or, without auto-vacuum (where roots never
            # move), when the old object of that root is gone by name and the new
            # name is new: a rename plus other changes in one transaction. With
            # auto-vacuum a DROP moves another table's root into the freed slot.
            stable_roots = not (self.header.auto_vacuum or self.old_header.auto_vacuum)
            for name, obj in self.new_objects.items():
                old = old_by_root.get(obj.rootpage)
                if (
                    old is not None
                    and old.entry.type == obj.entry.type
                    and old.name not in claimed
                    and (
                        obj.rootpage not in self.changed
                        or old.name == name
                        or (
                            stable_roots
                            and old.name not in self.new_objects
                            and name not in self.old_objects
                        )
                    )
                ):
                    self.identity[name] = old.name
                    claimed.add(old.name)
        for name, obj in self.new_objects.items():
            if name in self.identity:
                continue
            old = self.old_objects.get(name)
            if old is not None and name not in claimed and old.entry.type == obj.entry.type:
                self.identity[name] = name
                claimed.add(name)
                if self.fresh or old.rootpage != obj.rootpage:
                    self.rebuilt.add(name)
            else:
                self.identity[name] = None
        for name, old_name in self.identity.items():
            if old_name is None:
                continue
            old, new = self.old_objects[old_name], self.new_objects[name]
            kind_changed = (old.rendered, old.mirrored) != (new.rendered, new.mirrored)
            if kind_changed or (
                new.mirrored and _definition_changed(old.definition, new.definition)
            ):
                self.rebuilt.add(name)
        self.old_to_new = {old: new for new, old in self.identity.items() if old is not None}
        self.old_to_new[SCHEMA_OWNER] = SCHEMA_OWNER
        self.dropped_objects = [n for n in self.old_objects if n not in claimed]
        # Tables walked whole: created or rebuilt tables with a data table.
        self.full_walk = {
            name
            for name, obj in self.new_objects.items()
            if obj.definition is not None and (self.identity[name] is None or name in self.rebuilt)
        }

    def schema_change(self) -> SchemaChange:
        """DDL for the data schema. `renamed` lists every renamed object with pages
        (indexes too): the store renames data tables and page/chain owners."""
        change = SchemaChange()
        for name, old_name in self.identity.items():
            if old_name is not None and old_name != name:
                change.renamed.append((old_name, name))
        for name, obj in self.new_objects.items():
            if obj.definition is None:
                continue
            old_name = self.identity[name]
            old = self.old_objects.get(old_name) if old_name else None
            if old is None or old.definition is None:
                change.created.append(obj.definition)
                continue
            if _definition_changed(old.definition, obj.definition):
                if name in self.rebuilt:
                    change.created.append(obj.definition)
                else:
                    change.altered.append((old.definition, obj.definition))
        for name in self.dropped_objects:
            if self.old_objects[name].definition is not None:
                change.dropped.append(name)
        for name, old_name in self.identity.items():
            old = self.old_objects.get(old_name) if old_name else None
            if (
                old is not None
                and old.definition is not None
                and self.new_objects[name].definition is None
            ):
                change.dropped.append(old_name)
        return change

    # -- step 3: roles -------------------------------------------------------------------

    def parsed(self, pgno: int) -> BTreePage | None:
        """The changed page `pgno` parsed as a b-tree page, None when it is not one."""
        if pgno not in self._parsed:
            try:
                self._parsed[pgno] = parse_btree_page(self.changed[pgno], pgno, self.usable)
            except CorruptPageError:
                self._parsed[pgno] = None
        return self._parsed[pgno]

    def table_tree(self, owner: str) -> bool:
        if owner == SCHEMA_OWNER:
            return True
        return self.new_objects[owner].table_tree

    def btree_role(self, pgno: int, owner: str, *, strict: bool) -> Role | None:
        """The role of changed page `pgno` as a b-tree page of `owner`."""
        page = self.parsed(pgno)
        table = self.table_tree(owner)
        if page is None or page.is_table != table:
            if not strict:
                return None
            if page is None:
                parse_btree_page(self.changed[pgno], pgno, self.usable)  # raises the reason
            family = "table" if table else "index"
            raise CorruptPageError(pgno, f"{btree_kind(page)} page in the {family} b-tree {owner}")
        return Role(btree_kind(page), owner)

    def assign_roles(self) -> None:
        """Step 3: the new role of every changed page.

        Strong roles first: roots, pointer-map pages and freelist pages, then
        everything they reach through changed pages (children, overflow chains).
        Then weak roles: the remaining changed pages keep their old owner with
        the kind their image shows (`provisional`), and pass it on to the
        changed pages they point to, starting from those no other page points
        to. A claim from a parent overrides a page's own provisional role.
        Linear in the number of changed pages: each page is processed once.
        """
        fixed: dict[int, Role] = {}
        if 1 in self.changed:
            fixed[1] = self.btree_role(1, SCHEMA_OWNER, strict=True)
        for name, obj in self.new_objects.items():
            if obj.rootpage in self.changed:
                fixed[obj.rootpage] = self.btree_role(obj.rootpage, name, strict=True)
        if self.header.auto_vacuum:
            for pgno in self.changed:
                if pgno > 1 and is_ptrmap_page(pgno, self.usable):
                    fixed[pgno] = Role("ptrmap", None)
        self.walk_freelist(fixed)
        strong = dict(fixed)
        self._propagate(deque(fixed), strong, strong, strict=True)
        provisional = self.provisional(strong)
        targets = {
            child
            for pgno, role in provisional.items()
            for child, _ in self.claims(pgno, role, False)
        }
        weak: dict[int, Role] = {}
        tops = [p for p in sorted(provisional) if p not in targets]
        rest = [p for p in sorted(provisional) if p in targets]
        roles = {**provisional, **strong}
        done: set[int] = set()
        self._propagate(deque(tops), roles, weak, strict=False, done=done, protected=strong)
        for pgno in rest:  # pages only on loops of weak claims
            if pgno not in done:
                self._propagate(
                    deque([pgno]), roles, weak, strict=False, done=done, protected=strong
                )
        for pgno in self.changed:
            self.roles[pgno] = roles.get(pgno, UNKNOWN)

    def _propagate(
        self,
        queue: deque[int],
        roles: dict[int, Role],
        claimed: dict[int, Role],
        *,
        strict: bool,
        done: set[int] | None = None,
        protected: dict[int, Role] | None = None,
    ) -> None:
        """Pass roles down from the pages in `queue` to the changed pages they
        point to (breadth first); a page already in `claimed` or `protected`
        keeps its role."""
        done = set() if done is None else done
        protected = protected if protected is not None else {}
        while queue:
            pgno = queue.popleft()
            if pgno in done:
                continue
            done.add(pgno)
            for child, role in self.claims(pgno, roles[pgno], strict):
                if child in protected or (child in claimed and child != pgno):
                    if strict and claimed.get(child, role) != role:
                        log.warning(
                            "page %d is claimed twice (%s, %s)", child, claimed[child], role
                        )
                    continue
                claimed[child] = role
                roles[child] = role
                queue.append(child)

    def provisional(self, fixed: dict[int, Role]) -> dict[int, Role]:
        """Changed pages keep their old owner (renamed if it was), kind from the new image."""
        out: dict[int, Role] = {}
        for pgno in self.changed:
            record = self.old(pgno)
            if pgno in fixed or record is None or record.owner is None:
                continue
            owner = self.old_to_new.get(record.owner)
            if owner is None or owner in self.full_walk:
                continue
            if record.kind in BTREE_KIND_NAMES:
                role = self.btree_role(pgno, owner, strict=False)
                if role is not None:
                    out[pgno] = role
            elif record.kind == "overflow":
                out[pgno] = Role("overflow", owner, record.lo, record.seq)
        return out

    def claims(self, pgno: int, role: Role, strong: bool) -> Iterator[tuple[int, Role]]:
        """Roles that changed page `pgno` in `role` gives to other changed pages."""
        if role.owner is None:
            return
        if role.kind == "overflow":
            following = _U32.unpack_from(self.changed[pgno], 0)[0]
            if following in self.changed and following != pgno:
                seq = (role.seq or 0) + 1
                yield following, Role("overflow", role.owner, role.rowid, seq)
            return
        if role.kind not in BTREE_KIND_NAMES:
            return
        page = self.parsed(pgno)
        if page is None:
            return
        for child in page.children():
            if child in self.changed and child != pgno:
                child_role = self.btree_role(child, role.owner, strict=strong)
                if child_role is not None:
                    yield child, child_role
        for cell in page.cells:
            first = getattr(cell, "overflow", None)
            if first is not None and first in self.changed:
                rowid = cell.rowid if isinstance(cell, TableLeafCell) else None
                yield first, Role("overflow", role.owner, rowid, 0)

    def walk_freelist(self, fixed: dict[int, Role]) -> None:
        """Freelist trunks and newly free leaves (fileformat2 §1.5).

        Walked only when the header's freelist fields or an old trunk changed.
        Only changed trunks can hold newly free leaves: SQLite writes a trunk
        whenever its leaf list changes, and a page it frees goes to the first
        trunk or becomes a (written) trunk itself.
        """
        h, o = self.header, self.old_header
        trigger = (
            self.fresh
            or o is None
            or (h.first_freelist_trunk, h.freelist_count)
            != (o.first_freelist_trunk, o.freelist_count)
            or any(
                (r := self.old(p)) is not None and r.kind == "freelist_trunk" for p in self.changed
            )
        )
        if not trigger:
            return
        trunks: list[tuple[int, list[int]]] = []
        seen: set[int] = set()
        pgno = h.first_freelist_trunk
        while pgno:
            if pgno in seen or pgno > self.page_count:
                raise CorruptPageError(pgno, "freelist trunk chain loops or leaves the file")
            seen.add(pgno)
            trunk = decode_freelist_trunk(self.new.read(pgno), pgno, self.usable)
            trunks.append((pgno, trunk.leaves))
            pgno = trunk.next_trunk
        self.fetch_old(p for p, _ in trunks)
        candidates: set[int] = set()
        for pgno, leaves in trunks:
            record = self.old(pgno)
            if pgno in self.changed or record is None or record.kind != "freelist_trunk":
                fixed[pgno] = Role("freelist_trunk", None)
                if pgno not in self.changed:
                    self.roles[pgno] = fixed[pgno]
            if pgno in self.changed:
                candidates.update(leaves)
        bad = [p for p in candidates if not 1 <= p <= self.page_count or p in seen]
        if bad:
            raise CorruptPageError(bad[0], "freelist leaf out of range or listed twice")
        self.fetch_old(candidates)
        for leaf in candidates:
            record = self.old(leaf)
            if leaf in self.changed or (record is not None and record.kind != "free"):
                fixed[leaf] = FREE_LEAF
                self.freed.add(leaf)
                if leaf not in self.changed:
                    self.roles[leaf] = FREE_LEAF

    # -- step 4: rows --------------------------------------------------------------------

    def departed_records(self) -> list[PageRecord]:
        """Old records of pages that changed, became free or were cut off."""
        pgnos = set(self.changed) | self.freed | set(self.truncated)
        return [r for p in pgnos if (r := self.old(p)) is not None]

    def diff_rows(self) -> None:
        new_leaves: dict[str, list[int]] = defaultdict(list)
        overflow_rows: dict[str, set[int]] = defaultdict(set)
        for pgno, role in self.roles.items():
            if role.owner is None or role.owner not in self.new_objects:
                continue
            obj = self.new_objects[role.owner]
            if not obj.rendered or role.owner in self.full_walk:
                continue
            if role.kind == "table_leaf":
                new_leaves[role.owner].append(pgno)
            elif role.kind == "overflow" and role.rowid is not None:
                overflow_rows[role.owner].add(role.rowid)
        old_leaves: dict[str, list[PageRecord]] = defaultdict(list)
        self.mirrors_touched: set[str] = set()
        for record in self.departed_records():
            owner = self.old_to_new.get(record.owner or "")
            if owner is None or owner == SCHEMA_OWNER:
                continue
            obj = self.new_objects[owner]
            if obj.mirrored:
                self.mirrors_touched.add(owner)
            elif (
                record.kind == "table_leaf"
                and record.data is None
                and obj.rendered
                and owner not in self.full_walk
            ):
                old_leaves[owner].append(record)
        for role in self.roles.values():
            if role.owner in self.new_objects and self.new_objects[role.owner].mirrored:
                self.mirrors_touched.add(role.owner)
        for owner in set(new_leaves) | set(old_leaves) | set(overflow_rows):
            self.table_rows(
                owner, new_leaves.get(owner, []), old_leaves.get(owner, []), overflow_rows[owner]
            )

    def table_rows(
        self, owner: str, leaves: list[int], departed: list[PageRecord], overflowed: set[int]
    ) -> None:
        """Step 4 for one rendered table (see the module docstring)."""
        old_name = self.identity[owner]
        assert old_name is not None
        ranges = sorted({(r.lo, r.hi) for r in departed if r.lo is not None})
        old_rowids = self.store.rowids_in_ranges(old_name, ranges) if ranges else set()
        cells: dict[int, tuple[TableLeafCell, int]] = {}
        for pgno in sorted(leaves):
            page = self.parsed(pgno)
            assert page is not None
            rowids = [c.rowid for c in page.cells]
            if any(a >= b for a, b in pairwise(rowids)):
                raise CorruptPageError(pgno, "rowids out of order")
            self.leaf_ranges[pgno] = (rowids[0], rowids[-1]) if rowids else (None, None)
            for cell in page.cells:
                if cell.rowid in cells:
                    raise CorruptPageError(pgno, f"rowid {cell.rowid} is also on another leaf")
                cells[cell.rowid] = (cell, pgno)
        recompute = overflowed - set(cells) - old_rowids
        wanted = set(cells) | recompute
        self.stats.rows_examined += len(wanted) + len(old_rowids)
        old_payloads = self.store.row_payloads(old_name, wanted) if wanted else {}
        spilling = [r for r, p in old_payloads.items() if self._spills(len(p))]
        old_chains = self.store.overflow_chains(old_name, spilling) if spilling else {}
        read = self._chain_reader(old_payloads, old_chains)
        rows = TableRows(owner)
        for rowid, (cell, pgno) in cells.items():
            payload, chain = assemble_payload(cell, read, self.usable, PageType.TABLE_LEAF, pgno)
            self._row(rows, rowid, payload, chain, old_payloads.get(rowid), old_chains.get(rowid))
        for rowid in recompute:
            old = old_payloads.get(rowid)
            old_chain = old_chains.get(rowid)
            if old is None or not old_chain:
                continue
            n_local = local_payload_size(len(old), self.usable, PageType.TABLE_LEAF)
            cell = TableLeafCell(rowid, len(old), old[:n_local], old_chain[0])
            payload, chain = assemble_payload(
                cell, read, self.usable, PageType.TABLE_LEAF, old_chain[0]
            )
            self._row(rows, rowid, payload, chain, old, old_chain)
        rows.deletes = old_rowids - set(cells)
        if not rows.is_empty():
            self.rows[owner] = rows

    def _spills(self, size: int) -> bool:
        return local_payload_size(size, self.usable, PageType.TABLE_LEAF) < size

    def _chain_reader(
        self, payloads: dict[int, bytes], chains: dict[int, list[int]]
    ) -> Callable[[int], bytes]:
        """Read pages through the overlay, with unchanged overflow pages of known
        rows built from their old payload (what the renderer would produce)."""
        built: dict[int, bytes] = {}
        for rowid, chain in chains.items():
            _, chunks = split_payload(payloads[rowid], self.usable, PageType.TABLE_LEAF)
            if len(chunks) != len(chain):
                continue
            for seq, pgno in enumerate(chain):
                if pgno not in self.changed:
                    following = chain[seq + 1] if seq + 1 < len(chain) else 0
                    built[pgno] = encode_overflow_page(following, chunks[seq], self.page_size)

        def read(pgno: int) -> bytes:
            image = self.changed.get(pgno)
            if image is None:
                image = built.get(pgno)
            return image if image is not None else self.new.read(pgno)

        return read

    def _row(
        self,
        rows: TableRows,
        rowid: int,
        payload: bytes,
        chain: list[int],
        old_payload: bytes | None,
        old_chain: list[int] | None,
    ) -> None:
        if payload != old_payload:
            rows.upserts[rowid] = payload
        old_chain = old_chain or []
        if chain != old_chain:
            self.chains[(rows.table, rowid)] = chain
        for seq, pgno in enumerate(chain):
            if pgno in self.changed or chain != old_chain:
                self.roles[pgno] = Role("overflow", rows.table, rowid, seq, keep=False)
                self.row_pages.add(pgno)

    # -- step 5: whole tables ------------------------------------------------------------

    def walk_tables(self) -> None:
        for name in sorted(self.full_walk):
            obj = self.new_objects[name]
            self.stats.full_walks.append(name)
            if obj.rendered:
                self.walk_rendered(name, obj)
        for name in sorted(
            self.mirrors_touched | {n for n in self.full_walk if self.new_objects[n].mirrored}
        ):
            self.walk_mirror(name, self.new_objects[name])

    def walk_rendered(self, name: str, obj: SchemaObject) -> None:
        rows = TableRows(name, replace_all=True)
        for pgno, page, _image in iter_tree(self.new, obj.rootpage, self.usable, table=True):
            self.roles[pgno] = Role(btree_kind(page), name)
            if not page.is_leaf:
                continue
            for row in leaf_rows(page, self.new.read, self.usable):
                rowid, payload, chain = row
                rows.upserts[rowid] = payload
                if chain:
                    self.chains[(name, rowid)] = chain
                for seq, q in enumerate(chain):
                    self.roles[q] = Role("overflow", name, rowid, seq, keep=False)
                    self.row_pages.add(q)
            rowids = [c.rowid for c in page.cells]
            self.leaf_ranges[pgno] = (rowids[0], rowids[-1]) if rowids else (None, None)
        self.stats.rows_examined += len(rows.upserts)
        self.rows[name] = rows

    def walk_mirror(self, name: str, obj: SchemaObject) -> None:
        """A WITHOUT ROWID table: raw pages, its data table refilled from every cell."""
        rows = TableRows(name, replace_all=True)
        for pgno, page, _image in iter_tree(self.new, obj.rootpage, self.usable, table=False):
            if pgno in self.changed or name in self.full_walk:
                self.roles[pgno] = Role(btree_kind(page), name)
            for cell in index_cells(page):
                payload, chain = cell_payload(cell, self.new.read, self.usable, page)
                rows.upserts[len(rows.upserts)] = payload
                for seq, q in enumerate(chain):
                    if q in self.changed or name in self.full_walk:
                        self.roles[q] = Role("overflow", name, None, seq)
        self.stats.rows_examined += len(rows.upserts)
        self.rows[name] = rows

    # -- step 6: the changeset -----------------------------------------------------------

    def page_records(self) -> list[PageRecord]:
        out = []
        for pgno in sorted(self.roles):
            if pgno > self.page_count:
                continue
            role = self.roles[pgno]
            obj = self.new_objects.get(role.owner or "")
            rendered = obj is not None and obj.rendered
            if role.kind == "table_leaf" and rendered:
                lo, hi = self.leaf_ranges[pgno]
                out.append(PageRecord(pgno, "table_leaf", role.owner, lo, hi))
            elif role.kind == "overflow" and rendered and role.rowid is not None:
                if pgno in self.row_pages:
                    out.append(PageRecord(pgno, "overflow", role.owner, role.rowid, None, role.seq))
                else:  # a stale old owner: nothing renders it, keep the bytes
                    out.append(PageRecord(pgno, "free", None, data=self.new.read(pgno)))
            elif role.kind == "free" and not role.keep:
                out.append(PageRecord(pgno, "free", None))
            else:
                lo = role.rowid if role.kind == "overflow" else None
                out.append(
                    PageRecord(pgno, role.kind, role.owner, lo, None, role.seq, self.new.read(pgno))
                )
        return out

    def run(self) -> Changeset:
        self.identify()
        self.assign_roles()
        self.diff_rows()
        self.walk_tables()
        schema = self.schema_change()
        pages = self.page_records()
        return Changeset(
            source=self.source,
            header=bytes(self.header_bytes),
            page_count=self.page_count,
            schema_entries=self.entries if self.new_schema_changed else None,
            schema=schema,
            rows=self.rows,
            chains=self.chains,
            pages=pages,
            removed_pages_from=self.page_count + 1 if self.truncated else None,
        )


def _definition_changed(old: TableDefinition | None, new: TableDefinition | None) -> bool:
    if old is None or new is None:
        return old is not new
    return replace(old, name=new.name) != new


def leaf_rows(
    page: BTreePage, read: Callable[[int], bytes], usable_size: int
) -> Iterator[tuple[int, bytes, list[int]]]:
    """(rowid, full payload, overflow chain) of every cell of a table leaf."""
    for cell in page.cells:
        payload, chain = assemble_payload(cell, read, usable_size, PageType.TABLE_LEAF, page.pgno)
        yield cell.rowid, payload, chain


def build_changeset(
    state: StoreState,
    store: Store,
    base: PageSource,
    changed: dict[int, bytes],
    page_count: int,
    source: str,
) -> Changeset:
    """The Changeset of one commit: `changed` pages (new images) over `base` (the
    store's rendering of its current `state`), `page_count` pages after it."""
    changeset, _stats = diff_with_stats(state, store, base, changed, page_count, source)
    return changeset


def diff_with_stats(
    state: StoreState,
    store: Store,
    base: PageSource,
    changed: dict[int, bytes],
    page_count: int,
    source: str,
) -> tuple[Changeset, DiffStats]:
    """`build_changeset` and what it looked at."""
    diff = _Diff(state, store, base, changed, page_count, source)
    return diff.run(), diff.stats
