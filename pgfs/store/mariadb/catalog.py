"""The meta database: pgfs' own tables, their creation, the stored state, and the DDL
that a committed write still owes.

"Schemas" are MariaDB databases: the meta database (default `pgfs`) holds

- `meta(key, value, data)`: `format`, `header`, `page_count`, `page_size`,
  `text_encoding`, `schema_format`, `commit_seq`, `store_id`, `lease_epoch`,
  `lease_holder` (JSON);
- `sqlite_schema(position, type, name, tbl_name, rootpage, sql)`: the mirror;
- `pages(pgno, kind, owner, lo, hi, seq, data)`: one row per page number;
- `overflow_chain(owner, rowid, pages)`: a row's overflow page numbers (JSON);
- `commit_log(id, commit_id, seq, epoch, committed_at, source, inserted,
  updated, deleted, pages, ms, tables)`: one row per write;
- `ddl_pending(seq, steps)`: the table renames a committed write still owes.

MariaDB commits implicitly around every DDL statement, so a write never runs
DDL inside its transaction. Tables it fills are created before it, under
work names (`ddl.STAGING_PREFIX`), on another connection; the transaction
changes rows only, and records in `ddl_pending` the renames that give the
new tables their SQLite names and retire the old ones. After the COMMIT,
`finish_ddl` runs them as one atomic RENAME TABLE (which also renames a marker
table, so that a retry can tell whether it ran), drops what was retired and
deletes the `ddl_pending` row. If anything fails in between, the next write
(or the next writer) finishes the pending renames and drops leftover work
tables (`recover`): the catalog rows, changed inside the transaction, are the
truth, and the tables always catch up with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import mariadb

from pgfs.sqlite.schema import SchemaEntry
from pgfs.store.catalog import CatalogBase
from pgfs.store.changeset import PageKind
from pgfs.store.errors import StoreConflictError, StoreError
from pgfs.store.mariadb import ddl
from pgfs.store.mariadb.connection import plain_identifier, qualified, quote
from pgfs.store.stored import MetaValues

FORMAT_VERSION = "3"
META_TABLES = ("meta", "sqlite_schema", "pages", "overflow_chain", "commit_log", "ddl_pending")
NAME_TYPE = f"VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE {ddl.COLLATION}"
OWNER_KEY_TYPE = f"VARCHAR(64) CHARACTER SET utf8mb4 COLLATE {ddl.COLLATION}"
INIT_LOCK_WAIT = 30


@dataclass
class DdlSteps:
    """What a committed write still owes: one atomic RENAME TABLE (pairs in order, the
    marker's rename last), then drops. Stored as JSON in `ddl_pending`."""

    renames: list[tuple[str, str]] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)
    marker: str = ""

    def to_json(self) -> str:
        return json.dumps({"renames": self.renames, "drops": self.drops, "marker": self.marker})

    @classmethod
    def from_json(cls, text: str) -> DdlSteps:
        data = json.loads(text)
        return cls([tuple(p) for p in data["renames"]], list(data["drops"]), data["marker"])

    def is_empty(self) -> bool:
        return not (self.renames or self.drops)


@dataclass(frozen=True)
class Catalog(CatalogBase):
    """The two databases of one store and how pgfs' own objects are named in them."""

    schema_word = "database"
    meta_tables = META_TABLES
    work_prefixes = ddl.WORK_PREFIXES

    @classmethod
    def check_name(cls, name: str) -> None:
        ddl.check_identifier(name, "database")
        if not plain_identifier(name) or "`" in name:
            raise StoreError(f"database name {name!r}: use letters, digits, _ and $")

    def meta(self, table: str) -> str:
        return qualified(self.meta_schema, table)

    def data(self, table: str) -> str:
        return qualified(self.data_schema, table)

    @property
    def lock_name(self) -> str:
        """The GET_LOCK() name of the lease (at most 64 characters)."""
        import hashlib

        digest = hashlib.sha256(f"pgfs-lease:{self.meta_schema}".encode()).hexdigest()
        return f"pgfs-lease-{digest[:40]}"

    # ------------------------------------------------------------------ reading

    def tables(self, conn: mariadb.Connection, database: str) -> set[str]:
        cur = conn.cursor()
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            (database,),
        )
        return {row[0] for row in cur.fetchall()}

    def table_exists(self, conn: mariadb.Connection, database: str, name: str) -> bool:
        cur = conn.cursor()
        cur.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            (database, name),
        )
        return cur.fetchone() is not None

    def initialised(self, conn: mariadb.Connection) -> bool:
        return self.table_exists(conn, self.meta_schema, "ddl_pending")

    def entries(self, conn: mariadb.Connection) -> list[SchemaEntry]:
        cur = conn.cursor()
        cur.execute(
            "SELECT type, name, tbl_name, rootpage, `sql` FROM "
            f"{self.meta('sqlite_schema')} ORDER BY position"
        )
        return [SchemaEntry(*row) for row in cur.fetchall()]

    def meta_values(self, conn: mariadb.Connection) -> MetaValues:
        cur = conn.cursor()
        cur.execute(f"SELECT `key`, value, data FROM {self.meta('meta')}")
        return {key: (value, data) for key, value, data in cur.fetchall()}

    # ------------------------------------------------------------------ creating

    def initialise(self, conn: mariadb.Connection) -> None:
        """Create the meta tables if missing; refuse databases holding foreign tables."""
        cur = conn.cursor()
        cur.execute("SELECT GET_LOCK(?, ?)", (self.lock_name + "-init", INIT_LOCK_WAIT))
        try:
            check_server(conn)
            self._check_format(conn)
            self.check_foreign(conn)
            for statement in self._create_statements():
                cur.execute(statement)
            cur.execute(
                f"INSERT IGNORE INTO {self.meta('meta')} (`key`, value) VALUES ('format', ?),"
                " ('lease_epoch', '0'), ('commit_seq', '0'), ('store_id', UUID())",
                (FORMAT_VERSION,),
            )
        finally:
            cur.execute("SELECT RELEASE_LOCK(?)", (self.lock_name + "-init",))

    def _check_format(self, conn: mariadb.Connection) -> None:
        if not self.table_exists(conn, self.meta_schema, "meta"):
            return
        cur = conn.cursor()
        cur.execute(f"SELECT value FROM {self.meta('meta')} WHERE `key` = 'format'")
        row = cur.fetchone()
        if row is not None and row[0] != FORMAT_VERSION:
            raise StoreConflictError(
                f"database {self.meta_schema!r} holds pgfs format {row[0]!r}; "
                f"this pgfs uses format {FORMAT_VERSION!r}"
            )

    def _create_statements(self) -> list[str]:
        kinds = ", ".join(f"'{k.value}'" for k in PageKind)
        options = ddl.TABLE_OPTIONS
        database = f"CHARACTER SET utf8mb4 COLLATE {ddl.COLLATION}"
        return [
            f"CREATE DATABASE IF NOT EXISTS {quote(self.meta_schema)} {database}",
            f"CREATE DATABASE IF NOT EXISTS {quote(self.data_schema)} {database}",
            f"CREATE TABLE IF NOT EXISTS {self.meta('meta')} (`key` VARCHAR(64) NOT NULL"
            f" PRIMARY KEY, value LONGTEXT, data LONGBLOB) {options}",
            f"CREATE TABLE IF NOT EXISTS {self.meta('sqlite_schema')} (position INT NOT NULL"
            " PRIMARY KEY, type VARCHAR(16) NOT NULL, name LONGTEXT NOT NULL,"
            f" tbl_name LONGTEXT NOT NULL, rootpage BIGINT NOT NULL, `sql` LONGTEXT) {options}",
            f"CREATE TABLE IF NOT EXISTS {self.meta('pages')} (pgno BIGINT NOT NULL PRIMARY KEY"
            f" CHECK (pgno > 0), kind VARCHAR(16) NOT NULL CHECK (kind IN ({kinds})),"
            f" owner {NAME_TYPE}, lo BIGINT, hi BIGINT, seq INT, data LONGBLOB,"
            f" KEY pages_owner_kind_lo (owner(128), kind, lo)) {options}",
            f"CREATE TABLE IF NOT EXISTS {self.meta('overflow_chain')} (owner {OWNER_KEY_TYPE}"
            " NOT NULL, rowid BIGINT NOT NULL, pages LONGTEXT NOT NULL,"
            f" PRIMARY KEY (owner, rowid)) {options}",
            f"CREATE TABLE IF NOT EXISTS {self.meta('commit_log')} (id BIGINT NOT NULL"
            " AUTO_INCREMENT PRIMARY KEY, commit_id CHAR(36) UNIQUE, seq BIGINT, epoch BIGINT,"
            " committed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
            " source VARCHAR(16) NOT NULL, inserted BIGINT NOT NULL, updated BIGINT NOT NULL,"
            " deleted BIGINT NOT NULL, pages BIGINT NOT NULL, ms DOUBLE NOT NULL,"
            f" tables LONGTEXT NOT NULL) {options}",
            f"CREATE TABLE IF NOT EXISTS {self.meta('ddl_pending')} (seq BIGINT NOT NULL"
            f" PRIMARY KEY, steps LONGTEXT NOT NULL) {options}",
        ]

    # ------------------------------------------------------------------ owed DDL

    def finish_ddl(self, conn: mariadb.Connection, seq: int, steps: DdlSteps) -> None:
        """Run the renames and drops a committed write owes (idempotent), then forget them."""
        cur = conn.cursor()
        if steps.marker and self.table_exists(conn, self.data_schema, steps.marker + "a"):
            pairs = [*steps.renames, (steps.marker + "a", steps.marker + "b")]
            cur.execute(
                "RENAME TABLE "
                + ", ".join(f"{self.data(old)} TO {self.data(new)}" for old, new in pairs)
            )
        for name in [*steps.drops, steps.marker + "b"] if steps.marker else steps.drops:
            cur.execute(ddl.drop_table(self.data_schema, name))
        cur.execute(f"DELETE FROM {self.meta('ddl_pending')} WHERE seq = ?", (seq,))

    def recover(self, conn: mariadb.Connection) -> None:
        """Finish what earlier writes owe and drop work tables nothing owes: after a write
        failed, or when a writer takes the store over."""
        if not self.initialised(conn):
            return
        cur = conn.cursor()
        cur.execute(f"SELECT seq, steps FROM {self.meta('ddl_pending')} ORDER BY seq")
        for seq, text in cur.fetchall():
            self.finish_ddl(conn, seq, DdlSteps.from_json(text))
        for name in sorted(self.tables(conn, self.data_schema)):
            if name.startswith(ddl.WORK_PREFIXES):
                cur.execute(ddl.drop_table(self.data_schema, name))

    def marked_tables(self, conn: mariadb.Connection) -> set[str]:
        """Data-database tables carrying the pgfs comment."""
        cur = conn.cursor()
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
            " AND table_comment LIKE ?",
            (self.data_schema, ddl.COMMENT + "%"),
        )
        return {row[0] for row in cur.fetchall()}


def check_server(conn: mariadb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT @@lower_case_table_names, @@version")
    row = cur.fetchone()
    if row and int(row[0]) != 0:
        raise StoreError(
            f"the MariaDB server folds table names (lower_case_table_names={row[0]}); pgfs "
            "needs them kept as they are (lower_case_table_names=0, the default on Linux)"
        )
