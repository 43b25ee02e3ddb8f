"""Step 4 of the diff: the Changeset, as a stream of parts of bounded size.

README Design "The diff", steps 5 and 6. The first part carries the schema
change, the new `sqlite_schema` mirror, the row changes of step 3 and the
page records of the changed pages; tables walked whole (created or rebuilt,
e.g. by VACUUM) and WITHOUT ROWID mirrors follow in parts of about
`PART_BYTES` (`pgfs.emulator.parts`), so that a commit of every page never
holds the database in memory. The store applies all parts in one transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from pgfs.emulator.diff.objects import Identity, definition_changed
from pgfs.emulator.diff.roles import Role, Roles
from pgfs.emulator.diff.rows import RowChanges
from pgfs.emulator.pageset import PageSet
from pgfs.emulator.parts import ChangesetParts, add_mirror_rows, add_table_page
from pgfs.emulator.source import PageSource
from pgfs.emulator.walk import walk_index_tree, walk_table
from pgfs.store.changeset import (
    Changeset,
    CommitSource,
    PageKind,
    PageRecord,
    SchemaChange,
)

RECORD_OVERHEAD = 64


def schema_change(identity: Identity) -> SchemaChange:
    """DDL for the data schema. `renamed` lists every renamed object with pages
    (indexes too): the store renames data tables and page and chain owners."""
    change = SchemaChange()
    if not identity.schema_changed:
        return change  # every object is itself (objects._stable_schema): nothing to do
    old_objects, new_objects = identity.old_objects, identity.new_objects
    for name, old_name in identity.identity.items():
        if old_name is not None and old_name != name:
            change.renamed.append((old_name, name))
    for name, obj in new_objects.items():
        if obj.definition is None:
            continue
        old_name = identity.identity[name]
        old = old_objects.get(old_name) if old_name else None
        if old is None or old.definition is None:
            change.created.append(obj.definition)
        elif definition_changed(old.definition, obj.definition):
            if name in identity.rebuilt:
                change.created.append(obj.definition)
            else:
                change.altered.append((old.definition, obj.definition))
    for name in identity.dropped:
        if old_objects[name].definition is not None:
            change.dropped.append(name)
    for name, old_name in identity.identity.items():
        old = old_objects.get(old_name) if old_name else None
        if old is not None and old.definition is not None and new_objects[name].definition is None:
            change.dropped.append(old_name)
    return change


def page_record(
    pgno: int, role: Role, identity: Identity, rows: RowChanges, image: bytes
) -> PageRecord:
    """The page-map entry of a changed (or freed) page with its final role."""
    rendered = identity.is_rendered(role.owner)
    if role.kind == PageKind.TABLE_LEAF and rendered:
        lo, hi = rows.leaf_ranges[pgno]
        return PageRecord(pgno, PageKind.TABLE_LEAF, role.owner, lo, hi)
    if role.kind == PageKind.OVERFLOW and rendered and role.rowid is not None:
        if pgno in rows.overflow_roles:
            return PageRecord(pgno, PageKind.OVERFLOW, role.owner, role.rowid, None, role.seq)
        return PageRecord(pgno, PageKind.FREE, None, data=image)  # a stale owner: keep the bytes
    if role.kind == PageKind.FREE and not role.keep:
        return PageRecord(pgno, PageKind.FREE, None)
    lo = role.rowid if role.kind == PageKind.OVERFLOW else None
    return PageRecord(pgno, role.kind, role.owner, lo, None, role.seq, image)


def _parts(identity: Identity, source: CommitSource) -> ChangesetParts:
    def empty() -> Changeset:
        return Changeset(source, identity.header_bytes, identity.page_count)

    return ChangesetParts(empty(), empty, record_overhead=RECORD_OVERHEAD)


def build_changeset(
    identity: Identity,
    roles: Roles,
    rows: RowChanges,
    new: PageSource,
    source: CommitSource,
) -> Iterator[Changeset]:
    """Step 4: the parts of the commit's Changeset (module docstring)."""
    parts = _parts(identity, source)
    first = parts.part
    if identity.schema_changed:
        first.schema_entries = list(identity.entries)
    first.schema = schema_change(identity)
    first.rows.update(rows.rows)
    first.chains.update(rows.chains)
    for table in rows.rows.values():
        for payload in (*table.inserted.values(), *table.updated.values()):
            parts.count(payload)
    yield from _role_records(parts, identity, roles, rows, new)
    for name in sorted(identity.full_walk):
        obj = identity.new_objects[name]
        if obj.rendered:
            yield from _walk_rendered(parts, name, obj.rootpage, new, identity.usable_size)
    walked = rows.mirrors_touched | {
        n for n in identity.full_walk if identity.new_objects[n].mirrored
    }
    for name in sorted(walked):
        obj = identity.new_objects[name]
        yield from _walk_mirror(parts, name, obj.rootpage, new, identity, roles)
    last = parts.take()
    if identity.truncated:
        last.removed_pages_from = identity.page_count + 1
    yield last


def _role_records(
    parts: ChangesetParts, identity: Identity, roles: Roles, rows: RowChanges, new: PageSource
) -> Iterator[Changeset]:
    """Records of every page with a role, except those of trees walked whole; images
    are read in batches, only for pages stored raw. A row's overflow roles override
    step 2's; the two maps are read, not merged (a VACUUM gives every page a role)."""

    def final(pgno: int) -> Role:
        role = rows.overflow_roles.get(pgno)
        return role if role is not None else roles.of[pgno]

    pages = iter(
        PageSet(
            p for p in itertools.chain(roles.of, rows.overflow_roles) if p <= identity.page_count
        )
    )
    while batch := list(itertools.islice(pages, 512)):
        kept = [(p, role) for p in batch if (role := final(p)).owner not in identity.full_walk]
        raw = [p for p, role in kept if _stored_raw(p, role, identity, rows)]
        images = new.read_many(raw) if raw else {}
        for pgno, role in kept:
            parts.add_page(page_record(pgno, role, identity, rows, images.get(pgno, b"")))
            if parts.full():
                yield parts.take()


def _stored_raw(pgno: int, role: Role, identity: Identity, rows: RowChanges) -> bool:
    """Whether a page's record carries its image (else it is rendered, or free)."""
    if role.kind == PageKind.FREE and not role.keep:
        return False
    if not identity.is_rendered(role.owner):
        return True
    if role.kind == PageKind.TABLE_LEAF:
        return False
    return not (
        role.kind == PageKind.OVERFLOW and role.rowid is not None and pgno in rows.overflow_roles
    )


def _walk_rendered(
    parts: ChangesetParts, name: str, root: int, new: PageSource, usable: int
) -> Iterator[Changeset]:
    """A created or rebuilt table: every page and every row, streamed."""
    for page in walk_table(new, root, usable):
        add_table_page(parts, name, page)
        if parts.full():
            yield parts.take()


def _walk_mirror(
    parts: ChangesetParts, name: str, root: int, new: PageSource, identity: Identity, roles: Roles
) -> Iterator[Changeset]:
    """A WITHOUT ROWID table: raw pages, its data table refilled from every cell."""
    whole = name in identity.full_walk
    for page in walk_index_tree(new, root, identity.usable_size):
        if whole or page.pgno in roles.of:
            parts.add_page(PageRecord(page.pgno, page.kind, name, data=page.image))
        add_mirror_rows(parts, name, page)
        for _payload, chain in page.payloads:
            for seq, pgno in enumerate(chain):
                if whole or pgno in roles.of:
                    parts.add_page(
                        PageRecord(pgno, PageKind.OVERFLOW, name, None, None, seq, new.read(pgno))
                    )
        if parts.full():
            yield parts.take()
