"""Import a SQLite file into the store, export the store as a file, verify the store.

Import is the diff of every page onto an empty store (README Design, step 5),
streamed: each b-tree is walked from its root reading pages lazily from the
file, and the page records and rows are applied in parts of a few MB through
one `store.begin()` transaction, so memory does not grow with the database
and PostgreSQL is left as it was on any error.

Export renders pages 1..page_count into a new file (the lock-byte page stays a
hole of zeros). Verify exports into a temporary file, runs SQLite's own
`PRAGMA integrity_check` on it and compares every table's rows as SQLite
reads them with the rows decoded from PostgreSQL.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from pgfs.emulator.diff import (
    SCHEMA_OWNER,
    SchemaObject,
    btree_kind,
    cell_payload,
    index_cells,
    iter_tree,
    leaf_rows,
    read_schema,
    schema_objects,
)
from pgfs.emulator.render import PageRenderer
from pgfs.emulator.source import FilePageSource, lock_byte_page
from pgfs.sqlite.btree import TableLeafCell
from pgfs.sqlite.errors import CorruptPageError, FormatError, NotADatabaseError
from pgfs.sqlite.freelist import walk_freelist
from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader
from pgfs.sqlite.journal import parse_journal_header
from pgfs.sqlite.ptrmap import is_ptrmap_page
from pgfs.sqlite.record import InvalidText
from pgfs.sqlite.schema import Affinity, TableDefinition
from pgfs.store.changeset import Changeset, PageRecord, SchemaChange, TableRows
from pgfs.store.errors import StoreError, StoreNotEmptyError

if TYPE_CHECKING:
    from pgfs.store.store import CommitStats, Store, StoreTransaction

log = logging.getLogger(__name__)

PART_BYTES = 4 * 1024 * 1024
"""An import part is applied once its rows and raw pages reach this many bytes."""
EXPORT_BATCH_BYTES = 8 * 1024 * 1024
RECORD_OVERHEAD = 160  # Python objects per row or page record, roughly
MAX_MISMATCHES = 20


class TransferError(ValueError):
    """A file pgfs refuses to import or export (the message says why and what to do)."""


def _progress_bar(desc: str, total_bytes: int, progress: bool) -> tqdm:
    """The byte-counting progress bar of an import or export, on stderr (off unless
    `progress`)."""
    return tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )


# ---------------------------------------------------------------- checks before import


def _entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (random or encrypted data is close to 8)."""
    if not data:
        return 0.0
    counts = Counter(data)
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def check_importable(path: Path) -> None:
    """Refuse what pgfs cannot import faithfully, before PostgreSQL is touched.

    A missing or special file; a file without the SQLite header (an encrypted
    database looks like random bytes); a WAL-mode database whose `-wal` still
    holds frames (they are not in the file yet); a hot rollback journal (the
    file may hold half a transaction). Truncation and corruption are found
    while reading (FilePageSource, the b-tree walk).
    """
    if not path.exists():
        raise TransferError(f"{path}: no such file")
    if not path.is_file():
        raise TransferError(f"{path}: not a regular file")
    with path.open("rb") as handle:
        head = handle.read(4096)
    try:
        DatabaseHeader.parse(head[:HEADER_SIZE])
    except NotADatabaseError as exc:
        if len(head) >= 1024 and _entropy(head) > 7.5:
            raise TransferError(
                f"{path}: not a SQLite database; its bytes look encrypted (SQLCipher or "
                "similar?): pgfs needs a plain SQLite file (decrypt it first)"
            ) from None
        raise TransferError(f"{path}: not a SQLite database ({exc})") from None
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise TransferError(
            f"{path}: its write-ahead log {wal.name} holds changes that are not in the file "
            f"yet; checkpoint it first (sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)')"
        )
    journal = path.with_name(path.name + "-journal")
    if journal.exists() and journal.stat().st_size > 0:
        with journal.open("rb") as handle:
            if parse_journal_header(handle.read(512)) is not None:
                raise TransferError(
                    f"{path}: a hot rollback journal {journal.name} lies beside it (an "
                    f"interrupted transaction); open the database once with sqlite3 to roll it "
                    "back first"
                )


# ---------------------------------------------------------------- import


@dataclass
class ImportReport:
    path: str
    pages: int
    page_size: int
    rows: dict[str, int] = field(default_factory=dict)
    parts: int = 0
    seconds: float = 0.0
    unused_pages: int = 0
    stats: CommitStats | None = None

    @property
    def bytes(self) -> int:
        return self.pages * self.page_size

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


class _Importer:
    """Walks a database file and streams Changeset parts into one transaction."""

    def __init__(self, src: FilePageSource, source: str = "import") -> None:
        self.src = src
        self.source = source
        self.header = src.header
        self.usable = src.usable_size
        self.page_count = src.page_count
        self.header_bytes = src.read(1)[:HEADER_SIZE]
        self.entries = read_schema(src, self.usable, self.header.text_encoding)
        self.objects = schema_objects(self.entries)
        self.visited = bytearray(self.page_count + 1)
        self.visited[1] = 1
        self.report = ImportReport(str(src.path), self.page_count, src.page_size)
        self.tx: StoreTransaction | None = None
        self.bar: tqdm | None = None
        self.part = self._part(first=True)
        self.part_bytes = 0
        self.started: set[str] = set()

    def _part(self, *, first: bool = False) -> Changeset:
        schema = SchemaChange()
        if first:
            schema.created = [o.definition for o in self.objects.values() if o.definition]
        return Changeset(
            source=self.source,
            header=bytes(self.header_bytes),
            page_count=self.page_count,
            schema_entries=list(self.entries) if first else None,
            schema=schema,
        )

    def claim(self, pgno: int) -> None:
        if not 1 <= pgno <= self.page_count:
            raise CorruptPageError(pgno, f"page number out of range 1..{self.page_count}")
        if self.visited[pgno]:
            raise CorruptPageError(pgno, "page is used twice (by two b-trees, chains or lists)")
        self.visited[pgno] = 1

    # -- parts ---------------------------------------------------------------------------

    def add_page(self, record: PageRecord) -> None:
        self.part.pages.append(record)
        self.part_bytes += RECORD_OVERHEAD + (len(record.data) if record.data else 0)
        if self.bar is not None:
            self.bar.update(self.src.page_size)

    def rows_of(self, name: str) -> TableRows:
        rows = self.part.rows.get(name)
        if rows is None:
            first = name not in self.started
            self.started.add(name)
            rows = self.part.rows[name] = TableRows(name, replace_all=first)
        return rows

    def maybe_flush(self) -> None:
        if self.part_bytes >= PART_BYTES:
            self.flush()

    def flush(self) -> None:
        assert self.tx is not None
        self.tx.apply(self.part)
        self.report.parts += 1
        self.part = self._part()
        self.part_bytes = 0

    # -- walking -------------------------------------------------------------------------

    def run(self, tx: StoreTransaction, progress: bool) -> ImportReport:
        started = time.perf_counter()
        self.tx = tx
        with _progress_bar("import", self.page_count * self.src.page_size, progress) as bar:
            self.bar = bar
            self.walk_raw(1, SCHEMA_OWNER, table=True)
            for obj in sorted(self.objects.values(), key=lambda o: o.rootpage):
                self.claim(obj.rootpage)
                if obj.rendered:
                    self.walk_rendered(obj)
                elif obj.mirrored:
                    self.walk_mirror(obj)
                else:
                    self.walk_raw(obj.rootpage, obj.name, table=obj.table_tree)
            self.freelist()
            self.pointer_maps()
            self.leftovers()
            self.flush()
            self.bar = None
        self.report.seconds = time.perf_counter() - started
        return self.report

    def walk_rendered(self, obj: SchemaObject) -> None:
        name = obj.name
        for pgno, page, image in iter_tree(
            self.src, obj.rootpage, self.usable, table=True, batch=1, claim=self.claim
        ):
            if not page.is_leaf:
                self.add_page(PageRecord(pgno, btree_kind(page), name, data=image))
                self.maybe_flush()
                continue
            rows = self.rows_of(name)
            for rowid, payload, chain in leaf_rows(page, self.read_chain_page, self.usable):
                rows.upserts[rowid] = payload
                self.part_bytes += len(payload) + RECORD_OVERHEAD
                if chain:
                    self.part.chains[(name, rowid)] = chain
                    for seq, q in enumerate(chain):
                        self.add_page(PageRecord(q, "overflow", name, rowid, None, seq))
            self.report.rows[name] = self.report.rows.get(name, 0) + len(page.cells)
            lo = page.cells[0].rowid if page.cells else None
            hi = page.cells[-1].rowid if page.cells else None
            self.add_page(PageRecord(pgno, "table_leaf", name, lo, hi))
            self.maybe_flush()

    def read_chain_page(self, pgno: int) -> bytes:
        self.claim(pgno)
        return self.src.read(pgno)

    def walk_mirror(self, obj: SchemaObject) -> None:
        """A WITHOUT ROWID table: raw pages; its rows go in one part (the store
        replaces a mirror table wholesale on every apply)."""
        rows = TableRows(obj.name, replace_all=True)
        for pgno, page, image in iter_tree(
            self.src, obj.rootpage, self.usable, table=False, batch=1, claim=self.claim
        ):
            self.add_page(PageRecord(pgno, btree_kind(page), obj.name, data=image))
            for cell in index_cells(page):
                payload = self.raw_chain(cell, page, obj.name)
                rows.upserts[len(rows.upserts)] = payload
                self.part_bytes += len(payload) + RECORD_OVERHEAD
        self.report.rows[obj.name] = len(rows.upserts)
        self.part.rows[obj.name] = rows
        self.maybe_flush()

    def walk_raw(self, root: int, owner: str, *, table: bool) -> None:
        for pgno, page, image in iter_tree(
            self.src, root, self.usable, table=table, batch=1, claim=self.claim
        ):
            self.add_page(PageRecord(pgno, btree_kind(page), owner, data=image))
            for cell in page.cells:
                if getattr(cell, "overflow", None) is not None:
                    self.raw_chain(cell, page, owner)
            self.maybe_flush()

    def raw_chain(self, cell, page, owner: str) -> bytes:
        """Assemble a cell's payload, storing its overflow pages raw."""
        images: dict[int, bytes] = {}

        def read(pgno: int) -> bytes:
            self.claim(pgno)
            images[pgno] = self.src.read(pgno)
            return images[pgno]

        payload, chain = cell_payload(cell, read, self.usable, page)
        rowid = cell.rowid if isinstance(cell, TableLeafCell) else None
        for seq, q in enumerate(chain):
            self.add_page(PageRecord(q, "overflow", owner, rowid, None, seq, images[q]))
        return payload

    def freelist(self) -> None:
        h = self.header
        free = walk_freelist(h.first_freelist_trunk, self.src.read, self.usable, self.page_count)
        if free.count != h.freelist_count:
            log.warning(
                "%s: the freelist holds %d pages, the header says %d",
                self.src.path,
                free.count,
                h.freelist_count,
            )
        for pgno in free.trunks:
            self.claim(pgno)
            self.add_page(PageRecord(pgno, "freelist_trunk", None, data=self.src.read(pgno)))
        for pgno in free.leaves:
            self.claim(pgno)
            self.add_page(PageRecord(pgno, "free", None))
            self.maybe_flush()

    def pointer_maps(self) -> None:
        if not self.header.auto_vacuum:
            return
        for pgno in range(2, self.page_count + 1):
            if is_ptrmap_page(pgno, self.usable):
                self.claim(pgno)
                self.add_page(PageRecord(pgno, "ptrmap", None, data=self.src.read(pgno)))
                self.maybe_flush()

    def leftovers(self) -> None:
        """Pages nothing refers to: kept raw (SQLite's integrity_check would say
        "never used"); the lock-byte page is left out (it renders as zeros)."""
        lock = lock_byte_page(self.src.page_size)
        if lock <= self.page_count and not self.visited[lock]:
            self.visited[lock] = 1
            if self.bar is not None:
                self.bar.update(self.src.page_size)
        start = 1
        while True:
            pgno = self.visited.find(0, start)
            if pgno < 0:
                break
            self.visited[pgno] = 1
            self.report.unused_pages += 1
            self.add_page(PageRecord(pgno, "free", None, data=self.src.read(pgno)))
            self.maybe_flush()
            start = pgno + 1
        if self.report.unused_pages:
            log.warning(
                "%s: %d pages belong to nothing (kept as they are)",
                self.src.path,
                self.report.unused_pages,
            )


def import_file(
    store: Store, path: str | os.PathLike[str], replace: bool = False, progress: bool = True
) -> ImportReport:
    """Import the SQLite file at `path` into the store in one PostgreSQL transaction.

    Refuses (TransferError, FormatError, StoreNotEmptyError) before writing
    anything when the file cannot be imported faithfully or the store already
    holds a database and `replace` is false. Any error later rolls back.
    """
    path = Path(path)
    check_importable(path)
    try:
        return _import(store, path, replace, progress)
    except CorruptPageError as exc:
        raise TransferError(f"{path}: cannot import a damaged database: {exc}") from exc


def _import(store: Store, path: Path, replace: bool, progress: bool) -> ImportReport:
    with FilePageSource(path) as src:
        importer = _Importer(src)
        if not replace and not store.is_empty():
            raise StoreNotEmptyError(
                f"the store ({store.target}, schema {store.meta_schema!r}) already holds a "
                "database; use --replace to overwrite it"
            )
        store.initialise()
        log.info(
            "importing %s: %d pages of %d bytes, %d schema objects",
            path,
            src.page_count,
            src.page_size,
            len(importer.objects),
        )
        with store.begin() as tx:
            if replace:
                tx.clear()
            report = importer.run(tx, progress)
        report.stats = tx.stats
    log.info(
        "imported %s: %d rows in %d parts, %.1f s",
        path,
        report.total_rows,
        report.parts,
        report.seconds,
    )
    return report


# ---------------------------------------------------------------- export


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
    renderer = PageRenderer(store, state)
    page_size, page_count = state.page_size, state.page_count
    lock = lock_byte_page(page_size)
    batch = max(1, EXPORT_BATCH_BYTES // page_size)
    temp = out.with_name(f".{out.name}.pgfs-{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, page_size * page_count)
        with _progress_bar("export", page_size * page_count, progress) as bar:
            for start in range(1, page_count + 1, batch):
                pgnos = [p for p in range(start, min(start + batch, page_count + 1)) if p != lock]
                images = renderer.render_many(pgnos)
                for pgno in pgnos:
                    os.pwrite(fd, images[pgno], (pgno - 1) * page_size)
                renderer.clear()
                bar.update(page_size * (min(start + batch, page_count + 1) - start))
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


# ---------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """`ok` when SQLite's integrity_check says "ok" and every table's rows match."""

    integrity: list[str]
    tables: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"] and not self.mismatches


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
    conn: sqlite3.Connection, store: Store, definition: TableDefinition, utf8: bool, out: list
) -> int:
    name = definition.name
    theirs = _sqlite_rows(conn, definition)
    ours = (
        (rowid, _expected(definition, rowid, values, utf8))
        for rowid, values in store.table_rows(name)
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
    utf8 = state.encoding.name == "UTF8"
    factory = conn.text_factory
    conn.text_factory = bytes
    counts: dict[str, int] = {}
    mismatches: list[str] = []
    try:
        for name, definition in sorted(tables.items()):
            try:
                counts[name] = _compare_table(conn, store, definition, utf8, mismatches)
            except (sqlite3.Error, FormatError) as exc:
                mismatches.append(f"{name}: cannot compare: {exc}")
            if len(mismatches) >= MAX_MISMATCHES:
                break
    finally:
        conn.text_factory = factory
    return counts, mismatches


def verify(store: Store, progress: bool = False) -> VerifyReport:
    """Render the whole image, check it with SQLite, compare rows (see module docstring)."""
    started = time.perf_counter()
    state = store.load_state()
    if state.header is None:
        raise StoreError("the store holds no database: nothing to verify")
    with tempfile.TemporaryDirectory(prefix="pgfs-verify-") as folder:
        path = Path(folder) / "verify.db"
        exported = export_file(store, path, progress=progress)
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            integrity = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
            report = VerifyReport(integrity, pages=exported.pages)
            report.tables, report.mismatches = compare_with_sqlite(store, conn, state.tables)
        finally:
            conn.close()
    report.seconds = time.perf_counter() - started
    return report
