"""Which column-level ALTERs turn one SQLite table definition into another: what every
backend's DDL does the same way (the statements themselves are the backend's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgfs.sqlite.schema import Column, TableDefinition
from pgfs.store.values import layout_of


@dataclass
class AlterPlan:
    """Column renames (old, new), added columns, dropped column names."""

    renames: list[tuple[str, str]] = field(default_factory=list)
    added: list[Column] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.renames or self.added or self.dropped)


def alter_plan(old: TableDefinition, new: TableDefinition) -> AlterPlan | None:
    """The column-level ALTERs that turn `old`'s data table into `new`'s.

    Recognises what SQLite's ALTER TABLE can do in one transaction: RENAME
    COLUMN (same positions, same affinities), ADD COLUMN (appended), DROP
    COLUMN (the new columns are the old ones minus some). Anything else
    (changed affinities or keys, e.g. through writable_schema) returns None:
    the table is rewritten row by row.
    """
    before, after = layout_of(old), layout_of(new)
    if (
        old.without_rowid != new.without_rowid
        or before.hidden_rowid != after.hidden_rowid
        or (old.without_rowid and before.record_order != after.record_order)
    ):
        return None
    o, n = before.columns, after.columns
    if len(n) >= len(o):
        if any(a.affinity != b.affinity for a, b in zip(o, n, strict=False)):
            return None
        if before.ipk_index != after.ipk_index:
            return None
        renames = [(a.name, b.name) for a, b in zip(o, n, strict=False) if a.name != b.name]
        return AlterPlan(renames=renames, added=list(n[len(o) :]), dropped=[])
    dropped: list[str] = []
    position = 0
    for column in o:
        if (
            position < len(n)
            and column.name == n[position].name
            and column.affinity == n[position].affinity
        ):
            position += 1
        else:
            dropped.append(column.name)
    if position != len(n) or (before.ipk_index is None) != (after.ipk_index is None):
        return None
    if before.ipk_index is not None and o[before.ipk_index].name in dropped:
        return None
    return AlterPlan(renames=[], added=[], dropped=dropped)
