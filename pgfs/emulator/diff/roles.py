"""Step 2 of the diff: the new role of every page the commit changed or freed.

README Design "The diff", step 3. Strong roles first: roots (from the
schema), pointer-map pages (by position), freelist pages (from the trunk
chain when it changed), then everything they reach through changed pages
(children, overflow chains). Then weak roles: the remaining changed pages
keep their old owner with the kind their new image shows, and pass it on to
the changed pages they point to, starting from those no other page points
to. A claim from a parent overrides a page's own provisional role. Linear in
the number of changed pages: each is scanned and processed once.
"""

from __future__ import annotations

import logging
import struct
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass

from pgfs.emulator.diff.objects import Identity
from pgfs.emulator.pageset import DENSE_AFTER, DenseKeys, PageSet
from pgfs.emulator.source import PageSource
from pgfs.emulator.walk import SCHEMA_OWNER, btree_kind
from pgfs.sqlite.btree import BTreeScan, scan_btree_page
from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.freelist import decode_freelist_trunk
from pgfs.sqlite.ptrmap import is_ptrmap_page
from pgfs.store.changeset import PageKind, PageRecord

log = logging.getLogger("pgfs.emulator")
_U32 = struct.Struct(">I")

Records = Callable[[Iterable[int]], Mapping[int, PageRecord | None]]
"""Old page-map entries of page numbers (batched)."""


@dataclass(frozen=True, slots=True)
class Role:
    """What a page is in the new version.

    `rowid`/`seq` place an overflow page in its row's chain (`rowid` None on
    index b-trees); `keep` stores the image even for a kind that is normally
    data-less (an unknown page stored as raw "free").
    """

    kind: PageKind
    owner: str | None
    rowid: int | None = None
    seq: int | None = None
    keep: bool = True


FREE_LEAF = Role(PageKind.FREE, None, keep=False)
UNKNOWN = Role(PageKind.FREE, None, keep=True)

_HAS_ROWID = 1
_HAS_SEQ = 2


class RoleMap(MutableMapping[int, Role]):
    """pgno -> Role: a dict while small, arrays indexed by page number once the keys
    are many and dense (`DenseKeys`).

    A VACUUM gives every page a role, and the diff holds several maps of them at
    once (strong claims, all claims, the final roles); as dicts they cost about
    100 bytes a page plus a `Role` per overflow page, tens of MB at 1 GB. In array
    mode an entry is 16 bytes: a code for (kind, owner, keep, which of rowid/seq it
    has) and the rowid and seq. A commit of a few pages never allocates per
    database page. Array mode iterates by page number.
    """

    DENSE_AFTER = DENSE_AFTER

    def __init__(self, roles: Mapping[int, Role] | None = None) -> None:
        self._small: dict[int, Role] | None = {}
        self._code = array("i")  # 0: no entry, else 1 + index in _templates
        self._rowid = array("q")
        self._seq = array("i")
        self._templates: list[tuple[Role, int]] = []
        self._template_codes: dict[tuple[PageKind, str | None, bool, int], int] = {}
        self._count = 0
        self._dense = DenseKeys(self.DENSE_AFTER)
        if roles:
            self.update(roles)

    @property
    def compact(self) -> bool:
        return self._small is None

    def __getitem__(self, pgno: int) -> Role:
        if self._small is not None:
            return self._small[pgno]
        code = self._code[pgno] if 0 <= pgno < len(self._code) else 0
        if not code:
            raise KeyError(pgno)
        template, has = self._templates[code - 1]
        if not has:
            return template
        rowid = self._rowid[pgno] if has & _HAS_ROWID else None
        seq = self._seq[pgno] if has & _HAS_SEQ else None
        return Role(template.kind, template.owner, rowid, seq, template.keep)

    def __setitem__(self, pgno: int, role: Role) -> None:
        small = self._small
        if small is not None:
            small[pgno] = role
            if self._dense.due(pgno, len(small)):
                self._to_arrays(small)
            return
        if pgno < 0:
            raise KeyError(pgno)
        self._grow(pgno + 1)
        if not self._code[pgno]:
            self._count += 1
        has = (_HAS_ROWID if role.rowid is not None else 0) | (
            _HAS_SEQ if role.seq is not None else 0
        )
        self._code[pgno] = self._template_code(role, has)
        self._rowid[pgno] = role.rowid or 0
        self._seq[pgno] = role.seq or 0

    def __delitem__(self, pgno: int) -> None:
        if self._small is not None:
            del self._small[pgno]
            return
        if not (0 <= pgno < len(self._code) and self._code[pgno]):
            raise KeyError(pgno)
        self._code[pgno] = 0
        self._count -= 1

    def __contains__(self, pgno: object) -> bool:
        if self._small is not None:
            return pgno in self._small
        return isinstance(pgno, int) and 0 <= pgno < len(self._code) and bool(self._code[pgno])

    def __iter__(self) -> Iterator[int]:
        if self._small is not None:
            return iter(self._small)
        return (pgno for pgno, code in enumerate(self._code) if code)

    def __len__(self) -> int:
        return len(self._small) if self._small is not None else self._count

    def _to_arrays(self, small: dict[int, Role]) -> None:
        self._small = None
        self._grow(self._dense.top + 1)
        for pgno, role in small.items():
            self[pgno] = role

    def _grow(self, size: int) -> None:
        more = size - len(self._code)
        if more > 0:
            self._code.extend(array("i", bytes(4 * more)))
            self._rowid.extend(array("q", bytes(8 * more)))
            self._seq.extend(array("i", bytes(4 * more)))

    def _template_code(self, role: Role, has: int) -> int:
        key = (role.kind, role.owner, role.keep, has)
        code = self._template_codes.get(key)
        if code is None:
            template = Role(role.kind, role.owner, keep=role.keep)
            self._templates.append((template, has))
            code = self._template_codes[key] = len(self._templates)
        return code


@dataclass(frozen=True)
class Roles:
    """Roles of the changed pages, and of pages that became free without being written."""

    of: Mapping[int, Role]
    freed: frozenset[int]


class ChangedPages:
    """The new images of a commit's pages, each scanned on demand for what roles need:
    children and overflow pointers (leaf cells that do not spill are skipped).

    Scans are kept in a bounded memo: a commit of every page (VACUUM) must not
    hold a parsed copy of the database.
    """

    MEMO = 4096

    def __init__(self, images: Mapping[int, bytes], usable_size: int) -> None:
        self.images = images
        self.usable_size = usable_size
        self._memo: OrderedDict[int, BTreeScan | None] = OrderedDict()

    def __contains__(self, pgno: object) -> bool:
        return pgno in self.images

    def __iter__(self) -> Iterator[int]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def image(self, pgno: int) -> bytes:
        return self.images[pgno]

    def scan(self, pgno: int) -> BTreeScan | None:
        """The changed page `pgno` scanned as a b-tree page, None when it is not one."""
        if pgno in self._memo:
            self._memo.move_to_end(pgno)
            return self._memo[pgno]
        try:
            scan: BTreeScan | None = scan_btree_page(
                self.images[pgno], pgno, self.usable_size, spilling_only=True
            )
        except CorruptPageError:
            scan = None
        self._memo[pgno] = scan
        if len(self._memo) > self.MEMO:
            self._memo.popitem(last=False)
        return scan


class _Assigner:
    """The state of one role assignment (module docstring)."""

    def __init__(
        self, identity: Identity, changed: ChangedPages, records: Records, new: PageSource
    ) -> None:
        self.identity = identity
        self.changed = changed
        self.records = records
        self.new = new
        self.extra: dict[int, Role] = {}
        self.freed: set[int] = set()
        self._interned: dict[tuple[PageKind, str | None], Role] = {}

    def role(self, kind: PageKind, owner: str | None) -> Role:
        key = (kind, owner)
        role = self._interned.get(key)
        if role is None:
            role = self._interned[key] = Role(kind, owner)
        return role

    def btree_role(self, pgno: int, owner: str, *, strict: bool) -> Role | None:
        """The role of changed page `pgno` as a b-tree page of `owner`."""
        scan = self.changed.scan(pgno)
        table = self.identity.is_table_tree(owner)
        if scan is None or scan.is_table != table:
            if not strict:
                return None
            if scan is None:
                scan_btree_page(self.changed.image(pgno), pgno, self.changed.usable_size)
                raise CorruptPageError(pgno, "not a b-tree page")
            family = "table" if table else "index"
            raise CorruptPageError(
                pgno, f"{btree_kind(scan.page_type)} page in the {family} b-tree {owner}"
            )
        return self.role(btree_kind(scan.page_type), owner)

    def claims(self, pgno: int, role: Role, strong: bool) -> Iterator[tuple[int, Role]]:
        """Roles that changed page `pgno` in `role` gives to other changed pages."""
        if role.owner is None:
            return
        changed = self.changed
        if role.kind == PageKind.OVERFLOW:
            following = _U32.unpack_from(changed.image(pgno), 0)[0]
            if following in changed and following != pgno:
                seq = (role.seq or 0) + 1
                yield following, Role(PageKind.OVERFLOW, role.owner, role.rowid, seq)
            return
        if not role.kind.is_btree:
            return
        scan = changed.scan(pgno)
        if scan is None:
            return
        for child in scan.children():
            if child in changed and child != pgno:
                child_role = self.btree_role(child, role.owner, strict=strong)
                if child_role is not None:
                    yield child, child_role
        for cell in scan.cells:
            if cell.overflow is not None and cell.overflow in changed:
                yield cell.overflow, Role(PageKind.OVERFLOW, role.owner, cell.rowid, 0)

    def propagate(
        self,
        starts: Iterable[int],
        roles: MutableMapping[int, Role],
        claimed: MutableMapping[int, Role],
        *,
        strict: bool,
        done: PageSet | None = None,
        protected: Mapping[int, Role] | None = None,
    ) -> None:
        """Pass roles down from the pages in `starts` to the changed pages they point
        to (breadth first); a page already in `claimed` or `protected` keeps its role.

        The queue is an array read from a moving head: in a VACUUM a whole level of
        the b-trees waits in it, and a deque would hold an int object per page.
        """
        done = PageSet() if done is None else done
        protected = protected if protected is not None else {}
        queue = array("I", starts)
        head = 0
        while head < len(queue):
            pgno = queue[head]
            head += 1
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

    def fixed(self) -> dict[int, Role]:
        """Roots, pointer-map pages and freelist pages."""
        fixed: dict[int, Role] = {}
        changed = self.changed
        if 1 in changed:
            fixed[1] = self.btree_role(1, SCHEMA_OWNER, strict=True)  # type: ignore[assignment]
        for name, obj in self.identity.new_objects.items():
            if obj.rootpage in changed:
                fixed[obj.rootpage] = self.btree_role(obj.rootpage, name, strict=True)  # type: ignore[assignment]
        if self.identity.header.auto_vacuum:
            for pgno in changed:
                if pgno > 1 and is_ptrmap_page(pgno, changed.usable_size):
                    fixed[pgno] = self.role(PageKind.PTRMAP, None)
        self.walk_freelist(fixed)
        return fixed

    def walk_freelist(self, fixed: dict[int, Role]) -> None:
        """Freelist trunks and newly free leaves (fileformat2 §1.5).

        Walked only when the header's freelist fields or an old trunk changed.
        Only changed trunks can hold newly free leaves: SQLite writes a trunk
        whenever its leaf list changes, and a page it frees goes to the first
        trunk or becomes a (written) trunk itself.
        """
        identity, changed = self.identity, self.changed
        h, o = identity.header, identity.old_header
        old_changed = self.records(changed)
        trigger = (
            identity.fresh
            or o is None
            or (h.first_freelist_trunk, h.freelist_count)
            != (o.first_freelist_trunk, o.freelist_count)
            or any(
                r is not None and r.kind == PageKind.FREELIST_TRUNK for r in old_changed.values()
            )
        )
        if not trigger:
            return
        trunks: list[tuple[int, list[int]]] = []
        seen: set[int] = set()
        pgno = h.first_freelist_trunk
        while pgno:
            if pgno in seen or pgno > identity.page_count:
                raise CorruptPageError(pgno, "freelist trunk chain loops or leaves the file")
            seen.add(pgno)
            trunk = decode_freelist_trunk(self.new.read(pgno), pgno, changed.usable_size)
            trunks.append((pgno, trunk.leaves))
            pgno = trunk.next_trunk
        old_trunks = self.records(p for p, _ in trunks)
        candidates: set[int] = set()
        for pgno, leaves in trunks:
            record = old_trunks.get(pgno)
            if pgno in changed or record is None or record.kind != PageKind.FREELIST_TRUNK:
                fixed[pgno] = self.role(PageKind.FREELIST_TRUNK, None)
                if pgno not in changed:
                    self.extra[pgno] = fixed[pgno]
            if pgno in changed:
                candidates.update(leaves)
        bad = [p for p in candidates if not 1 <= p <= identity.page_count or p in seen]
        if bad:
            raise CorruptPageError(bad[0], "freelist leaf out of range or listed twice")
        old_leaves = self.records(candidates)
        for leaf in candidates:
            record = old_leaves.get(leaf)
            if leaf in changed or (record is not None and record.kind != PageKind.FREE):
                fixed[leaf] = FREE_LEAF
                self.freed.add(leaf)
                if leaf not in changed:
                    self.extra[leaf] = FREE_LEAF

    def provisional(self, fixed: Mapping[int, Role]) -> RoleMap:
        """Changed pages keep their old owner (renamed if it was), kind from the new image."""
        out = RoleMap()
        old_to_new = self.identity.old_to_new
        full_walk = self.identity.full_walk
        old = self.records(p for p in self.changed if p not in fixed)
        for pgno, record in old.items():
            if record is None or record.owner is None:
                continue
            owner = old_to_new.get(record.owner)
            if owner is None or owner in full_walk:
                continue
            if record.kind.is_btree:
                role = self.btree_role(pgno, owner, strict=False)
                if role is not None:
                    out[pgno] = role
            elif record.kind == PageKind.OVERFLOW:
                out[pgno] = Role(PageKind.OVERFLOW, owner, record.lo, record.seq)
        return out

    def assign(self) -> Roles:
        """Strong claims, then weak ones over the provisional roles; every map is a
        `RoleMap` and every set a `PageSet`, so a VACUUM holds no object per page."""
        fixed = self.fixed()
        strong = RoleMap(fixed)
        self.propagate(fixed, strong, strong, strict=True)
        provisional = self.provisional(strong)
        # A VACUUM's pages are all reached from roots: with nothing provisional the
        # strong roles are all the roles, and are not copied.
        roles = self.weak(strong, provisional) if provisional else strong
        # Every page with a role is a changed page or one of `extra` (whose roles are
        # the strong ones already there): the final roles are `roles`, completed.
        for pgno in self.changed:
            if pgno not in roles:
                roles[pgno] = UNKNOWN
        roles.update(self.extra)
        return Roles(roles, frozenset(self.freed))

    def weak(self, strong: RoleMap, provisional: RoleMap) -> RoleMap:
        """All roles after weak claims: passed down from the provisional pages no
        other provisional page points to, then from those only on loops."""
        targets = PageSet(
            child
            for pgno, role in provisional.items()
            for child, _ in self.claims(pgno, role, False)
        )
        roles = RoleMap(provisional)
        roles.update(strong)
        order = array("I", sorted(provisional))
        tops = array("I", (p for p in order if p not in targets))
        rest = array("I", (p for p in order if p in targets))
        done = PageSet()
        weak = RoleMap()
        self.propagate(tops, roles, weak, strict=False, done=done, protected=strong)
        for pgno in rest:  # pages only on loops of weak claims
            if pgno not in done:
                self.propagate((pgno,), roles, weak, strict=False, done=done, protected=strong)
        return roles


def assign_roles(
    identity: Identity, changed: ChangedPages, records: Records, new: PageSource
) -> Roles:
    """Step 2: the role of every changed page, and of pages freed without being written."""
    return _Assigner(identity, changed, records, new).assign()
