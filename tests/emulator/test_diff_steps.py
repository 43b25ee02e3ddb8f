"""The diff's four steps, each on its own, without PostgreSQL.

The old version is an in-memory `OldVersion` over a real SQLite file's pages
and the page map and rows its import produced (an import is a commit of every
page onto an empty store, so the same diff builds it). The new version is
the file after a change made by SQLite itself.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from pgfs.emulator.diff import (
    ChangedPages,
    assign_roles,
    build_changeset,
    diff_commit,
    diff_rows,
    identify,
    schema_objects,
)
from pgfs.emulator.diff.objects import _match, _stable_schema
from pgfs.emulator.diff.roles import RoleMap
from pgfs.emulator.source import OverlayPageSource
from pgfs.sqlite.header import DatabaseHeader
from pgfs.store.changeset import Changeset, CommitSource, PageKind, PageRecord
from pgfs.store.interface import StoreState

PAGE_SIZE = 1024


def pages_of(path: Path) -> dict[int, bytes]:
    data = path.read_bytes()
    return {i // PAGE_SIZE + 1: data[i : i + PAGE_SIZE] for i in range(0, len(data), PAGE_SIZE)}


class MemoryVersion:
    """An `OldVersion` held in dicts: page images, page records and rows."""

    def __init__(self, pages: Mapping[int, bytes], parts: Iterable[Changeset]) -> None:
        self.pages = dict(pages)
        self.page_records: dict[int, PageRecord] = {}
        self.rows: dict[tuple[str, int], bytes] = {}
        self.chains: dict[tuple[str, int], list[int]] = {}
        self.parts = list(parts)
        for part in self.parts:
            self.page_records.update((r.pgno, r) for r in part.pages)
            for table, rows in part.rows.items():
                self.rows.update(((table, rowid), p) for rowid, p in rows.inserted.items())
            self.chains.update(part.chains)

    def read(self, pgno: int) -> bytes:
        return self.pages[pgno]

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        return {p: self.pages[p] for p in pgnos}

    def records(self, pgnos: Iterable[int]) -> dict[int, PageRecord | None]:
        return {p: self.page_records.get(p) for p in pgnos}

    def row(self, table: str, rowid: int) -> tuple[bytes, list[int]] | None:
        payload = self.rows.get((table, rowid))
        return None if payload is None else (payload, self.chains.get((table, rowid), []))

    def state(self) -> StoreState:
        entries = tuple(next(p.schema_entries for p in self.parts if p.schema_entries))
        header = DatabaseHeader.parse(self.pages[1][:100])
        objects = schema_objects(entries)
        return StoreState(
            header=self.pages[1][:100],
            page_size=PAGE_SIZE,
            page_count=len(self.pages),
            encoding=header.text_encoding,
            schema_format=header.schema_format,
            entries=entries,
            tables={n: o.definition for n, o in objects.items() if o.rendered},
        )


class Empty:
    """The old version of an empty store."""

    def read(self, pgno: int) -> bytes:
        raise AssertionError("an empty store has no pages")

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        raise AssertionError("an empty store has no pages")

    def records(self, pgnos: Iterable[int]) -> dict[int, PageRecord | None]:
        return {p: None for p in pgnos}

    def row(self, table: str, rowid: int) -> None:
        return None


@pytest.fixture
def before(tmp_path: Path) -> Path:
    path = tmp_path / "before.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
    conn.execute("CREATE INDEX items_name ON items (name)")
    conn.execute("CREATE TABLE notes (note TEXT)")
    rows = [(i, f"item {i:04d}", bytes([i % 256]) * (3000 if i == 50 else 20)) for i in range(300)]
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    conn.executemany("INSERT INTO notes VALUES (?)", [(f"note {i}",) for i in range(50)])
    conn.commit()
    conn.close()
    return path


def imported(path: Path) -> MemoryVersion:
    pages = pages_of(path)
    diff = diff_commit(Empty(), StoreState.empty(), pages, len(pages), CommitSource.IMPORT)
    return MemoryVersion(pages, diff.parts)


def changed_by(before: Path, tmp_path: Path, *statements: str) -> tuple[dict[int, bytes], int]:
    after = tmp_path / "after.db"
    shutil.copy(before, after)
    conn = sqlite3.connect(after)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    old, new = pages_of(before), pages_of(after)
    return {p: image for p, image in new.items() if old.get(p) != image}, len(new)


def test_the_import_is_a_commit_of_every_page_onto_an_empty_store(before: Path) -> None:
    pages = pages_of(before)
    diff = diff_commit(Empty(), StoreState.empty(), pages, len(pages), CommitSource.IMPORT)
    assert diff.identity.fresh
    assert diff.identity.full_walk == {"items", "notes"}
    parts = list(diff.parts)
    inserted = {
        t: sum(len(p.rows[t].inserted) for p in parts if t in p.rows) for t in parts[0].rows
    }
    assert inserted == {"items": 300, "notes": 50}
    records = {r.pgno: r for p in parts for r in p.pages}
    assert set(records) == set(pages)
    overflow = [r for r in records.values() if r.kind is PageKind.OVERFLOW]
    assert overflow and {(r.owner, r.lo) for r in overflow} == {("items", 50)}
    assert all(r.data is None for r in overflow)  # rendered from the row


def test_identify_keeps_objects_whose_roots_did_not_move(before: Path, tmp_path: Path) -> None:
    old = imported(before)
    changed, count = changed_by(before, tmp_path, "UPDATE items SET name = 'x' WHERE id = 5")
    state = old.state()
    new = OverlayPageSource(old, changed, count)
    identity = identify(state, new, changed, old.records(changed), lambda: old.read(1), count)
    assert not identity.fresh and not identity.schema_changed
    assert identity.identity == {"items": "items", "items_name": "items_name", "notes": "notes"}
    assert identity.rebuilt == frozenset() and identity.full_walk == frozenset()
    assert identity.dropped == ()


def jellyfin_database(tmp_path: Path, schema: Path) -> Path:
    path = tmp_path / "jellyfin.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.executescript(schema.read_text())
    conn.close()
    return path


@pytest.mark.parametrize("schema", ["small", "10.11", "12.0-rc"])
def test_a_kept_schema_matches_as_the_full_matcher_would(
    schema: str, before: Path, tmp_path: Path, jellyfin_schema
) -> None:
    """A commit that leaves the schema as it was takes its objects from a cache
    (`_stable_schema`): they must be what matching the schema with itself gives,
    even when every root page is among the changed pages."""
    path = before if schema == "small" else jellyfin_database(tmp_path, jellyfin_schema(schema))
    state = imported(path).state()
    header = DatabaseHeader.parse(state.header)
    objects = schema_objects(state.entries)
    roots = {obj.rootpage: b"" for obj in objects.values()}
    stable = _stable_schema(tuple(state.entries))
    for changed in ({}, roots):
        full = _match(state.entries, state.entries, changed, False, header, header)
        assert dict(stable.old_objects) == dict(stable.new_objects) == full.new_objects
        assert dict(stable.identity) == full.identity
        assert (stable.rebuilt, stable.dropped, stable.full_walk) == (
            full.rebuilt,
            full.dropped,
            full.full_walk,
        )
    assert len(objects) > 2


def test_identify_follows_a_rename_and_sees_a_drop(before: Path, tmp_path: Path) -> None:
    old = imported(before)
    changed, count = changed_by(
        before, tmp_path, "ALTER TABLE items RENAME TO things", "DROP TABLE notes"
    )
    state = old.state()
    new = OverlayPageSource(old, changed, count)
    identity = identify(state, new, changed, old.records(changed), lambda: old.read(1), count)
    assert identity.schema_changed
    assert identity.identity["things"] == "items"
    assert identity.dropped == ("notes",)


def steps(before: Path, tmp_path: Path, *statements: str):
    old = imported(before)
    changed, count = changed_by(before, tmp_path, *statements)
    state = old.state()
    new = OverlayPageSource(old, changed, count)
    identity = identify(state, new, changed, old.records(changed), lambda: old.read(1), count)
    pages = ChangedPages(changed, identity.usable_size)
    roles = assign_roles(identity, pages, old.records, new)
    rows = diff_rows(identity, roles, pages, old, new)
    return old, changed, identity, roles, rows, new


def test_assign_roles_gives_each_changed_page_its_tree(before: Path, tmp_path: Path) -> None:
    old, changed, _, roles, _, _ = steps(
        before, tmp_path, "UPDATE items SET name = 'renamed' WHERE id = 5"
    )
    assert set(roles.of) == set(changed)
    owners = {role.owner for pgno, role in roles.of.items() if pgno != 1}
    assert owners <= {"items", "items_name"}
    for pgno, role in roles.of.items():
        record = old.page_records[pgno]
        if pgno != 1:  # page 1 holds the header and sqlite_schema's root
            assert (role.kind, role.owner) == (record.kind, record.owner)


def test_diff_rows_finds_exactly_the_rows_that_changed(before: Path, tmp_path: Path) -> None:
    *_, rows, _ = steps(
        before,
        tmp_path,
        "UPDATE items SET name = 'renamed' WHERE id = 5",
        "DELETE FROM items WHERE id = 7",
        "INSERT INTO items VALUES (1000, 'new', x'00')",
    )
    items = rows.rows["items"]
    assert set(items.updated) == {5}
    assert items.deleted == {7}
    assert set(items.inserted) == {1000}
    assert "notes" not in rows.rows or rows.rows["notes"].is_empty()
    assert rows.rows_examined < 300, "a commit costs O(changed pages)"


def test_diff_rows_places_a_grown_overflow_chain(before: Path, tmp_path: Path) -> None:
    *_, rows, _ = steps(before, tmp_path, "UPDATE items SET body = zeroblob(5000) WHERE id = 6")
    assert set(rows.rows["items"].updated) == {6}
    chain = rows.chains[("items", 6)]
    assert len(chain) >= 4  # 5000 bytes, 1020 a page, the rest on the leaf
    assert {rows.overflow_roles[p].rowid for p in chain} == {6}


def test_build_changeset_carries_rows_pages_and_header(before: Path, tmp_path: Path) -> None:
    _, changed, identity, roles, rows, new = steps(
        before, tmp_path, "DELETE FROM items WHERE id BETWEEN 100 AND 120"
    )
    parts = list(build_changeset(identity, roles, rows, new, CommitSource.JOURNAL))
    assert parts[0].source is CommitSource.JOURNAL
    assert parts[-1].header == identity.header_bytes
    assert parts[-1].page_count == identity.page_count
    assert set().union(*(p.rows["items"].deleted for p in parts if "items" in p.rows)) == set(
        range(100, 121)
    )
    written = {r.pgno for p in parts for r in p.pages}
    assert set(changed) <= written | set(roles.freed)
    assert parts[0].schema_entries is None  # the schema did not change


def test_compact_role_maps_give_the_same_roles_and_records(
    before: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VACUUM switches the diff's role maps to arrays (RoleMap.DENSE_AFTER): the
    roles and page records must not depend on it. Here the switch comes after a few
    pages, on a commit that grows overflow chains and frees pages."""
    statements = (
        "UPDATE items SET body = zeroblob(1500) WHERE id % 3 = 0",
        "DELETE FROM items WHERE id % 7 = 0",
    )

    def outcome(folder: Path):
        folder.mkdir()
        _, _, identity, roles, rows, new = steps(before, folder, *statements)
        parts = build_changeset(identity, roles, rows, new, CommitSource.JOURNAL)
        return roles, [record for part in parts for record in part.pages]

    roles, records = outcome(tmp_path / "dicts")
    assert not roles.of.compact
    monkeypatch.setattr(RoleMap, "DENSE_AFTER", 4)
    compact_roles, compact_records = outcome(tmp_path / "arrays")
    assert compact_roles.of.compact
    assert dict(compact_roles.of) == dict(roles.of) and compact_roles.freed == roles.freed
    assert sorted(compact_records, key=lambda r: r.pgno) == sorted(records, key=lambda r: r.pgno)
