"""Step 1 of the diff: which table or index each b-tree of the new version is.

README Design "The diff", steps 1 and 2: the header from the new page 1, the
new `sqlite_schema` (read through the new version only when it changed),
and the identity of every object: kept, renamed, rebuilt, created or dropped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from pgfs.emulator.source import PageSource
from pgfs.emulator.walk import SCHEMA_OWNER, read_schema
from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader
from pgfs.sqlite.schema import (
    SchemaEntry,
    TableDefinition,
    declares_without_rowid,
    definition_of,
    has_data_table,
)
from pgfs.store.changeset import PageRecord
from pgfs.store.interface import StoreState

log = logging.getLogger("pgfs.emulator")


@dataclass(frozen=True)
class SchemaObject:
    """A table or index that owns pages: its schema row and, for a table whose rows
    the store keeps, its definition.

    `rendered`: a rowid table kept as rows (leaves and overflow pages are
    rendered from them); `mirrored`: a WITHOUT ROWID table kept as rows (its
    pages raw, its data table refilled when a page changes); `table_tree`:
    a table b-tree (rowid tables) rather than an index b-tree (indexes and
    WITHOUT ROWID tables).
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


def schema_objects(entries: Iterable[SchemaEntry]) -> dict[str, SchemaObject]:
    """Tables and indexes that own pages, by name."""
    out: dict[str, SchemaObject] = {}
    for entry in entries:
        if entry.type not in ("table", "index") or entry.rootpage <= 0:
            continue
        definition = definition_of(entry)
        if definition is None and has_data_table(entry):
            log.warning(
                "table %s stays raw pages: pgfs cannot describe its CREATE text", entry.name
            )
        out[entry.name] = SchemaObject(entry, definition)
    return out


@dataclass(frozen=True)
class Identity:
    """What the new version is, object by object (README "The diff", steps 1-2).

    - `fresh`: no usable old version (an empty store, or a new page size or
      reserved space after VACUUM): every page is in the commit;
    - `identity[new name]` = the old object's name, or None for a new object;
    - `rebuilt`: objects whose tree must be walked whole (root moved, kind
      changed); `full_walk`: the rebuilt or created ones that keep rows;
    - `dropped`: old objects with no new counterpart.
    """

    header_bytes: bytes
    header: DatabaseHeader
    old_header: DatabaseHeader | None
    fresh: bool
    page_count: int
    old_page_count: int
    schema_changed: bool
    entries: tuple[SchemaEntry, ...]
    old_objects: Mapping[str, SchemaObject]
    new_objects: Mapping[str, SchemaObject]
    identity: Mapping[str, str | None]
    rebuilt: frozenset[str]
    dropped: tuple[str, ...]
    full_walk: frozenset[str]

    @property
    def usable_size(self) -> int:
        return self.header.usable_size

    @property
    def page_size(self) -> int:
        return self.header.page_size

    @property
    def truncated(self) -> range:
        """Pages cut off the end of the file."""
        return range(self.page_count + 1, self.old_page_count + 1)

    @functools.cached_property
    def old_to_new(self) -> dict[str, str]:
        mapping = {old: new for new, old in self.identity.items() if old is not None}
        mapping[SCHEMA_OWNER] = SCHEMA_OWNER
        return mapping

    def is_table_tree(self, owner: str) -> bool:
        return owner == SCHEMA_OWNER or self.new_objects[owner].table_tree

    def is_rendered(self, owner: str | None) -> bool:
        obj = self.new_objects.get(owner or "")
        return obj is not None and obj.rendered


def _schema_changed(
    state: StoreState,
    header: DatabaseHeader,
    old_header: DatabaseHeader | None,
    changed: Mapping[int, bytes],
    old_records: Mapping[int, PageRecord | None],
    old_page_one: Callable[[], bytes],
) -> bool:
    if old_header is None:
        return True
    if old_header.schema_cookie != header.schema_cookie:
        return True
    for pgno in changed:
        record = old_records.get(pgno)
        if pgno != 1 and record is not None and record.owner == SCHEMA_OWNER:
            return True
    if 1 in changed:
        return changed[1][HEADER_SIZE:] != old_page_one()[HEADER_SIZE:]
    return False


def identify(
    state: StoreState,
    new: PageSource,
    changed: Mapping[int, bytes],
    old_records: Mapping[int, PageRecord | None],
    old_page_one: Callable[[], bytes],
    page_count: int,
) -> Identity:
    """Step 1: the header, the schema and the identity of every object.

    `old_records` holds the old page records of the changed pages; `old_page_one`
    renders the old page 1 (only called when page 1 changed).
    """
    header_bytes = bytes(new.read(1)[:HEADER_SIZE])
    header = DatabaseHeader.parse(header_bytes)
    old_header = DatabaseHeader.parse(state.header) if state.header else None
    fresh = old_header is None or (old_header.page_size, old_header.usable_size) != (
        header.page_size,
        header.usable_size,
    )
    changed_schema = fresh or _schema_changed(
        state, header, old_header, changed, old_records, old_page_one
    )
    if changed_schema:
        entries = tuple(read_schema(new, header.usable_size, header.text_encoding))
        matched = _match(state.entries, entries, changed, fresh, header, old_header)
    else:
        entries = tuple(state.entries)
        matched = _stable_schema(entries)
    return Identity(
        header_bytes=header_bytes,
        header=header,
        old_header=old_header,
        fresh=fresh,
        page_count=page_count,
        old_page_count=state.page_count if state.header else 0,
        schema_changed=changed_schema,
        entries=entries,
        old_objects=matched.old_objects,
        new_objects=matched.new_objects,
        identity=matched.identity,
        rebuilt=matched.rebuilt,
        dropped=matched.dropped,
        full_walk=matched.full_walk,
    )


@dataclass(frozen=True)
class _Matched:
    """The objects of the old and new schema and how they correspond (`Identity`)."""

    old_objects: Mapping[str, SchemaObject]
    new_objects: Mapping[str, SchemaObject]
    identity: Mapping[str, str | None]
    rebuilt: frozenset[str]
    dropped: tuple[str, ...]
    full_walk: frozenset[str]


def _match(
    old_entries: Iterable[SchemaEntry],
    entries: Iterable[SchemaEntry],
    changed: Mapping[int, bytes],
    fresh: bool,
    header: DatabaseHeader,
    old_header: DatabaseHeader | None,
) -> _Matched:
    old_objects = schema_objects(old_entries)
    new_objects = schema_objects(entries)
    identity, claimed = _match_objects(old_objects, new_objects, changed, fresh, header, old_header)
    rebuilt = _rebuilt(old_objects, new_objects, identity, fresh)
    full_walk = frozenset(
        name
        for name, obj in new_objects.items()
        if obj.definition is not None and (identity[name] is None or name in rebuilt)
    )
    dropped = tuple(n for n in old_objects if n not in claimed)
    return _Matched(old_objects, new_objects, identity, frozenset(rebuilt), dropped, full_walk)


@functools.lru_cache(maxsize=4)
def _stable_schema(entries: tuple[SchemaEntry, ...]) -> _Matched:
    """`_match` of a schema with itself, as a commit that leaves the schema as it was
    has it: each object is itself, none is rebuilt, created or dropped. Worked out
    once per schema: most commits change rows only, and going through every
    CREATE text again cost a single-row commit of a Jellyfin database about 0.5 ms."""
    objects = MappingProxyType(schema_objects(entries))
    same = MappingProxyType({name: name for name in objects})
    return _Matched(objects, objects, same, frozenset(), (), frozenset())


def _match_objects(
    old_objects: Mapping[str, SchemaObject],
    new_objects: Mapping[str, SchemaObject],
    changed: Mapping[int, bytes],
    fresh: bool,
    header: DatabaseHeader,
    old_header: DatabaseHeader | None,
) -> tuple[dict[str, str | None], set[str]]:
    """new name -> old name (or None), and the old names taken.

    Same root page number: the same b-tree, renamed or not — when the page is
    unchanged (README step 2), or, without auto-vacuum (where roots never
    move), when the old object of that root is gone by name and the new name
    is new: a rename plus other changes in one transaction. With auto-vacuum
    a DROP moves another table's root into the freed slot. Otherwise the old
    object of the same name.
    """
    identity: dict[str, str | None] = {}
    claimed: set[str] = set()
    if not fresh and old_header is not None:
        by_root = {o.rootpage: o for o in old_objects.values()}
        stable_roots = not (header.auto_vacuum or old_header.auto_vacuum)
        for name, obj in new_objects.items():
            old = by_root.get(obj.rootpage)
            if (
                old is not None
                and old.entry.type == obj.entry.type
                and old.name not in claimed
                and (
                    obj.rootpage not in changed
                    or old.name == name
                    or (stable_roots and old.name not in new_objects and name not in old_objects)
                )
            ):
                identity[name] = old.name
                claimed.add(old.name)
    for name, obj in new_objects.items():
        if name in identity:
            continue
        old = old_objects.get(name)
        if old is not None and name not in claimed and old.entry.type == obj.entry.type:
            identity[name] = name
            claimed.add(name)
        else:
            identity[name] = None
    return identity, claimed


def _rebuilt(
    old_objects: Mapping[str, SchemaObject],
    new_objects: Mapping[str, SchemaObject],
    identity: Mapping[str, str | None],
    fresh: bool,
) -> set[str]:
    """Objects whose tree is walked whole: a moved root, a changed kind, or a
    WITHOUT ROWID table whose definition changed."""
    rebuilt: set[str] = set()
    for name, old_name in identity.items():
        if old_name is None:
            continue
        old, new = old_objects[old_name], new_objects[name]
        if old_name == name and (fresh or old.rootpage != new.rootpage):
            rebuilt.add(name)
        kind_changed = (old.rendered, old.mirrored) != (new.rendered, new.mirrored)
        if kind_changed or (new.mirrored and definition_changed(old.definition, new.definition)):
            rebuilt.add(name)
    return rebuilt


def definition_changed(old: TableDefinition | None, new: TableDefinition | None) -> bool:
    if old is None or new is None:
        return old is not new
    return replace(old, name=new.name) != new
