"""The diff: the pages of one SQLite commit -> the parts of a Changeset.

README Design "The diff". A pipeline of four steps, each a function with a
frozen result, none of which talks to the server itself (the old version is
read through `OldVersion`, which a test can implement over plain dicts):

1. `identify()` -> `Identity`: header, schema, which object each tree is;
2. `assign_roles()` -> `Roles`: what every changed or freed page now is;
3. `diff_rows()` -> `RowChanges`: inserted, updated, deleted rows, cell by cell;
4. `build_changeset()` -> the Changeset, in parts of bounded size.

`diff_commit` runs them in order. A commit costs O(changed pages), never
O(database); the import walks every tree with the same walker (`walk.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain

from pgfs.emulator.diff.build import build_changeset, schema_change
from pgfs.emulator.diff.objects import Identity, SchemaObject, identify, schema_objects
from pgfs.emulator.diff.roles import ChangedPages, Role, Roles, assign_roles
from pgfs.emulator.diff.rows import OldVersion, RowChanges, diff_rows
from pgfs.emulator.source import OverlayPageSource
from pgfs.sqlite.header import lock_byte_page
from pgfs.store.changeset import Changeset, CommitSource
from pgfs.store.interface import StoreState


@dataclass
class DiffStats:
    """What one diff looked at (tests check that a commit is O(changed pages))."""

    changed_pages: int = 0
    rows_examined: int = 0
    old_records: int = 0
    """Page-map entries the commit had to fetch from the store."""
    full_walks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Diff:
    """A commit, decoded: what the new version is, and its Changeset parts (a stream:
    consume it once, in order)."""

    identity: Identity
    roles: Roles
    rows: RowChanges
    parts: Iterator[Changeset]
    stats: DiffStats


def diff_commit(
    old: OldVersion,
    state: StoreState,
    changed: Mapping[int, bytes],
    page_count: int,
    source: CommitSource,
) -> Diff:
    """Decode one commit: `changed` = the new images of the pages it wrote (page numbers
    1..page_count), `page_count` = the database size after it, `old` = the store's
    current `state` as page images and page map."""
    if page_count < 1:
        raise ValueError("a database has at least one page")
    outside = [p for p in changed if not 1 <= p <= page_count]
    if outside:
        raise ValueError(f"page {outside[0]} is outside the database of {page_count} pages")
    if state.header is None and 1 not in changed:
        raise ValueError("the first commit to an empty store must write page 1")
    new = OverlayPageSource(old, changed, page_count)
    truncated = range(page_count + 1, (state.page_count if state.header else 0) + 1)
    old_records = old.records(chain(changed, truncated)) if state.header else {}
    identity = identify(state, new, changed, old_records, lambda: old.read(1), page_count)
    _check_complete(identity, state, changed)
    pages = ChangedPages(changed, identity.usable_size)
    for pgno in changed:
        if len(changed[pgno]) != identity.page_size:
            raise ValueError(
                f"page {pgno}: {len(changed[pgno])} bytes, page size {identity.page_size}"
            )
    roles = assign_roles(identity, pages, _records_of(old, state), new)
    rows = diff_rows(identity, roles, pages, old, new)
    stats = DiffStats(len(changed), rows.rows_examined, sorted(identity.full_walk))
    parts = build_changeset(identity, roles, rows, new, source)
    return Diff(identity, roles, rows, parts, stats)


def _records_of(old: OldVersion, state: StoreState):
    if state.header is None:
        return lambda pgnos: {p: None for p in pgnos}
    return old.records


def _check_complete(identity: Identity, state: StoreState, changed: Mapping[int, bytes]) -> None:
    """A new page layout (page size, reserved space) leaves no old page usable: then
    every page must be in the commit."""
    if not identity.fresh or state.header is None:
        return
    lock = lock_byte_page(identity.page_size)
    for pgno in range(1, identity.page_count + 1):
        if pgno not in changed and pgno != lock:
            raise ValueError(f"page layout changed but page {pgno} was not written")


__all__ = [
    "ChangedPages",
    "Diff",
    "DiffStats",
    "Identity",
    "OldVersion",
    "Role",
    "Roles",
    "RowChanges",
    "SchemaObject",
    "assign_roles",
    "build_changeset",
    "diff_commit",
    "diff_rows",
    "identify",
    "schema_change",
    "schema_objects",
]
