"""What every backend's catalog does the same way: `CatalogBase`.

A backend's catalog names the store's two schemas (on MariaDB: databases) and
reads its server's own catalog (`table_exists`, `tables`, `entries`,
`meta_values`); this class keeps what follows from those the same way on every
server: the checks of the two names, the refusal of schemas holding tables pgfs
did not create, and the store state the meta tables describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.schema import SchemaEntry, has_data_table
from pgfs.store.errors import StoreConflictError, StoreError
from pgfs.store.interface import StoreState
from pgfs.store.stored import MetaValues, state_of


@dataclass(frozen=True)
class CatalogBase:
    """The two schemas of one store (see module docstring)."""

    meta_schema: str
    data_schema: str

    schema_word: ClassVar[str] = "schema"
    """What the server calls a schema, in messages ("schema", "database")."""
    meta_tables: ClassVar[tuple[str, ...]] = ()
    """The tables pgfs keeps in the meta schema."""
    work_prefixes: ClassVar[tuple[str, ...]] = ()
    """Prefixes of the data-schema tables pgfs makes for its own work during a write."""

    # ------------------------------------------------------------------ the backend's part

    @classmethod
    def check_name(cls, name: str) -> None:
        """Raise FormatError (or StoreError) for a schema name the server cannot hold."""
        raise NotImplementedError

    def table_exists(self, conn: Any, schema: str, name: str) -> bool:
        raise NotImplementedError

    def tables(self, conn: Any, schema: str) -> set[str]:
        """The names of the tables (and views) in `schema`."""
        raise NotImplementedError

    def initialised(self, conn: Any) -> bool:
        raise NotImplementedError

    def entries(self, conn: Any) -> list[SchemaEntry]:
        """The sqlite_schema mirror, in order."""
        raise NotImplementedError

    def meta_values(self, conn: Any) -> MetaValues:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared

    @classmethod
    def check_names(cls, meta_schema: str, data_schema: str) -> None:
        """StoreError unless the two schema names differ and the server can hold both."""
        if meta_schema == data_schema:
            raise StoreError(
                f"the meta and data {cls.schema_word}s must differ (both {meta_schema!r})"
            )
        for name in (meta_schema, data_schema):
            try:
                cls.check_name(name)
            except FormatError as exc:
                raise StoreError(str(exc)) from None

    def load_state(self, conn: Any) -> StoreState:
        if not self.initialised(conn):
            return StoreState.empty()
        return state_of(self.meta_values(conn), self.entries(conn))

    def check_foreign(self, conn: Any) -> None:
        """StoreConflictError when the meta schema holds tables other than pgfs' own, or
        the data schema tables that neither the mirror nor a write's work accounts for."""
        known: set[str] = set()
        if self.table_exists(conn, self.meta_schema, "sqlite_schema"):
            known = {e.name for e in self.entries(conn) if has_data_table(e)}
        word = self.schema_word
        foreign_meta = self.tables(conn, self.meta_schema) - set(self.meta_tables)
        if foreign_meta:
            raise StoreConflictError(
                f"{word} {self.meta_schema!r} holds tables pgfs did not create: "
                f"{', '.join(sorted(foreign_meta)[:10])}; choose another meta {word}"
            )
        foreign = {
            name
            for name in self.tables(conn, self.data_schema) - known
            if not name.startswith(self.work_prefixes)
        }
        if foreign:
            raise StoreConflictError(
                f"{word} {self.data_schema!r} holds tables pgfs did not create: "
                f"{', '.join(sorted(foreign)[:10])}; choose another data {word}"
            )
