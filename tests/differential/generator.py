"""A seeded generator of SQL programs over two connections.

The generator is asked for one *unit* at a time: a transaction (an autocommit
statement, or BEGIN ... COMMIT/ROLLBACK with savepoints inside), sometimes with
statements of the other connection interleaved (reads, writes that meet a lock,
a read transaction held open across the commit). It sees the schema as it was
when the unit starts (read from the local file, so rolled back DDL is never
assumed) and follows its own DDL inside the unit.

Nothing random reaches SQLite: no random(), randomblob() or clock functions,
so both files receive exactly the same values.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .program import Conn, JournalMode, Step, setup_steps
from .schema import Column, Schema, Table, TableKind

DECLARED_TYPES = (
    "INTEGER",
    "INT",
    "TEXT",
    "REAL",
    "NUMERIC",
    "BLOB",
    "",
    "VARCHAR(20)",
    "BOOLEAN",
    "DATETIME",
    "DOUBLE",
    "BIGINT",
)
# Sizes of large values: most are larger than a 4096-byte page (overflow chains).
LARGE_SIZES = (700, 1500, 4000, 5000, 9000, 20000)
ALPHABET = "abcxyz ÄÖü😀'"
MAX_TABLES = 6
T = TypeVar("T")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Generator:
    rng: random.Random
    mode: JournalMode
    _cleanup_tries: int = field(default=0)

    # --- units ----------------------------------------------------------------------

    def unit(self, schema: Schema, open_conns: frozenset[Conn]) -> list[Step]:
        """The next transaction, for the schema as it is now."""
        if open_conns:
            # A COMMIT that met a lock left a transaction open: finish it.
            self._cleanup_tries += 1
            end = "COMMIT" if self._cleanup_tries == 1 else "ROLLBACK"
            return [Step(c, end) for c in sorted(open_conns, key=lambda c: c.value)]
        self._cleanup_tries = 0
        conn = self.rng.choice([Conn.A, Conn.A, Conn.B])
        if not schema.tables:
            return self._create_and_fill(conn, schema)
        makers: list[tuple[int, Callable[[Conn, Schema], list[Step]]]] = [
            (35, self._autocommit_write),
            (35, self._explicit_transaction),
            (12, self._ddl_unit),
            (10, self._maintenance),
            (4, self._read_transaction_across_commit),
            (4, self._savepoint_transaction),
        ]
        return self._pick(makers)(conn, schema)

    def _create_and_fill(self, conn: Conn, schema: Schema) -> list[Step]:
        sql, schema = self.create_table(schema)
        table = schema.tables[-1]
        return [Step(conn, sql), Step(conn, self.bulk_insert(table))]

    def _autocommit_write(self, conn: Conn, schema: Schema) -> list[Step]:
        sql, _ = self.statement(schema)
        return [Step(conn, sql)]

    def _ddl_unit(self, conn: Conn, schema: Schema) -> list[Step]:
        sql, _ = self.ddl(schema)
        return [Step(conn, sql)]

    def _explicit_transaction(self, conn: Conn, schema: Schema) -> list[Step]:
        other = conn.other
        begin = self.rng.choice(["BEGIN", "BEGIN", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
        steps = [Step(conn, begin)]
        savepoints: list[str] = []
        for _ in range(self.rng.randint(1, 6)):
            roll = self.rng.random()
            if roll < 0.12:
                steps.append(self._savepoint_step(conn, savepoints))
            elif roll < 0.2:
                steps.append(Step(other, self.read(schema)))
            elif roll < 0.25:
                # Meets the lock (or, after reads only, takes the write lock first).
                sql, _ = self.write(schema)
                steps.append(Step(other, sql))
            else:
                sql, schema = self.statement(schema)
                steps.append(Step(conn, sql))
        steps.append(Step(conn, "COMMIT" if self.rng.random() < 0.8 else "ROLLBACK"))
        return steps

    def _savepoint_transaction(self, conn: Conn, schema: Schema) -> list[Step]:
        """SAVEPOINT outside BEGIN starts a transaction; RELEASE of it commits."""
        steps = [Step(conn, "SAVEPOINT outer_sp")]
        savepoints: list[str] = []
        for _ in range(self.rng.randint(1, 5)):
            if self.rng.random() < 0.3:
                steps.append(self._savepoint_step(conn, savepoints))
            else:
                sql, schema = self.statement(schema)
                steps.append(Step(conn, sql))
        end = "RELEASE outer_sp" if self.rng.random() < 0.75 else "ROLLBACK TO outer_sp"
        steps.append(Step(conn, end))
        if end.startswith("ROLLBACK"):
            steps.append(Step(conn, "RELEASE outer_sp"))
        return steps

    def _savepoint_step(self, conn: Conn, savepoints: list[str]) -> Step:
        if savepoints and self.rng.random() < 0.6:
            name = self.rng.choice(savepoints)
            if self.rng.random() < 0.5:
                del savepoints[savepoints.index(name) :]
                return Step(conn, f"RELEASE {name}")
            del savepoints[savepoints.index(name) + 1 :]
            return Step(conn, f"ROLLBACK TO {name}")
        name = f"sp{len(savepoints) + 1}"
        savepoints.append(name)
        return Step(conn, f"SAVEPOINT {name}")

    def _read_transaction_across_commit(self, conn: Conn, schema: Schema) -> list[Step]:
        """The other connection holds a read transaction while this one commits: in WAL
        it keeps reading its snapshot (pre-images); in a rollback mode the COMMIT meets
        its lock and is retried once the reader is done."""
        other = conn.other
        read = self.read(schema)
        steps = [Step(conn, "BEGIN"), Step(other, "BEGIN"), Step(other, read)]
        for _ in range(self.rng.randint(1, 4)):
            sql, schema = self.write(schema)
            steps.append(Step(conn, sql))
        steps += [
            Step(conn, "COMMIT"),
            Step(other, read),
            Step(other, "COMMIT"),
            Step(conn, "COMMIT"),
        ]
        return steps

    def _maintenance(self, conn: Conn, schema: Schema) -> list[Step]:
        choices: list[list[str]] = [
            ["VACUUM"],
            [f"PRAGMA auto_vacuum={self.rng.choice(['NONE', 'FULL', 'INCREMENTAL'])}", "VACUUM"],
            [self.rng.choice(["PRAGMA incremental_vacuum", "PRAGMA incremental_vacuum(3)"])],
            ["ANALYZE"],
            ["REINDEX"],
            [f"PRAGMA user_version={self.rng.randint(0, 1000)}"],
        ]
        victim = self.rng.choice(schema.tables)
        choices.append([f"DELETE FROM {quote(victim.name)}", "VACUUM"])
        choices.append([f"DROP TABLE {quote(victim.name)}", "VACUUM"])
        if self.mode.rollback:
            size = self.rng.choice([1024, 2048, 4096, 8192])
            choices.append([f"PRAGMA page_size={size}", "VACUUM"])
        else:
            kind = self.rng.choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
            choices.append([f"PRAGMA wal_checkpoint({kind})"])
        return [Step(conn, sql) for sql in self.rng.choice(choices)]

    # --- statements -----------------------------------------------------------------

    def statement(self, schema: Schema) -> tuple[str, Schema]:
        """Any statement a transaction may hold: mostly writes, some DDL, some reads."""
        roll = self.rng.random()
        if roll < 0.12:
            return self.ddl(schema)
        if roll < 0.2:
            return self.read(schema), schema
        return self.write(schema)

    def write(self, schema: Schema) -> tuple[str, Schema]:
        if not schema.tables:
            return self.create_table(schema)
        table = self.rng.choice(schema.tables)
        makers: list[tuple[int, Callable[[Table], str]]] = [
            (30, self.insert),
            (8, self.bulk_insert),
            (16, self.update),
            (10, self.delete),
            (10, self.replace),
            (4, self.upsert),
        ]
        if table.rows > 400:
            makers.append((40, self.delete))
        return self._pick(makers)(table), schema

    def read(self, schema: Schema) -> str:
        if schema.views and self.rng.random() < 0.3:
            return f"SELECT * FROM {quote(self.rng.choice(schema.views))} LIMIT 5"
        if not schema.tables:
            return "SELECT count(*) FROM sqlite_schema"
        table = self.rng.choice(schema.tables)
        column = quote(self.rng.choice(table.columns).name)
        name = quote(table.name)
        return self.rng.choice(
            [
                f"SELECT count(*), sum(length({column})) FROM {name}",
                f"SELECT typeof({column}), {column} FROM {name} LIMIT 3 "
                f"OFFSET {self.rng.randint(0, 20)}",
                f"SELECT * FROM {name} WHERE {self.predicate(table)} LIMIT 4",
            ]
        )

    def ddl(self, schema: Schema) -> tuple[str, Schema]:
        makers: list[tuple[int, Callable[[Schema], tuple[str, Schema]]]] = [
            (12 if len(schema.tables) < MAX_TABLES else 1, self.create_table),
            (10, self.create_index),
            (4, self.create_view),
            (5, self.create_trigger),
            (5 if len(schema.tables) > 2 else 1, self.drop),
            (14, self.alter),
        ]
        return self._pick(makers)(schema)

    def create_table(self, schema: Schema) -> tuple[str, Schema]:
        name = self._new_name(schema, "t")
        kind = self.rng.choice(list(TableKind))
        columns: list[Column] = []
        parts: list[str] = []
        if kind in (TableKind.INTEGER_PK, TableKind.AUTOINCREMENT):
            suffix = " AUTOINCREMENT" if kind is TableKind.AUTOINCREMENT else ""
            columns.append(Column("id", "INTEGER", True))
            parts.append(f'"id" INTEGER PRIMARY KEY{suffix}')
        elif kind is TableKind.TEXT_PK or kind is TableKind.WITHOUT_ROWID:
            key_type = self.rng.choice(["TEXT", "INTEGER", ""])
            columns.append(Column("k", key_type, True))
            parts.append(f'"k" {key_type}'.rstrip())
        for number in range(1, self.rng.randint(2, 5)):
            column = Column(f"c{number}" if self.rng.random() < 0.9 else f"Col {number}", "")
            decl = self.rng.choice(DECLARED_TYPES)
            columns.append(Column(column.name, decl))
            parts.append(f"{quote(column.name)} {decl}".rstrip() + self._column_constraint())
        if kind is TableKind.WITHOUT_ROWID and self.rng.random() < 0.4:
            columns[1] = Column(columns[1].name, columns[1].decl_type, True)
            parts.append(f'PRIMARY KEY("k", {quote(columns[1].name)})')
        elif kind in (TableKind.TEXT_PK, TableKind.WITHOUT_ROWID):
            parts.append('PRIMARY KEY("k")')
        tail = " WITHOUT ROWID" if kind is TableKind.WITHOUT_ROWID else ""
        sql = f"CREATE TABLE {quote(name)}({', '.join(parts)}){tail}"
        return sql, schema.with_table(Table(name, kind, tuple(columns)))

    def _column_constraint(self) -> str:
        roll = self.rng.random()
        if roll < 0.1:
            return f" DEFAULT {self.literal()}"
        if roll < 0.14:
            return " UNIQUE"
        if roll < 0.18:
            return " NOT NULL DEFAULT 0"
        if roll < 0.21:
            return " COLLATE NOCASE"
        return ""

    def create_index(self, schema: Schema) -> tuple[str, Schema]:
        if not schema.tables:
            return self.create_table(schema)
        table = self.rng.choice(schema.tables)
        name = self._new_name(schema, "i")
        columns = self.rng.sample(table.columns, k=min(len(table.columns), self.rng.randint(1, 2)))
        terms = [quote(c.name) + self.rng.choice(["", "", " DESC"]) for c in columns]
        if self.rng.random() < 0.15:
            terms = [f"lower({quote(columns[0].name)})"]
        unique = "UNIQUE " if self.rng.random() < 0.15 else ""
        where = f" WHERE {quote(columns[0].name)} IS NOT NULL" if self.rng.random() < 0.15 else ""
        sql = f"CREATE {unique}INDEX {quote(name)} ON {quote(table.name)}({', '.join(terms)})"
        return sql + where, schema

    def create_view(self, schema: Schema) -> tuple[str, Schema]:
        if not schema.tables:
            return self.create_table(schema)
        table = self.rng.choice(schema.tables)
        name = self._new_name(schema, "v")
        column = quote(self.rng.choice(table.columns).name)
        body = self.rng.choice(
            [
                f"SELECT * FROM {quote(table.name)} WHERE {self.predicate(table)}",
                f"SELECT count(*) AS n, max({column}) AS m FROM {quote(table.name)}",
            ]
        )
        return f"CREATE VIEW {quote(name)} AS {body}", schema

    def create_trigger(self, schema: Schema) -> tuple[str, Schema]:
        if not schema.tables:
            return self.create_table(schema)
        source = self.rng.choice(schema.tables)
        target = self.rng.choice(schema.tables)
        event = self.rng.choice(["INSERT", "UPDATE", "DELETE"])
        row = "OLD" if event == "DELETE" else "NEW"
        source_column = quote(self.rng.choice(source.columns).name)
        target_column = self.rng.choice(target.data_columns or target.columns)
        name = self._new_name(schema, "tr")
        # One row per firing: triggers that feed each other then grow a table linearly.
        one_row = self._one_row(target)
        actions = [
            f"INSERT OR IGNORE INTO {quote(target.name)}({quote(target_column.name)}) "
            f"VALUES ({row}.{source_column})",
            f"UPDATE {quote(target.name)} SET {quote(target_column.name)} = "
            f"{row}.{source_column} WHERE {one_row}",
            f"DELETE FROM {quote(target.name)} WHERE {one_row}",
        ]
        action = self.rng.choice(actions)
        when = self.rng.choice(["AFTER", "AFTER", "BEFORE"])
        sql = (
            f"CREATE TRIGGER {quote(name)} {when} {event} ON {quote(source.name)} "
            f"BEGIN {action}; END"
        )
        return sql, schema

    def drop(self, schema: Schema) -> tuple[str, Schema]:
        options: list[tuple[str, str]] = [("TABLE", t.name) for t in schema.tables]
        options += [("INDEX", i) for i, _ in schema.indexes]
        options += [("VIEW", v) for v in schema.views]
        options += [("TRIGGER", t) for t in schema.triggers]
        kind, name = self.rng.choice(options)
        if kind == "TABLE":
            schema = schema.without_table(name)
        return f"DROP {kind} {quote(name)}", schema

    def alter(self, schema: Schema) -> tuple[str, Schema]:
        if not schema.tables:
            return self.create_table(schema)
        table = self.rng.choice(schema.tables)
        name = quote(table.name)
        roll = self.rng.random()
        if roll < 0.45:
            column = f"c{len(table.columns) + self.rng.randint(1, 9)}"
            while any(c.name.lower() == column for c in table.columns):
                column += "x"
            decl = self.rng.choice(DECLARED_TYPES)
            default = f" DEFAULT {self.literal()}" if self.rng.random() < 0.5 else ""
            added = Table(table.name, table.kind, (*table.columns, Column(column, decl)))
            sql = f"ALTER TABLE {name} ADD COLUMN {quote(column)} {decl}".rstrip() + default
            return sql, schema.with_table(added)
        if roll < 0.6:
            new_name = self._new_name(schema, "t")
            renamed = Table(new_name, table.kind, table.columns, table.rows)
            return (
                f"ALTER TABLE {name} RENAME TO {quote(new_name)}",
                schema.without_table(table.name).with_table(renamed),
            )
        column = self.rng.choice(table.columns)
        if roll < 0.8:
            new_column = column.name + "r"
            columns = tuple(
                Column(new_column, c.decl_type, c.primary_key) if c == column else c
                for c in table.columns
            )
            sql = f"ALTER TABLE {name} RENAME COLUMN {quote(column.name)} TO {quote(new_column)}"
            return sql, schema.with_table(Table(table.name, table.kind, columns, table.rows))
        columns = tuple(c for c in table.columns if c != column)
        sql = f"ALTER TABLE {name} DROP COLUMN {quote(column.name)}"
        if not columns:
            return sql, schema
        return sql, schema.with_table(Table(table.name, table.kind, columns, table.rows))

    # --- rows -----------------------------------------------------------------------

    def insert(self, table: Table) -> str:
        columns = self._fill_columns(table)
        rows = [self._row(table, columns) for _ in range(self.rng.choice([1, 1, 1, 2, 3]))]
        verb = self.rng.choice(["INSERT", "INSERT", "INSERT OR IGNORE", "INSERT OR REPLACE"])
        return f"{verb} INTO {quote(table.name)}({_names(columns)}) VALUES {', '.join(rows)}"

    def replace(self, table: Table) -> str:
        """REPLACE of rows that probably exist, often with a large value."""
        columns = self._fill_columns(table, with_key=True)
        values = ", ".join(self._value_for(c, table, large=True) for c in columns)
        return f"REPLACE INTO {quote(table.name)}({_names(columns)}) VALUES ({values})"

    def upsert(self, table: Table) -> str:
        if not table.key:
            return self.insert(table)
        columns = self._fill_columns(table, with_key=True)
        values = ", ".join(self._value_for(c, table, large=False) for c in columns)
        updates = [c for c in columns if not c.primary_key] or list(columns)
        target = self.rng.choice(updates)
        return (
            f"INSERT INTO {quote(table.name)}({_names(columns)}) VALUES ({values}) "
            f"ON CONFLICT({_names(table.key)}) DO UPDATE SET {quote(target.name)} = "
            f"excluded.{quote(target.name)}"
        )

    def bulk_insert(self, table: Table) -> str:
        """Tens to hundreds of rows from a recursive CTE: page splits, new overflow chains."""
        count = self.rng.choice([20, 50, 120, 300])
        offset = self.rng.randint(0, 10_000)
        columns = self._fill_columns(table, with_key=True)
        exprs = [self._series_expr(c, offset) for c in columns]
        verb = self.rng.choice(["INSERT", "INSERT OR IGNORE", "INSERT OR REPLACE"])
        return (
            f"{verb} INTO {quote(table.name)}({_names(columns)}) WITH RECURSIVE s(i) AS "
            f"(SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count}) "
            f"SELECT {', '.join(exprs)} FROM s"
        )

    def update(self, table: Table) -> str:
        column = self.rng.choice(table.data_columns or table.columns)
        name = quote(column.name)
        new = self.rng.choice(
            [
                self.value(large=self.rng.random() < 0.3),
                f"{name} || 'u'",
                f"{name} + 1",
                f"zeroblob({self.rng.choice(LARGE_SIZES)})",
                "NULL",
            ]
        )
        verb = self.rng.choice(["UPDATE", "UPDATE", "UPDATE OR REPLACE", "UPDATE OR IGNORE"])
        return f"{verb} {quote(table.name)} SET {name} = {new} WHERE {self.predicate(table)}"

    def delete(self, table: Table) -> str:
        return f"DELETE FROM {quote(table.name)} WHERE {self.predicate(table)}"

    def predicate(self, table: Table) -> str:
        column = quote(self.rng.choice(table.columns).name)
        choices = [
            f"{column} IS NULL",
            f"length({column}) > {self.rng.choice([0, 10, 100, 3000])}",
            f"typeof({column}) = '{self.rng.choice(['integer', 'real', 'text', 'blob'])}'",
        ]
        if table.has_rowid:
            k = self.rng.randint(2, 7)
            low = self.rng.randint(-5, 300)
            choices += [
                f"rowid % {k} = {self.rng.randint(0, k - 1)}",
                f"rowid BETWEEN {low} AND {low + self.rng.randint(0, 80)}",
                f"rowid = {self.rng.randint(1, 60)}",
            ]
        else:
            key = quote(table.key[0].name) if table.key else column
            choices.append(f"{key} > {self._key_value(table.key[0] if table.key else None)}")
        return self.rng.choice(choices)

    def _one_row(self, table: Table) -> str:
        if table.has_rowid:
            return f"rowid = {self.rng.randint(1, 60)}"
        key = table.key[0] if table.key else table.columns[0]
        return f"{quote(key.name)} = {self._key_value(key)}"

    def _fill_columns(self, table: Table, with_key: bool = False) -> list[Column]:
        columns = list(table.data_columns)
        if with_key and table.kind in (TableKind.INTEGER_PK, TableKind.AUTOINCREMENT):
            columns = list(table.key) + columns
        rest = [c for c in columns if not c.primary_key]
        if rest and self.rng.random() < 0.25:
            keep = [c for c in columns if c.primary_key]
            columns = keep + self.rng.sample(rest, k=self.rng.randint(1, len(rest)))
        return columns or list(table.columns)

    def _row(self, table: Table, columns: list[Column]) -> str:
        large = self.rng.random() < 0.25
        return "(" + ", ".join(self._value_for(c, table, large=large) for c in columns) + ")"

    def _value_for(self, column: Column, table: Table, *, large: bool) -> str:
        if column.primary_key:
            return self._key_value(column)
        return self.value(large=large and self.rng.random() < 0.5)

    def _key_value(self, column: Column | None) -> str:
        number = self.rng.choice([self.rng.randint(1, 60), self.rng.randint(-3, 3), 2**40 + 1])
        if column is not None and column.decl_type == "TEXT" and self.rng.random() < 0.8:
            return _text_literal(f"k{number}")
        return str(number)

    def _series_expr(self, column: Column, offset: int) -> str:
        if column.primary_key:
            if column.decl_type == "TEXT":
                return f"'k' || (i + {offset})"
            return f"i + {offset}"
        return self.rng.choice(
            [
                "i",
                f"i * {self.rng.randint(2, 9)} % 13",
                "'r' || i",
                f"printf('%0*d', i * {self.rng.randint(1, 60)} % 6000 + 1, i)",
                f"zeroblob(i % 4 * {self.rng.choice([300, 1500, 3000])})",
                "CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END",
            ]
        )

    def value(self, *, large: bool) -> str:
        """A SQL literal or a deterministic expression; any storage class."""
        if large:
            size = self.rng.choice(LARGE_SIZES)
            return self.rng.choice(
                [
                    f"zeroblob({size})",
                    f"printf('%0*d', {size}, {self.rng.randint(0, 999)})",
                    f"hex(zeroblob({size // 2}))",
                ]
            )
        roll = self.rng.random()
        if roll < 0.1:
            return "NULL"
        if roll < 0.35:
            return str(self.rng.randint(-100, 1000))
        if roll < 0.42:
            return str(self.rng.choice([2**31, -(2**40), 2**53 + 1, 2**62, -(2**63), 2**63 - 1]))
        if roll < 0.55:
            return repr(self.rng.choice([0.5, -1.25, 3.0, 1e300, 2.5e-300, 1e15, 123456.789]))
        if roll < 0.8:
            length = self.rng.randint(0, 30)
            return _text_literal("".join(self.rng.choice(ALPHABET) for _ in range(length)))
        if roll < 0.88:
            return _text_literal(self.rng.choice(["12", "4.5", " 7", "1e3", "0x10", "-0"]))
        if roll < 0.95:
            return "X'" + self.rng.randbytes(self.rng.randint(0, 24)).hex() + "'"
        return "'nul' || char(0) || 'inside'"

    def literal(self) -> str:
        """A value that is a plain literal (what DEFAULT and ADD COLUMN accept)."""
        while True:
            text = self.value(large=False)
            if "(" not in text:
                return text

    # --- helpers --------------------------------------------------------------------

    def _new_name(self, schema: Schema, prefix: str) -> str:
        fancy = prefix == "t" and self.rng.random() < 0.1
        stem = "Tab " if fancy else prefix
        taken = schema.names
        number = 1
        while f"{stem}{number}".lower() in taken:
            number += 1
        return f"{stem}{number}"

    def _pick(self, weighted: list[tuple[int, T]]) -> T:
        return self.rng.choices([m for _, m in weighted], weights=[w for w, _ in weighted])[0]


def _names(columns: list[Column] | tuple[Column, ...]) -> str:
    return ", ".join(quote(c.name) for c in columns)


@dataclass
class GeneratedSource:
    """`units` transactions from a generator, then whatever closes an open transaction."""

    generator: Generator
    units: int

    def next_steps(self, schema: Schema, open_conns: frozenset[Conn]) -> list[Step] | None:
        if self.units <= 0 and (not open_conns or self.units <= -3):
            return None
        self.units -= 1
        return self.generator.unit(schema, open_conns)


def generated(seed: int, mode: JournalMode, units: int) -> tuple[tuple[Step, ...], GeneratedSource]:
    """The setup and the step source of the program with this seed."""
    rng = random.Random(f"{seed}-{mode.value}")
    return setup_steps(
        mode, database=_database_pragmas(rng), connection=_connection_pragmas(rng, mode)
    ), GeneratedSource(Generator(rng, mode), units)


def _database_pragmas(rng: random.Random) -> list[str]:
    """Small pages make deep trees and long overflow chains; auto-vacuum from the start
    moves pages at every commit."""
    pragmas = []
    page_size = rng.choice([None, None, None, 512, 1024, 8192])
    if page_size is not None:
        pragmas.append(f"PRAGMA page_size={page_size}")
    auto_vacuum = rng.choice([None, None, None, "FULL", "INCREMENTAL"])
    if auto_vacuum is not None:
        pragmas.append(f"PRAGMA auto_vacuum={auto_vacuum}")
    return pragmas


def _connection_pragmas(rng: random.Random, mode: JournalMode) -> list[str]:
    """A small page cache spills before COMMIT; synchronous decides WAL syncs and
    padding; secure_delete writes freed pages; journal_size_limit=0 makes PERSIST
    truncate its journal."""
    pragmas = []
    cache_size = rng.choice([None, None, 10, 40])
    if cache_size is not None:
        pragmas.append(f"PRAGMA cache_size={cache_size}")
    synchronous = rng.choice([None, None, "OFF", "NORMAL", "FULL"])
    if synchronous is not None:
        pragmas.append(f"PRAGMA synchronous={synchronous}")
    if rng.random() < 0.2:
        pragmas.append("PRAGMA secure_delete=ON")
    if mode is JournalMode.PERSIST and rng.random() < 0.3:
        pragmas.append("PRAGMA journal_size_limit=0")
    return pragmas
