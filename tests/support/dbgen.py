"""Build SQLite databases for the emulator, CLI and FUSE tests (real SQLite, no fakes).

- `build_all_types`: every column type and affinity, NULLs, big values with
  overflow chains, WITHOUT ROWID, AUTOINCREMENT, unique/partial/expression
  indexes, views, triggers, generated columns, odd names, lossless cases
  (text in INTEGER columns, NUL in text, invalid UTF-8, -0.0, ...) and a
  freelist after deletes; any page size, auto-vacuum mode and text encoding.
- `build_jellyfin` / `fill_jellyfin`: a Jellyfin schema (../shared/jellyfin)
  filled with Jellyfin-like rows: upper-case GUID keys, `yyyy-MM-dd
  HH:mm:ss.FFFFFFF` dates, pipe-joined lists, large JSON `BaseItems.Data`
  (the values drawn the way `library.py` draws them);
- `build_format_case(spec)` for each of `SPECS`: every serial type, every
  b-tree page kind, overflow in tables and indexes, a freelist, in each page
  size, text encoding, auto-vacuum mode and reserved-bytes setting, built by
  Python's sqlite3 or by apsw (the file-format layer's ground truth);
- `text(rng, n)`: text that is not ASCII, for any generator.

`library.py` builds the Jellyfin library the benchmarks and the scale tests
use; this module the databases that cover the file format's corners.
"""

from __future__ import annotations

import ctypes
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import apsw

from tests.support.library import GENRES, WORDS, guid, jellyfin_date, words

INTS = [0, 1, -1, 127, 128, -129, 32767, 32768, 2**23, 2**31 - 1, 2**31, 2**47, 2**63 - 1, -(2**63)]
ODD_TABLE = '"odd ""quoted"" name"'
FLOATS = [0.5, -0.0, 1e308, -2.5e-308, 3.0, 1 / 3, float("inf"), float("-inf"), 123456789.125]


def _has_fts5(conn: sqlite3.Connection) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pragma_compile_options WHERE compile_options = 'ENABLE_FTS5'"
        ).fetchall()
    )


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    return conn


def build_all_types(
    path: Path,
    *,
    page_size: int = 4096,
    auto_vacuum: str = "NONE",
    encoding: str = "UTF-8",
    journal_mode: str = "DELETE",
    big_rows: int = 6,
    seed: int = 7,
) -> Path:
    """A database exercising every storage case (see module docstring)."""
    rng = random.Random(seed)
    conn = connect(path)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    conn.execute(f"PRAGMA encoding='{encoding}'")
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.executescript(
        """
        CREATE TABLE types (
            id INTEGER PRIMARY KEY, i INTEGER, t TEXT, r REAL, n NUMERIC, b BLOB, untyped,
            vc VARCHAR(10), dbl DOUBLE PRECISION, flt FLOAT, dec DECIMAL(10,2), flag BOOLEAN,
            dt DATETIME, ch CHARACTER(20), cl CLOB, big BIGINT, anything ANY
        );
        CREATE TABLE hidden_rowid (a TEXT, b INTEGER, c REAL);
        CREATE TABLE big (id INTEGER PRIMARY KEY, payload BLOB, txt TEXT, tag TEXT);
        CREATE INDEX big_tag ON big (tag);
        CREATE INDEX big_txt ON big (substr(txt, 1, 2000));
        CREATE TABLE auto (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT UNIQUE);
        CREATE TABLE wr (k TEXT PRIMARY KEY, v INTEGER, doc TEXT) WITHOUT ROWID;
        CREATE TABLE wr2 (a INTEGER, b TEXT, c BLOB, PRIMARY KEY (b, a)) WITHOUT ROWID;
        CREATE TABLE gen (
            a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL,
            c TEXT GENERATED ALWAYS AS (upper(d)) STORED, d TEXT
        );
        CREATE TABLE desc_pk (id INTEGER PRIMARY KEY DESC, v TEXT);
        CREATE TABLE int_pk (id INT PRIMARY KEY, v TEXT);
        CREATE TABLE strict_t (id INTEGER PRIMARY KEY, x INT, y TEXT, z ANY) STRICT;
        CREATE UNIQUE INDEX types_t ON types (t) WHERE id < 200;
        CREATE INDEX types_expr ON types (lower(ch), r DESC);
        CREATE INDEX hidden_ab ON hidden_rowid (a, b);
        CREATE VIEW big_tags AS SELECT tag, count(*) AS n FROM big GROUP BY tag;
        CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT, at TEXT);
        CREATE TRIGGER auto_audit AFTER INSERT ON auto BEGIN
            INSERT INTO audit (what, at) VALUES ('auto ' || NEW.v, 'now');
        END;
        """
    )
    conn.execute(f'CREATE TABLE {ODD_TABLE} ("col with space" TEXT, "select" INTEGER, "x""y" BLOB)')
    conn.execute("BEGIN")
    rows = []
    for n, value in enumerate(INTS):
        rows.append((n + 1, value, str(value), value, value, None, value))
    for n, value in enumerate(FLOATS):
        rows.append((100 + n, value, repr(value), value, value, None, value))
    for row in rows:
        conn.execute("INSERT INTO types (id, i, t, r, n, b, untyped) VALUES (?,?,?,?,?,?,?)", row)
    odd = [
        # text in INTEGER / REAL / NUMERIC columns, blob in TEXT, numeric text
        (200, "abc", 12, "x", "1.50", "text", b"\x00\x01"),
        (201, "12", "007", "3.25", "100", b"blob in text", "9"),
        (202, 1.5, b"\x01\x02\x03\x04", 2**62, "1e400", 5, 2.0),
        (203, None, "", None, "abc", b"", None),
        (204, 2**63 - 1, "é—😀 unicode", 1e-300, 0.1, bytes(range(256)), "mixed"),
        (205, -(2**63), "tab\tnewline\n", -0.0, -0.0, b"z", -0.0),
    ]
    for row in odd:
        conn.execute("INSERT INTO types (id, i, t, r, n, b, untyped) VALUES (?,?,?,?,?,?,?)", row)
    # Invalid UTF-8 only in a UTF-8 database (SQLite itself cannot index invalid
    # UTF-16 consistently: its own integrity_check then fails).
    invalid = "CAST(x'ff80' AS TEXT)" if encoding.upper() == "UTF-8" else "'valid'"
    conn.execute(
        "INSERT INTO types (id, t, vc, cl, big, anything) VALUES "
        f"(300, CAST(x'61006200' AS TEXT), 'toolongforvarchar10', {invalid}, "
        "9223372036854775807, 1.0)"
    )
    conn.execute(
        "INSERT INTO types (id, dbl, flt, dec, flag, dt, ch) VALUES "
        "(301, 1, 2.5, '3.14', 1, '2024-01-02 03:04:05.1234567', 'char')"
    )
    for n in range(60):
        conn.execute(
            "INSERT INTO hidden_rowid (a, b, c) VALUES (?, ?, ?)",
            (f"name {n:03d}", n * 7 if n % 5 else None, n / 4 if n % 3 else n),
        )
    sizes = [100, 3000, 5000, 20000, 70000, 300000, 1_200_000][: max(big_rows, 1)]
    for n in range(big_rows * 4):
        size = sizes[n % len(sizes)]
        conn.execute(
            "INSERT INTO big (id, payload, txt, tag) VALUES (?, ?, ?, ?)",
            (n + 1, rng.randbytes(size), "t" * (size // 3) + str(n), f"tag{n % 5}"),
        )
    for n in range(30):
        conn.execute("INSERT INTO auto (v) VALUES (?)", (f"value {n}",))
    for n in range(80):
        doc = json.dumps({"n": n, "text": "x" * (n * 60)})
        conn.execute("INSERT INTO wr (k, v, doc) VALUES (?, ?, ?)", (f"key{n:04d}", n, doc))
        conn.execute(
            "INSERT INTO wr2 (a, b, c) VALUES (?, ?, ?)", (n, f"b{n % 7}", rng.randbytes(n * 50))
        )
    for n in range(20):
        conn.execute("INSERT INTO gen (a, d) VALUES (?, ?)", (n, f"text{n}"))
    conn.execute(f"INSERT INTO {ODD_TABLE} VALUES ('space', 1, x'00')")
    for n in range(10):
        conn.execute("INSERT INTO desc_pk (id, v) VALUES (?, ?)", (n * 3, f"d{n}"))
        conn.execute("INSERT INTO int_pk (id, v) VALUES (?, ?)", (n * 5, f"i{n}"))
        conn.execute("INSERT INTO strict_t (x, y, z) VALUES (?, ?, ?)", (n, str(n), n / 2))
    if _has_fts5(conn):  # a virtual table: no pages of its own, ordinary shadow tables
        conn.execute("CREATE VIRTUAL TABLE docs USING fts5(title, body)")
        for n in range(40):
            conn.execute(
                "INSERT INTO docs (title, body) VALUES (?, ?)",
                (f"title {n}", " ".join(rng.choice(WORDS) for _ in range(n * 10))),
            )
    conn.execute("COMMIT")
    # A freelist: deleted rows free their leaves and overflow chains.
    conn.execute("DELETE FROM big WHERE id % 3 = 0")
    conn.execute("DELETE FROM hidden_rowid WHERE b IS NULL")
    conn.execute("DELETE FROM auto WHERE id > 25")
    conn.close()
    return path


# ---------------------------------------------------------------- Jellyfin-like data

ITEM_TYPES = [
    "MediaBrowser.Controller.Entities.Movies.Movie",
    "MediaBrowser.Controller.Entities.TV.Episode",
    "MediaBrowser.Controller.Entities.TV.Season",
    "MediaBrowser.Controller.Entities.TV.Series",
    "MediaBrowser.Controller.Entities.Audio.Audio",
    "MediaBrowser.Controller.Entities.Folder",
]


def item_json(rng: random.Random, item_id: str, size: int) -> str:
    """A BaseItems.Data value: the item serialised as JSON (often several KB)."""
    data = {
        "Id": item_id,
        "Name": words(rng, 3).title(),
        "Overview": words(rng, max(5, size // 12)),
        "ProviderIds": {"Tmdb": str(rng.randrange(10**6)), "Imdb": f"tt{rng.randrange(10**7)}"},
        "People": [
            {"Name": words(rng, 2).title(), "Role": words(rng, 2), "Type": "Actor"}
            for _ in range(rng.randrange(3, 12))
        ],
        "MediaStreams": [
            {"Codec": rng.choice(["h264", "hevc", "aac", "ac3"]), "Index": i, "Language": "eng"}
            for i in range(rng.randrange(1, 6))
        ],
        "Genres": rng.sample(GENRES, 2),
        "DateCreated": jellyfin_date(rng),
    }
    return json.dumps(data, separators=(",", ":"))


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple]:
    return conn.execute(f'PRAGMA table_xinfo("{table}")').fetchall()


def _value(rng: random.Random, table: str, column: str, declared: str, n: int, data_size: int):
    name = column.lower()
    declared = (declared or "").upper()
    if table == "BaseItems" and column == "Data":
        return None  # filled by fill_jellyfin with the item's id
    if table == "BaseItems" and column == "Type":
        return rng.choice(ITEM_TYPES)
    if "BLOB" in declared:
        return rng.randbytes(rng.randrange(20, 40))
    if "INT" in declared:
        if name.startswith("is") or name in ("audio",):
            return rng.randrange(2)
        return n * 31 + rng.randrange(30)
    if "REAL" in declared or "FLOA" in declared or "DOUB" in declared:
        return round(rng.uniform(0, 10), 1)
    if name == "id" or name.endswith("id") or name.endswith("key"):
        return guid(rng)
    if name.startswith("date") or name.endswith("date") or name in ("lastmodified", "timestamp"):
        return jellyfin_date(rng)
    if name in ("genres", "studios", "tags", "artists", "albumartists", "productionlocations"):
        return "|".join(rng.sample(GENRES, 3))
    if name in ("overview",):
        return words(rng, rng.randrange(20, 120))
    if name in ("path",):
        return f"/media/library/{words(rng, 2).replace(' ', '_')}/{n}.mkv"
    return words(rng, rng.randrange(1, 4))


def fill_jellyfin(
    conn: sqlite3.Connection,
    items: int,
    *,
    seed: int = 11,
    rows_per_item: int = 3,
    data_size: int = 6000,
) -> int:
    """Insert Jellyfin-like rows into every table of the schema (one transaction
    per 200 items, as a library scan would); return the number of rows."""
    rng = random.Random(seed)
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    layouts = {t: _columns(conn, t) for t in tables}
    inserted = 0
    conn.execute("BEGIN")
    for n in range(items):
        for table in tables:
            count = 1 if table == "BaseItems" else rng.randrange(rows_per_item + 1)
            if table.startswith("__EF") and n > 0:
                continue
            for _ in range(count):
                cols, values = [], []
                for _cid, column, declared, _notnull, _default, pk, hidden in layouts[table]:
                    if hidden in (2, 3):
                        continue  # generated
                    if (
                        pk == 1
                        and "INT" in (declared or "").upper()
                        and _is_only_pk(layouts[table])
                    ):
                        continue  # INTEGER PRIMARY KEY: SQLite assigns it
                    cols.append(f'"{column}"')
                    values.append(_value(rng, table, column, declared, n, data_size))
                if table == "BaseItems":
                    item_id = values[cols.index('"Id"')]
                    size = rng.randrange(data_size // 4, data_size * 2)
                    values[cols.index('"Data"')] = item_json(rng, item_id, size)
                marks = ", ".join("?" * len(values))
                cursor = conn.execute(
                    f'INSERT OR IGNORE INTO "{table}" ({", ".join(cols)}) VALUES ({marks})',
                    values,
                )
                inserted += cursor.rowcount
        if n % 200 == 199:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    return inserted


def _is_only_pk(layout: list[tuple]) -> bool:
    return sum(1 for row in layout if row[5]) == 1


def build_jellyfin(
    path: Path, schema_file: Path, items: int = 200, *, seed: int = 11, analyze: bool = True
) -> Path:
    """A database with a Jellyfin schema and `items` library items' worth of rows."""
    conn = connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema_file.read_text())
    fill_jellyfin(conn, items, seed=seed)
    if analyze:
        conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


# ---------------------------------------------------------------- format cases


@dataclass
class Spec:
    """How to build one format case: page size, engine, encoding, auto-vacuum, reserved
    bytes (the file-format tests read each with the code under test)."""

    name: str
    page_size: int = 4096
    engine: str = "sqlite3"  # or "apsw"
    encoding: str = "UTF-8"
    auto_vacuum: str = "NONE"  # NONE, FULL, INCREMENTAL
    reserve: int = 0
    journal_mode: str = "DELETE"
    rows: int = 120


SPECS = [
    Spec("p4096"),
    Spec("p512", page_size=512, rows=60),
    Spec("p1024_utf16le", page_size=1024, encoding="UTF-16le"),
    Spec("p65536_utf16be", page_size=65536, encoding="UTF-16be", rows=80),
    Spec("apsw_p4096", engine="apsw"),
    Spec("apsw_reserved", page_size=1024, engine="apsw", reserve=33, rows=80),
    Spec("autovac_full", page_size=1024, auto_vacuum="FULL", rows=80),
    Spec("autovac_incr", page_size=512, auto_vacuum="INCREMENTAL", engine="apsw", rows=60),
]


def text(rng: random.Random, n: int) -> str:
    """`n` characters, accented, CJK and emoji among them (1 to 4 bytes in UTF-8)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz äöü€😀\u4e2d"
    return "".join(rng.choice(alphabet) for _ in range(n))


def format_statements(spec: Spec) -> Iterator[tuple[str, tuple]]:
    """The content: every serial type, every b-tree page kind, overflow in
    tables and indexes, generated columns, a wide record header, a freelist."""
    rng = random.Random(spec.name)
    yield (
        "CREATE TABLE mixed(a, b INTEGER, c REAL, d TEXT, e BLOB, f NUMERIC, g)",
        (),
    )
    yield ("CREATE INDEX mixed_d ON mixed(d, a)", ())
    yield ("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, bio TEXT)", ())
    yield ("CREATE INDEX people_bio ON people(bio)", ())
    yield (
        "CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, n INTEGER)",
        (),
    )
    yield (
        "CREATE TABLE kv(k TEXT PRIMARY KEY, v, w INTEGER DEFAULT 7) WITHOUT ROWID",
        (),
    )
    yield (
        "CREATE TABLE gen(a INTEGER, b TEXT, v INTEGER AS (a * 2) VIRTUAL,"
        " s TEXT AS (b || '!') STORED, c REAL)",
        (),
    )
    wide_cols = ", ".join(f"c{i}" for i in range(150))
    yield (f"CREATE TABLE wide({wide_cols})", ())
    ints = [
        0, 1, -1, 2, 127, -128, 128, -129, 32767, -32768, 32768, 8388607, -8388608,
        8388608, 2147483647, -2147483648, 2147483648, 2**47 - 1, -(2**47), 2**47,
        2**63 - 1, -(2**63),
    ]  # fmt: skip
    floats = [0.0, -0.0, 1.5, -2.25, 1e300, 3.0, 2.0**52, 2.0**53 + 2, 1e-310, 2.0**48]
    n = spec.rows
    for i in range(n):
        big = rng.random() < 0.15
        yield (
            "INSERT INTO mixed VALUES (?,?,?,?,?,?,?)",
            (
                rng.choice(ints + floats + [None, "x", b"\x00\xff"]),
                rng.choice(ints),
                rng.choice(floats + ints[:10]),
                text(rng, rng.randrange(0, 3000 if big else 60)),
                rng.randbytes(rng.randrange(0, 5000 if big else 40)),
                rng.choice(["12", "1.5", "abc", "3.0", 7, 2.5, None]),
                rng.choice([None, 1, 0, "t"]),
            ),
        )
        yield (
            "INSERT INTO people(name, bio) VALUES (?, ?)",
            (text(rng, 12), text(rng, rng.randrange(0, 2500 if big else 80))),
        )
        yield ("INSERT INTO log(at, n) VALUES (?, ?)", (f"2024-01-{i % 28 + 1:02d}", i))
        yield (
            "INSERT INTO kv VALUES (?, ?, ?)",
            (f"key{i:05d}" + text(rng, 5), rng.choice([None, i, 1.25, "v" * (i % 50)]), i),
        )
        yield ("INSERT INTO gen(a, b, c) VALUES (?, ?, ?)", (i, text(rng, 8), i / 4))
        if i % 10 == 0:
            values = tuple(rng.choice([None, i, "t" * (i % 7), 0.5, 1]) for _ in range(150))
            yield (f"INSERT INTO wide VALUES ({', '.join('?' * 150)})", values)
    # Payloads spanning several overflow pages, whatever the page size.
    yield ("CREATE TABLE big(id INTEGER PRIMARY KEY, data)", ())
    yield ("CREATE INDEX big_data ON big(data)", ())
    for k in range(4):
        size = spec.page_size * (k + 1) + 123 * k
        value = rng.randbytes(size) if k % 2 else text(rng, size // 2)
        yield ("INSERT INTO big(data) VALUES (?)", (value,))
    yield ("DELETE FROM big WHERE id = 2", ())
    # A freelist: delete a third of the rows (and whole overflow chains).
    yield ("DELETE FROM mixed WHERE rowid % 3 = 0", ())
    yield ("DELETE FROM people WHERE id % 4 = 1", ())
    yield ("UPDATE people SET bio = upper(bio) WHERE id % 5 = 0", ())


def build_format_case(spec: Spec, path: Path) -> None:
    """The database `spec` describes, built in one transaction."""
    statements = list(format_statements(spec))
    if spec.engine == "apsw":
        con = apsw.Connection(str(path))
        if spec.reserve:
            reserve = ctypes.c_int(spec.reserve)
            con.file_control("main", apsw.SQLITE_FCNTL_RESERVE_BYTES, ctypes.addressof(reserve))
        execute: Callable = con.execute
    else:
        con = sqlite3.connect(path, isolation_level=None)
        execute = con.execute
    execute(f"PRAGMA page_size={spec.page_size}")
    execute(f"PRAGMA encoding='{spec.encoding}'")
    execute(f"PRAGMA auto_vacuum={spec.auto_vacuum}")
    execute(f"PRAGMA journal_mode={spec.journal_mode}")
    execute("PRAGMA synchronous=OFF")  # no fsync: the file's bytes are the same
    execute("BEGIN")
    for sql, params in statements:
        execute(sql, params)
    execute("COMMIT")
    con.close()
