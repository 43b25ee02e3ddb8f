"""Export the store as a SQLite file (`pgfs export`), and verify it (`pgfs verify`).

Export renders pages 1..page_count into a new file (the lock-byte page stays
a hole of zeros), batch by batch, forgetting each batch once written: memory
does not grow with the database. Verify exports into a temporary file, runs
SQLite's own `PRAGMA integrity_check` on it, walks every b-tree with pgfs'
own parser (to say where a damaged page is, when SQLite only says
"malformed"), and compares every table's rows as SQLite reads them with the
rows the store holds.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pgfs.emulator.database import Database
from pgfs.emulator.importer import TransferError, describe_damage, progress_bar
from pgfs.emulator.pagecache import PageCache
from pgfs.emulator.producer import Producer
from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.header import TextEncoding, lock_byte_page
from pgfs.sqlite.record import InvalidText, decode_record
from pgfs.sqlite.schema import Affinity, TableDefinition
from pgfs.store.errors import StoreError
from pgfs.store.interface import Store

log = logging.getLogger("pgfs.emulator")

EXPORT_BATCH_BYTES = 8 * 1024 * 1024
IOV_MAX = 1024
MAX_MISMATCHES = 20


@dataclass
class ExportReport:
    path: str
    pages: int
    page_size: int
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return self.pages * self.page_size


def side_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def export_file(
    store: Store,
    out_path: str | os.PathLike[str],
    progress: bool = True,
    *,
    force: bool = False,
) -> ExportReport:
    """Render every page of the stored database into a new SQLite file.

    Written to a temporary file beside `out_path` and renamed into place.
    Refuses to overwrite an existing file (or its leftover -wal/-journal,
    which SQLite would replay onto the new file) unless `force`.
    """
    out = Path(out_path)
    state = store.load_state()
    if state.header is None or state.page_count == 0:
        raise StoreError("the store holds no database: nothing to export (run pgfs import)")
    existing = [p for p in [out, *side_files(out)] if p.exists()]
    if existing and not force:
        raise TransferError(f"{existing[0]} already exists (use --force to overwrite it)")
    started = time.perf_counter()
    database = Database(store, state, PageCache(memory_bytes=EXPORT_BATCH_BYTES))
    page_size, page_count = state.page_size, state.page_count
    temp = out.with_name(f".{out.name}.pgfs-{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, page_size * page_count)
        with (
            progress_bar("export", page_size * page_count, progress) as bar,
            Producer(_rendered_batches(database), name="pgfs-export-render") as batches,
        ):
            for images, covered in batches:
                _write_pages(fd, images, page_size)
                bar.update(page_size * covered)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    for side in side_files(out):
        side.unlink(missing_ok=True)
    os.replace(temp, out)
    report = ExportReport(str(out), page_count, page_size, time.perf_counter() - started)
    log.info("exported %d pages to %s in %.1f s", page_count, out, report.seconds)
    return report


def _rendered_batches(database: Database) -> Iterator[tuple[dict[int, bytes], int]]:
    """The database's page images, batch by batch (the lock-byte page left out), each
    with how many page numbers it covers. The database forgets each batch once it is
    rendered; run in a `Producer`, the next batch is fetched and rendered while this
    one is written."""
    page_size, page_count = database.page_size, database.page_count
    lock = lock_byte_page(page_size)
    batch = max(1, EXPORT_BATCH_BYTES // page_size)
    for start in range(1, page_count + 1, batch):
        stop = min(start + batch, page_count + 1)
        images = database.read_many([p for p in range(start, stop) if p != lock])
        database.forget()
        yield images, stop - start


def _write_pages(fd: int, images: dict[int, bytes], page_size: int) -> None:
    """Write page images at their offsets, runs of consecutive pages in one call."""
    run: list[bytes] = []
    first = 0
    for pgno in sorted(images):
        if run and (pgno != first + len(run) or len(run) == IOV_MAX):
            os.pwritev(fd, run, (first - 1) * page_size)
            run = []
        if not run:
            first = pgno
        run.append(images[pgno])
    if run:
        os.pwritev(fd, run, (first - 1) * page_size)


# ---------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """`ok` when SQLite's integrity_check says "ok" and every table's rows match."""

    integrity: list[str]
    tables: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"] and not self.mismatches and not self.damage


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rowid_name(definition: TableDefinition) -> str:
    taken = {c.name.casefold() for c in definition.columns}
    for name in ("rowid", "_rowid_", "oid"):
        if name not in taken:
            return name
    raise TransferError(f"table {definition.name}: rowid, _rowid_ and oid are all column names")


def _sqlite_rows(conn: sqlite3.Connection, definition: TableDefinition) -> Iterator[tuple]:
    """(rowid, [(typeof, value), ...]) per row as SQLite reads it, rowid order."""
    columns = definition.record_columns
    select = ", ".join(f"typeof({_quote(c.name)}), {_quote(c.name)}" for c in columns) or "NULL"
    if definition.without_rowid:
        query = f"SELECT 0, {select} FROM {_quote(definition.name)}"
    else:
        rowid = _rowid_name(definition)
        query = f"SELECT {rowid}, {select} FROM {_quote(definition.name)} ORDER BY {rowid}"
    for row in conn.execute(query):
        pairs = [(row[i].decode(), row[i + 1]) for i in range(1, 2 * len(columns), 2)]
        yield row[0], pairs


def _expected(definition: TableDefinition, rowid: int, values: list, encoding_utf8: bool):
    """What SQLite should return for a row decoded from PostgreSQL: (typeof, value)
    per record column; None where the record has no field (ADD COLUMN default)."""
    out = []
    columns = definition.record_columns
    alias = (
        definition.columns[definition.rowid_alias].name
        if definition.rowid_alias is not None
        else None
    )
    for i, column in enumerate(columns):
        if column.name == alias:
            out.append(("integer", rowid))
            continue
        if i >= len(values):
            out.append(None)
            continue
        value = values[i]
        if value is None:
            out.append(("null", None))
        elif isinstance(value, InvalidText):
            out.append(("text", value.raw if encoding_utf8 else None))
        elif isinstance(value, str):
            out.append(("text", value.encode("utf-8", "surrogatepass")))
        elif isinstance(value, bytes):
            out.append(("blob", value))
        elif isinstance(value, float):
            out.append(("real", value))
        elif column.affinity is Affinity.REAL:
            out.append(("real", float(value)))
        else:
            out.append(("integer", value))
    return out


def _same(expected, actual) -> bool:
    if expected is None:
        return True
    kind, value = expected
    if kind != actual[0]:
        return False
    if value is None and kind == "text":  # invalid UTF-16: SQLite's conversion decides
        return True
    return value == actual[1]


def _compare_table(
    conn: sqlite3.Connection,
    store: Store,
    definition: TableDefinition,
    encoding: TextEncoding,
    out: list,
) -> int:
    name = definition.name
    utf8 = encoding is TextEncoding.UTF8
    theirs = _sqlite_rows(conn, definition)
    ours = (
        (rowid, _expected(definition, rowid, decode_record(payload, encoding), utf8))
        for rowid, payload in store.table_rows(name)
    )
    if definition.without_rowid:
        key = repr
        theirs_all = sorted((tuple(p) for _, p in theirs), key=key)
        ours_all = sorted((tuple(e) for _, e in ours), key=key)
        if len(theirs_all) != len(ours_all):
            out.append(
                f"{name}: SQLite reads {len(theirs_all)} rows, PostgreSQL has {len(ours_all)}"
            )
        else:
            for a, b in zip(ours_all, theirs_all, strict=True):
                if not all(_same(x, y) for x, y in zip(a, b, strict=True)):
                    out.append(f"{name}: row {b!r} differs from PostgreSQL's {a!r}")
                    break
        return len(theirs_all)
    count = 0
    mine = next(ours, None)
    for rowid, pairs in theirs:
        count += 1
        if mine is None or mine[0] > rowid:
            out.append(f"{name}: rowid {rowid} is in the file but not in PostgreSQL")
        else:
            while mine is not None and mine[0] < rowid:
                out.append(f"{name}: rowid {mine[0]} is in PostgreSQL but not in the file")
                mine = next(ours, None)
            if mine is not None and mine[0] == rowid:
                if len(mine[1]) != len(pairs) or not all(
                    _same(e, a) for e, a in zip(mine[1], pairs, strict=True)
                ):
                    out.append(f"{name}: rowid {rowid} reads {pairs!r}, PostgreSQL has {mine[1]!r}")
                mine = next(ours, None)
        if len(out) >= MAX_MISMATCHES:
            return count
    while mine is not None and len(out) < MAX_MISMATCHES:
        out.append(f"{name}: rowid {mine[0]} is in PostgreSQL but not in the file")
        mine = next(ours, None)
    return count


def compare_with_sqlite(
    store: Store, conn: sqlite3.Connection, tables: dict[str, TableDefinition] | None = None
) -> tuple[dict[str, int], list[str]]:
    """Compare every data table's rows in PostgreSQL with what SQLite reads through
    `conn`: (rows compared per table, mismatch descriptions, at most MAX_MISMATCHES)."""
    state = store.load_state()
    if tables is None:
        tables = state.tables
    factory = conn.text_factory
    conn.text_factory = bytes
    counts: dict[str, int] = {}
    mismatches: list[str] = []
    try:
        for name, definition in sorted(tables.items()):
            try:
                counts[name] = _compare_table(conn, store, definition, state.encoding, mismatches)
            except (sqlite3.Error, FormatError) as exc:
                mismatches.append(f"{name}: cannot compare: {exc}")
            if len(mismatches) >= MAX_MISMATCHES:
                break
    finally:
        conn.text_factory = factory
    return counts, mismatches


def _integrity(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [f"SQLite cannot read the rendered database: {exc}"]
    finally:
        conn.close()


def verify(store: Store, progress: bool = False) -> VerifyReport:
    """Render the whole image, check it with SQLite and pgfs' own parser, compare rows."""
    started = time.perf_counter()
    state = store.load_state()
    if state.header is None:
        raise StoreError("the store holds no database: nothing to verify")
    with tempfile.TemporaryDirectory(prefix="pgfs-verify-") as folder:
        path = Path(folder) / "verify.db"
        exported = export_file(store, path, progress=progress)
        report = VerifyReport(_integrity(path), pages=exported.pages)
        if report.integrity != ["ok"]:
            report.damage = describe_damage(path)
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            report.tables, report.mismatches = compare_with_sqlite(store, conn, state.tables)
        except sqlite3.DatabaseError as exc:
            report.mismatches.append(f"the rows cannot be compared: {exc}")
        finally:
            conn.close()
    report.seconds = time.perf_counter() - started
    return report
