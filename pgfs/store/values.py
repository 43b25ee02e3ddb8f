"""SQLite records <-> rows of a data-schema table.

A data table has one typed column per column SQLite stores in the record
(every column but VIRTUAL generated ones), typed by affinity (`ddl.PG_TYPES`),
then the hidden columns `_pgfs_record bytea`, `_pgfs_fields smallint`,
`_pgfs_inexact boolean` and, for a rowid table without an INTEGER PRIMARY
KEY, `_rowid bigint`.

Every row keeps its SQLite record byte for byte in `_pgfs_record` (format 3,
README "What the server holds"): rendering a page copies records, with no
per-value work, so cold reads and VACUUM run at the speed of the wire, and a
write stores what SQLite wrote without proving that the typed columns would
reproduce it. The typed columns are the row for SQL: each holds its value
when the column's type can (a value it cannot hold is a typed NULL, and the
row is marked `_pgfs_inexact`). `_pgfs_fields` is the field count of a
record shorter than the table (written before ALTER TABLE ADD COLUMN).

Rows written by format 2 have `_pgfs_record` NULL when the typed columns
reproduce the record exactly; they are rendered from the typed columns
(`payload_from_pg`), byte for byte as SQLite's encoder writes them.

Conversions (storage class in the record -> PostgreSQL value):

=========== ============== ===============================================
affinity    PostgreSQL     holds
=========== ============== ===============================================
INTEGER     bigint         integers
TEXT        text           text without NUL that decodes in the database
                           encoding (InvalidText and NUL -> NULL)
REAL        float8         floats except NaN; integers (datatype3 §3: SQLite
                           stores an integral REAL as an integer when that
                           fits in 6 bytes, OP_MakeRecord; rendering does
                           the same through `record.stored_real`)
NUMERIC     numeric        integers (scale 0) and finite floats (the
                           shortest decimal that reads back as the same
                           double, scale >= 1: the scale says "REAL")
BLOB/none   bytea          blobs
=========== ============== ===============================================

Every other combination (text in an INTEGER column, a blob in a TEXT
column, ...) gives a typed NULL and an inexact row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.header import TextEncoding
from pgfs.sqlite.record import (
    InvalidText,
    Value,
    decode_record,
    encode_record,
    stored_real,
)
from pgfs.sqlite.schema import Affinity, Column, TableDefinition

HIDDEN_RECORD = "_pgfs_record"
HIDDEN_FIELDS = "_pgfs_fields"
HIDDEN_INEXACT = "_pgfs_inexact"
HIDDEN_ROWID = "_rowid"
HIDDEN_COLUMNS = (HIDDEN_RECORD, HIDDEN_FIELDS, HIDDEN_INEXACT, HIDDEN_ROWID)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


_NATURAL = {
    Affinity.INTEGER: int,
    Affinity.TEXT: str,
    Affinity.REAL: float,
    Affinity.BLOB: bytes,
    Affinity.NUMERIC: None,  # always converted (numeric values are Decimals)
}


@dataclass(frozen=True)
class TableLayout:
    """How one SQLite table maps onto its data-schema table.

    - `columns`: the typed columns of the data table, in declaration order
      (VIRTUAL generated columns left out: they are not in the record and
      PostgreSQL could not compute them);
    - `record_order[i]`: index into `columns` of the record's i-th field
      (identity for rowid tables; PRIMARY KEY columns first, then the rest, for
      WITHOUT ROWID tables, fileformat2 §2.6 / `convertToWithoutRowidTable`);
    - `ipk_index`: index into `columns` of the INTEGER PRIMARY KEY (its record
      field is NULL; the PostgreSQL column holds the rowid);
    - `rowid_column`: the column holding the rowid: the INTEGER PRIMARY KEY's
      name, `_rowid`, or None for a WITHOUT ROWID mirror table.
    """

    definition: TableDefinition
    columns: tuple[Column, ...]
    record_order: tuple[int, ...]
    ipk_index: int | None
    rowid_column: str | None
    plan: tuple[tuple[int, type | None, Affinity | None], ...] = field(
        default=(), compare=False, repr=False
    )
    """Per record field: its column, the Python type stored as is, its affinity (None
    for the INTEGER PRIMARY KEY, whose field SQLite leaves NULL): what `to_pg_row`
    does per field, worked out once."""

    def __post_init__(self) -> None:
        plan = []
        for index in self.record_order:
            if index == self.ipk_index:
                plan.append((index, type(None), None))
            else:
                affinity = self.columns[index].affinity
                plan.append((index, _NATURAL[affinity], affinity))
        object.__setattr__(self, "plan", tuple(plan))

    def __hash__(self) -> int:
        return hash((self.definition.name, self.record_order, self.rowid_column))

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def hidden_rowid(self) -> bool:
        return self.rowid_column == HIDDEN_ROWID and self.ipk_index is None

    @property
    def without_rowid(self) -> bool:
        return self.definition.without_rowid

    @property
    def field_count(self) -> int:
        """Number of fields in a full record of this table."""
        return len(self.record_order)

    def column_names(self) -> list[str]:
        """Data-table columns in `to_pg_row` order: typed, hidden, [_rowid]."""
        names = [c.name for c in self.columns] + [HIDDEN_RECORD, HIDDEN_FIELDS, HIDDEN_INEXACT]
        if self.hidden_rowid:
            names.append(HIDDEN_ROWID)
        return names


def layout_of(table: TableDefinition | TableLayout) -> TableLayout:
    """The `TableLayout` of a table definition (cached: definitions are frozen).

    A layout is returned as is: hot loops pass one to skip hashing the definition.
    """
    if isinstance(table, TableLayout):
        return table
    return _layout_of(table)


@lru_cache(maxsize=4096)
def _layout_of(table: TableDefinition) -> TableLayout:
    stored = tuple(c for c in table.columns if (c.generated or "").lower() != "virtual")
    index_of = {c.name.lower(): i for i, c in enumerate(stored)}
    if table.without_rowid:
        order: list[int] = []
        for key in table.primary_key:
            i = index_of.get(key.lower())
            if i is not None and i not in order:
                order.append(i)
        order += [i for i in range(len(stored)) if i not in order]
        return TableLayout(table, stored, tuple(order), None, None)
    ipk = None
    rowid_column = HIDDEN_ROWID
    if table.rowid_alias is not None:
        alias = table.columns[table.rowid_alias]
        ipk = index_of[alias.name.lower()]
        rowid_column = alias.name
    return TableLayout(table, stored, tuple(range(len(stored))), ipk, rowid_column)


def _decimal_of_float(value: float) -> Decimal:
    """The shortest decimal reading back as `value`, with at least one fractional digit.

    The fractional digit marks the storage class REAL in a `numeric` column.
    PostgreSQL's numeric has no negative zero, so -0.0 becomes 0.0 (and the
    row gets a side record).
    """
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Decimal("0.0")
    if exponent >= 0:
        digits = digits + (0,) * (exponent + 1)
        exponent = -1
    return Decimal((sign, digits, exponent))


def to_pg_value(affinity: Affinity, value: Value | InvalidText) -> Any:
    """The PostgreSQL value of one record field in a column of `affinity` (None: no fit)."""
    if value is None or isinstance(value, InvalidText):
        return None
    if affinity is Affinity.INTEGER:
        return value if type(value) is int else None
    if affinity is Affinity.TEXT:
        if type(value) is not str or "\x00" in value:
            return None
        return value
    if affinity is Affinity.REAL:
        if type(value) is float:
            return None if math.isnan(value) else value
        return float(value) if type(value) is int else None
    if affinity is Affinity.NUMERIC:
        if type(value) is int:
            return Decimal(value)
        if type(value) is float:
            return _decimal_of_float(value) if math.isfinite(value) else None
        return None
    return value if type(value) is bytes else None


def from_pg_value(affinity: Affinity, value: Any) -> Value:
    """The record value rendered from a PostgreSQL value in a column of `affinity`."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return stored_real(value) if affinity is Affinity.REAL else value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None if value.is_nan() else float(value)
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            number = int(value)
            if _INT64_MIN <= number <= _INT64_MAX:
                return number
        return float(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str | bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value)


def _record_values(layout: TableLayout, typed: Sequence[Any], fields: int | None) -> list[Value]:
    count = layout.field_count if fields is None else max(0, min(fields, layout.field_count))
    columns = layout.columns
    out: list[Value] = []
    for position in range(count):
        index = layout.record_order[position]
        if index == layout.ipk_index:
            out.append(None)
        else:
            out.append(from_pg_value(columns[index].affinity, typed[index]))
    return out


def to_pg_row(
    table: TableDefinition | TableLayout,
    rowid: int,
    payload: bytes,
    encoding: TextEncoding,
    schema_format: int,
) -> list[Any]:
    """Parameters for the data-table row of record `payload` (see module docstring).

    Order: typed columns (`TableLayout.columns`), `_pgfs_record`, `_pgfs_fields`,
    `_pgfs_inexact`, then `_rowid` for a table without INTEGER PRIMARY KEY. A
    payload that is not a valid record is kept (PostgreSQL never rejects what
    SQLite wrote): its typed columns are NULL and it is inexact.
    `schema_format` is not needed (the record is kept as it is); it is taken so
    that every backend calls this the same way.
    """
    layout = layout_of(table)
    payload = bytes(payload)
    typed: list[Any] = [None] * len(layout.columns)
    fields: int | None = None
    inexact = False
    try:
        values: list[Value | InvalidText] | None = decode_record(payload, encoding)
    except FormatError:
        values = None
        inexact = True
    if values is not None:
        count = len(values)
        if count < layout.field_count:
            fields = count
        for (index, natural, affinity), value in zip(layout.plan, values, strict=False):
            if value is None:
                continue
            if (
                type(value) is natural
                and (natural is not str or "\x00" not in value)
                and (natural is not float or value == value)  # NaN is not a REAL value
            ):
                typed[index] = value
                continue
            if affinity is None:  # the rowid's column: SQLite stores NULL here
                inexact = True
                continue
            converted = to_pg_value(affinity, value)
            typed[index] = converted
            if converted is None or (
                type(value) is float and value == 0 and math.copysign(1.0, value) < 0
            ):
                inexact = True  # no fit; or numeric, which has no -0
    if layout.ipk_index is not None:
        typed[layout.ipk_index] = rowid
    row = [*typed, payload, fields, inexact]
    if layout.hidden_rowid:
        row.append(rowid)
    return row


def payload_from_pg(
    table: TableDefinition | TableLayout,
    pg_values: Sequence[Any],
    encoding: TextEncoding,
    schema_format: int,
) -> bytes:
    """The record payload of a data-table row (typed columns, `_pgfs_record`,
    `_pgfs_fields`, anything after ignored): the kept record, or for a row
    written without one (format 2), the record its typed columns encode."""
    layout = layout_of(table)
    n = len(layout.columns)
    record = pg_values[n]
    if record is not None:
        return bytes(record)
    fields = pg_values[n + 1]
    return encode_record(
        _record_values(layout, pg_values[:n], fields), encoding, schema_format=schema_format
    )


def is_exact(table: TableDefinition | TableLayout, row: Sequence[Any]) -> bool:
    """True when a `to_pg_row` result's typed columns hold every value of the record."""
    return not row[len(layout_of(table).columns) + 2]
