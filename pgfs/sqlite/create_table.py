"""CREATE TABLE parsing: `parse_create_table(sql) -> TableDefinition`.

parse_create_table follows SQLite's own grammar for a column list (parse.y:
``columnname ::= nm typetoken``, ``carglist``, ``conslist``) over the tokens of
sqlglot's SQLite tokenizer, reading the raw text spans the way sqlite3AddColumn
does. sqlglot's *parser* is not used for the structure: it maps INT and INTEGER
to the same type (which decides rowid aliasing), drops the type text, and
rejects valid SQLite such as ``PRIMARY KEY(a DESC)``, multi-word types or
``ON CONFLICT REPLACE`` in a table constraint. When the token walk meets
something it does not expect, the statement is handed to SQLite itself: an
in-memory database loads it as a schema row (PRAGMA writable_schema, so
unknown collations and functions do not matter) and ``PRAGMA table_xinfo``,
``index_list`` and ``table_list`` describe it.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import sqlglot
from sqlglot.errors import SqlglotError

from pgfs.sqlite.definitions import Column, TableDefinition, affinity_of
from pgfs.sqlite.errors import FormatError, UnsupportedFeatureError

# ---------------------------------------------------------------- SQLite's text rules

_QUOTES = "\"'`["
# sqlite3StdType: type names kept as an enum (shown upper case by table_xinfo).
_STD_TYPES = {"ANY", "BLOB", "INT", "INTEGER", "REAL", "TEXT"}


def sqlite_dequote(text: str) -> str:
    """sqlite3Dequote: strip a leading quote and its match, un-double inner ones."""
    if not text or text[0] not in _QUOTES:
        return text
    quote = "]" if text[0] == "[" else text[0]
    out = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            break
        out.append(ch)
        i += 1
    return "".join(out)


def _dequote_token(text: str) -> str:
    """sqlite3DequoteToken: drop the outer quotes only if no quote is inside."""
    if len(text) < 2 or text[0] not in _QUOTES:
        return text
    if any(ch in _QUOTES for ch in text[1:-1]):
        return text
    return text[1:-1]


def declared_type_text(span: str) -> str:
    """The declared type as sqlite3AddColumn stores it from the raw type span:
    a trailing "GENERATED ALWAYS" (absorbed by the grammar into the type name)
    removed, standard names upper-cased, the rest dequoted."""
    t = span
    if len(t) >= 16 and t[-6:].lower() == "always":
        t = t[:-6].rstrip()
        if len(t) >= 9 and t[-9:].lower() == "generated":
            t = t[:-9].rstrip()
    if len(t) >= 3:
        t = _dequote_token(t)
        if t.upper() in _STD_TYPES:
            return t.upper()
    return sqlite_dequote(t)


# ---------------------------------------------------------------- token walk


class _Fallback(Exception):
    """The token walk met something it does not model: ask SQLite."""


@dataclass
class _Tok:
    raw: str  # the exact source text
    word: str  # upper-cased, whitespace-normalised; "" when quoted
    start: int  # offsets in the statement, end exclusive
    end: int

    @property
    def quoted(self) -> bool:
        return self.raw[:1] in _QUOTES


def _tokenize(sql: str) -> list[_Tok]:
    try:
        tokens = sqlglot.tokenize(sql, read="sqlite")
    except (SqlglotError, ValueError) as exc:
        raise _Fallback(str(exc)) from None
    out = []
    for t in tokens:
        raw = sql[t.start : t.end + 1]
        word = "" if raw[:1] in _QUOTES else " ".join(raw.upper().split())
        out.append(_Tok(raw, word, t.start, t.end + 1))
    return out


_TABLE_CONSTRAINTS = {
    "CONSTRAINT",
    "PRIMARY KEY",
    "PRIMARY",
    "UNIQUE",
    "CHECK",
    "FOREIGN KEY",
    "FOREIGN",
}
# Words that end a type name: the column-constraint keywords that the grammar
# does not let fall back to identifiers (GENERATED and ALWAYS do fall back,
# which is why sqlite3AddColumn trims them from the type).
_TYPE_END = {
    "CONSTRAINT",
    "DEFAULT",
    "NULL",
    "NOT",
    "NOT NULL",
    "PRIMARY",
    "PRIMARY KEY",
    "UNIQUE",
    "CHECK",
    "REFERENCES",
    "COLLATE",
    "AS",
    ",",
    "(",
    ")",
}


def _split_top(tokens: list[_Tok]) -> list[list[_Tok]]:
    """Split at commas outside parentheses."""
    items: list[list[_Tok]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.word == "(":
            depth += 1
        elif tok.word == ")":
            depth -= 1
        if tok.word == "," and depth == 0:
            items.append([])
        else:
            items[-1].append(tok)
    return items


def _skip_parens(tokens: list[_Tok], i: int) -> int:
    """tokens[i] is "(": the index after its matching ")"."""
    depth = 0
    while i < len(tokens):
        if tokens[i].word == "(":
            depth += 1
        elif tokens[i].word == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Fallback("unbalanced parentheses")


def _is_primary_key(item: list[_Tok], i: int) -> int:
    """Number of tokens of a PRIMARY KEY keyword at i (0 if none)."""
    if item[i].word == "PRIMARY KEY":
        return 1
    if item[i].word == "PRIMARY" and i + 1 < len(item) and item[i + 1].word == "KEY":
        return 2
    return 0


@dataclass
class _ColumnSpec:
    column: Column
    pk: bool = False
    pk_desc: bool = False


def _parse_column(sql: str, item: list[_Tok]) -> _ColumnSpec:
    """``columnname carglist``: the name, the type span, PRIMARY KEY and AS (...)."""
    name_tok = item[0]
    if not name_tok.quoted and name_tok.word in _TYPE_END:
        raise _Fallback(f"unexpected {name_tok.raw!r} where a column name belongs")
    name = sqlite_dequote(name_tok.raw)
    i = 1
    while i < len(item) and (item[i].quoted or item[i].word not in _TYPE_END):
        i += 1
    if i > 1 and i < len(item) and item[i].word == "(":
        i = _skip_parens(item, i)
    declared = declared_type_text(sql[item[1].start : item[i - 1].end]) if i > 1 else ""
    spec = _ColumnSpec(Column(name, declared, affinity_of(declared)))
    generated = None
    while i < len(item):
        tok = item[i]
        if tok.word == "(":
            i = _skip_parens(item, i)
            continue
        n = 0 if tok.quoted else _is_primary_key(item, i)
        if n:
            if spec.pk:
                raise _Fallback("two PRIMARY KEY clauses on one column")
            spec.pk = True
            i += n
            if i < len(item) and item[i].word in ("ASC", "DESC"):
                spec.pk_desc = item[i].word == "DESC"
                i += 1
            continue
        if tok.word == "AS" and i + 1 < len(item) and item[i + 1].word == "(":
            i = _skip_parens(item, i + 1)
            generated = "virtual"
            if i < len(item) and item[i].word in ("VIRTUAL", "STORED"):
                generated = item[i].word.lower()
                i += 1
            continue
        i += 1
    if generated:
        spec.column = Column(name, declared, affinity_of(declared), generated)
    return spec


def _table_primary_keys(item: list[_Tok]) -> list[list[str]]:
    """PRIMARY KEY (sortlist) clauses in a table-constraint item: column names.

    Several constraints may follow each other without commas (``tconscomma``),
    so every PRIMARY KEY at the top level of the item counts.
    """
    found = []
    i = 0
    while i < len(item):
        if item[i].word == "(":
            i = _skip_parens(item, i)
            continue
        n = 0 if item[i].quoted else _is_primary_key(item, i)
        if not n:
            i += 1
            continue
        i += n
        if i >= len(item) or item[i].word != "(":
            raise _Fallback("PRIMARY KEY without a column list")
        end = _skip_parens(item, i)
        names = []
        for term in _split_top(item[i + 1 : end - 1]):
            if not term or (not term[0].quoted and term[0].word in _TYPE_END):
                raise _Fallback("PRIMARY KEY term is not a column name")
            rest = [t.word for t in term[1:]]
            # name [COLLATE x] [ASC|DESC]: anything else is an expression.
            if rest[:1] == ["COLLATE"]:
                rest = rest[2:]
            if rest not in ([], ["ASC"], ["DESC"]):
                raise _Fallback("PRIMARY KEY term is an expression")
            names.append(sqlite_dequote(term[0].raw))
        found.append(names)
        i = end
    return found


def _parse_tokens(sql: str) -> TableDefinition:
    toks = _tokenize(sql)
    words = [t.word for t in toks]
    i = 0
    if words[:1] != ["CREATE"]:
        raise FormatError("not a CREATE TABLE statement")
    i = 1
    if i < len(words) and words[i] in ("TEMP", "TEMPORARY"):
        i += 1
    if i < len(words) and words[i] == "VIRTUAL":
        raise UnsupportedFeatureError("CREATE VIRTUAL TABLE is not supported")
    if i >= len(words) or words[i] != "TABLE":
        raise FormatError("not a CREATE TABLE statement")
    i += 1
    if words[i : i + 3] == ["IF", "NOT", "EXISTS"]:
        i += 3
    if i + 2 < len(toks) and words[i + 1] == ".":
        i += 2
    if i >= len(toks):
        raise _Fallback("no table name")
    table = sqlite_dequote(toks[i].raw)
    i += 1
    if i >= len(toks) or words[i] != "(":
        raise _Fallback("no column list (CREATE TABLE ... AS SELECT?)")
    end = _skip_parens(toks, i)
    items = _split_top(toks[i + 1 : end - 1])
    options = [w for w in words[end:] if w not in (",", ";")]
    if options not in ([], ["WITHOUT", "ROWID"], ["STRICT"]) and sorted(options) != sorted(
        ["WITHOUT", "ROWID", "STRICT"]
    ):
        raise _Fallback(f"table options {options}")
    without_rowid = "WITHOUT" in options

    specs: list[_ColumnSpec] = []
    table_pks: list[list[str]] = []
    in_constraints = False
    for item in items:
        if not item:
            raise _Fallback("empty item in the column list")
        first = item[0]
        if not first.quoted and first.word in _TABLE_CONSTRAINTS:
            in_constraints = True
        if in_constraints:
            table_pks.extend(_table_primary_keys(item))
        else:
            specs.append(_parse_column(sql, item))
    if not specs:
        raise _Fallback("no columns")
    return _definition(table, specs, table_pks, without_rowid)


def _definition(
    table: str, specs: list[_ColumnSpec], table_pks: list[list[str]], without_rowid: bool
) -> TableDefinition:
    columns = tuple(s.column for s in specs)
    folded = [c.name.casefold() for c in columns]
    if len(set(folded)) != len(folded):
        raise _Fallback("duplicate column names")
    column_pks = [i for i, s in enumerate(specs) if s.pk]
    if len(column_pks) + len(table_pks) > 1:
        raise _Fallback("more than one primary key")
    alias = None
    if column_pks:
        index = column_pks[0]
        keys = [index]
        # "INTEGER PRIMARY KEY DESC" as a column constraint is not an alias
        # (lang_createtable.html#rowid): sqlite3AddPrimaryKey gets sortOrder DESC.
        if columns[index].declared_type == "INTEGER" and not specs[index].pk_desc:
            alias = index
    elif table_pks:
        keys = []
        for name in table_pks[0]:
            if name.casefold() not in folded:
                raise _Fallback(f"PRIMARY KEY names unknown column {name!r}")
            index = folded.index(name.casefold())
            if index not in keys:
                keys.append(index)
        # PRIMARY KEY(x DESC) as a table constraint is an alias (sortOrder 0).
        if len(table_pks[0]) == 1 and columns[keys[0]].declared_type == "INTEGER":
            alias = keys[0]
    else:
        keys = []
    if without_rowid:
        alias = None
        if not keys:
            raise FormatError(f"WITHOUT ROWID table {table!r} has no PRIMARY KEY")
    if any(columns[k].generated for k in keys):
        raise _Fallback("generated column in the primary key")
    return TableDefinition(
        name=table,
        columns=columns,
        rowid_alias=alias,
        without_rowid=without_rowid,
        primary_key=tuple(columns[k].name for k in keys),
    )


# ---------------------------------------------------------------- SQLite fallback


_CREATE_TABLE = re.compile(r"\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE\b", re.IGNORECASE)


def _authorize(action: int, arg1, arg2, db_name, trigger) -> int:
    """Nothing the statement does may reach outside the in-memory database."""
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _load_into_sqlite(con: sqlite3.Connection, sql: str) -> None:
    """Create the table in an empty database: run the statement, or, when SQLite
    refuses to run it (unknown collation or function), load it as a schema row
    as SQLite does when it opens a file (PRAGMA writable_schema).

    The text may come from a hostile file: only a single CREATE TABLE runs
    (sqlite3 refuses several statements), and ATTACH is denied."""
    if not _CREATE_TABLE.match(sql):
        if re.match(r"\s*CREATE\s+VIRTUAL\s+TABLE\b", sql, re.IGNORECASE):
            raise UnsupportedFeatureError("CREATE VIRTUAL TABLE is not supported")
        raise FormatError(f"not a CREATE TABLE statement: {sql[:80]!r}")
    con.set_authorizer(_authorize)
    try:
        con.execute(sql)
        return
    except sqlite3.Error:
        pass
    con.execute("PRAGMA writable_schema=ON")
    con.execute(
        "INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql)"
        " VALUES ('table', '_pgfs_probe', '_pgfs_probe', 0, ?)",
        (sql,),
    )
    version = con.execute("PRAGMA schema_version").fetchone()[0]
    con.execute(f"PRAGMA schema_version={int(version) + 1}")


def _parse_with_sqlite(sql: str) -> TableDefinition:
    """Ask SQLite (an in-memory database) and read PRAGMA table_list,
    table_xinfo and index_list."""
    con = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _load_into_sqlite(con, sql)
        tables = [
            row
            for row in con.execute("PRAGMA table_list")
            if row[1] not in ("sqlite_schema", "sqlite_master", "sqlite_temp_schema")
            and row[1] != "sqlite_temp_master"
        ]
        if len(tables) > 1:  # AUTOINCREMENT also made sqlite_sequence
            tables = [row for row in tables if row[1] != "sqlite_sequence"]
        if len(tables) != 1:
            raise FormatError(f"cannot parse CREATE TABLE: {sql[:80]!r}")
        schema, name, kind, _, without_rowid, _ = tables[0][:6]
        if kind != "table":
            raise UnsupportedFeatureError(f"{name!r} is a {kind}, not an ordinary table")
        quoted = '"' + name.replace('"', '""') + '"'
        xinfo = con.execute(f"PRAGMA {schema}.table_xinfo({quoted})").fetchall()
        pk_index = any(
            row[3] == "pk" for row in con.execute(f"PRAGMA {schema}.index_list({quoted})")
        )
    except sqlite3.Error as exc:
        raise FormatError(f"SQLite cannot parse CREATE TABLE ({exc}): {sql[:80]!r}") from None
    finally:
        con.close()
    hidden = {0: None, 2: "virtual", 3: "stored"}
    columns = []
    for _cid, cname, ctype, _notnull, _default, _pk, flag in xinfo:
        if flag not in hidden:
            raise UnsupportedFeatureError(f"hidden column {cname!r}")
        columns.append(Column(cname, ctype or "", affinity_of(ctype), hidden[flag]))
    keys = [row[0] for row in sorted((r for r in xinfo if r[5]), key=lambda r: r[5])]
    alias = None
    if not without_rowid and len(keys) == 1 and not pk_index:
        alias = keys[0]
    return TableDefinition(
        name=name,
        columns=tuple(columns),
        rowid_alias=alias,
        without_rowid=bool(without_rowid),
        primary_key=tuple(columns[k].name for k in keys),
    )


def parse_create_table(sql: str) -> TableDefinition:
    """Describe a CREATE TABLE statement (as stored in sqlite_schema.sql).

    Raises UnsupportedFeatureError for CREATE VIRTUAL TABLE, FormatError for
    text that SQLite cannot parse either.
    """
    try:
        return _parse_tokens(sql)
    except _Fallback:
        return _parse_with_sqlite(sql)
