"""Import a SQLite file into the store (`pgfs import`).

An import is the diff of every page onto an empty store (README Design,
step 5), streamed: each b-tree is walked from its root with the same walker
the diff uses (`walk.py`), reading pages lazily from the file, and page
records and rows go to the store in parts of a few MB, all in one write
(one server transaction): memory does not grow with the database, and the
store is left as it was on any error.

Before anything is written the file is checked: what pgfs cannot import
faithfully is refused (`check_importable`), and so is a file that fails
SQLite's own `PRAGMA integrity_check`, naming the first problem, unless
`force` is given: then rows whose records do not decode are left out and
reported.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pgfs.emulator.diff import SchemaObject, schema_objects
from pgfs.emulator.parts import ChangesetParts, add_mirror_rows, add_table_page
from pgfs.emulator.producer import Producer
from pgfs.emulator.source import FilePageSource
from pgfs.emulator.walk import (
    SCHEMA_OWNER,
    TableRow,
    WalkedPage,
    iter_tree,
    read_schema,
    walk_index_tree,
    walk_table,
)
from pgfs.sqlite.errors import CorruptPageError, FormatError, NotADatabaseError
from pgfs.sqlite.freelist import walk_freelist
from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader, lock_byte_page
from pgfs.sqlite.journal import parse_journal_header
from pgfs.sqlite.ptrmap import is_ptrmap_page
from pgfs.sqlite.record import decode_record
from pgfs.store.changeset import (
    Changeset,
    CommitSource,
    PageKind,
    PageRecord,
    SchemaChange,
)
from pgfs.store.errors import StoreNotEmptyError
from pgfs.store.interface import CommitStats, LeaseHolder, Store

log = logging.getLogger("pgfs.emulator")

RECORD_OVERHEAD = 160  # Python objects per row or page record, roughly
MAX_REPORTED_PROBLEMS = 20


class TransferError(ValueError):
    """A file pgfs refuses to import or export (the message says why and what to do)."""


def progress_bar(desc: str, total_bytes: int, progress: bool) -> tqdm:
    """The byte-counting progress bar of a long transfer, on stderr (off unless `progress`)."""
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
    """Refuse what pgfs cannot import faithfully, before the store is touched.

    A missing or special file; a file without the SQLite header (an encrypted
    database looks like random bytes); a WAL-mode database whose `-wal` still
    holds frames (they are not in the file yet); a hot rollback journal (the
    file may hold half a transaction).
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


def quick_check_problems(path: Path, limit: int = MAX_REPORTED_PROBLEMS) -> list[str]:
    """What SQLite's own `PRAGMA quick_check` (every page and record, but not whether
    indexes agree with their tables: `BackgroundIntegrityCheck`) says is wrong with
    the file ([] = ok).

    The file is opened read-only and immutable: nothing is written, no journal
    is looked for (check_importable already refused a hot one).
    """
    try:
        conn = _open_checked(path)
    except sqlite3.Error as exc:
        return [f"SQLite cannot open it: {exc}"]
    try:
        return _check_rows(conn, "quick_check", limit)
    except sqlite3.Error as exc:
        return _cannot_check(path, exc, limit)
    finally:
        conn.close()


def _open_checked(path: Path) -> sqlite3.Connection:
    uri = f"file:{path.absolute()}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _check_rows(conn: sqlite3.Connection, pragma: str, limit: int) -> list[str]:
    """The problems `PRAGMA pragma` reports ([] = ok); sqlite3.Error when it cannot run."""
    rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}({int(limit)})")]
    return [] if rows == ["ok"] else rows


def _cannot_check(path: Path, exc: sqlite3.Error, limit: int) -> list[str]:
    where = describe_damage(path, limit)
    return [f"SQLite cannot check it: {exc}" + (f"; {where[0]}" if where else "")]


class BackgroundIntegrityCheck:
    """SQLite's full `integrity_check` of a file, run in a thread while the import
    walks the file and the server ingests it.

    The full check compares every index with its table: at 1 GB it takes 12 s,
    a quarter of the import, where `quick_check` (every page and record) takes
    1 s. So the import refuses what `quick_check` finds before touching the
    store, and waits for the full check only before its transaction commits: a
    file whose indexes disagree with their tables is still refused, and rolled
    back (SQLite releases the GIL while it checks, so the check runs beside the
    walk). `cancel` interrupts it when the import fails first.
    """

    def __init__(self, path: Path, limit: int = MAX_REPORTED_PROBLEMS) -> None:
        self.path = path
        self._problems: list[str] | None = None
        self._cancelled = False
        try:
            self._conn: sqlite3.Connection | None = _open_checked(path)
        except sqlite3.Error as exc:
            self._conn, self._problems = None, [f"SQLite cannot open it: {exc}"]
        self._thread = threading.Thread(
            target=self._run, args=(limit,), name="pgfs-integrity-check", daemon=True
        )
        self._thread.start()

    def _run(self, limit: int) -> None:
        if self._conn is None:
            return
        try:
            self._problems = _check_rows(self._conn, "integrity_check", limit)
        except sqlite3.Error as exc:
            self._problems = [] if self._cancelled else _cannot_check(self.path, exc, limit)

    def problems(self) -> list[str]:
        """What the full check found (waits for it to end)."""
        self._thread.join()
        assert self._problems is not None
        return self._problems

    def cancel(self) -> None:
        """Stop the check (if it still runs) and close its connection."""
        if self._conn is not None:
            if self._thread.is_alive():
                self._cancelled = True
                self._conn.interrupt()
            self._thread.join()
            self._conn.close()
            self._conn = None

    def __enter__(self) -> BackgroundIntegrityCheck:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


def describe_damage(path: Path, limit: int = 10) -> list[str]:
    """Where pgfs' own parser finds a database file damaged: tree, root page, what.

    SQLite says only "database disk image is malformed" when it cannot read
    its schema; this walks page 1 and every b-tree of the schema and names the
    first problem of each tree.
    """
    found: list[str] = []
    try:
        source = FilePageSource(path)
    except FormatError as exc:
        return [str(exc)]
    with source:
        usable = source.usable_size
        try:
            entries = read_schema(source, usable, source.header.text_encoding)
        except FormatError as exc:
            return [f"sqlite_schema (the tree at page 1): {exc}"]
        for obj in schema_objects(entries).values():
            try:
                for _ in iter_tree(
                    source, obj.rootpage, usable, table=obj.table_tree, validate=True
                ):
                    pass
            except FormatError as exc:
                found.append(f"{obj.entry.type} {obj.name} (root page {obj.rootpage}): {exc}")
            if len(found) >= limit:
                break
    return found


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
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stats: CommitStats | None = None

    @property
    def bytes(self) -> int:
        return self.pages * self.page_size

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_dropped(self) -> int:
        return sum(len(r) for r in self.dropped_rows.values())


class _Importer:
    """Walks a database file and yields the Changeset parts of its import."""

    def __init__(self, src: FilePageSource, *, force: bool, bar: tqdm | None = None) -> None:
        self.src = src
        self.force = force
        self.bar = bar
        self.header = src.header
        self.usable = src.usable_size
        self.page_count = src.page_count
        self.header_bytes = src.read(1)[:HEADER_SIZE]
        self.entries = read_schema(src, self.usable, self.header.text_encoding)
        self.objects = schema_objects(self.entries)
        self.visited = bytearray(self.page_count + 1)
        self.visited[1] = 1
        self.report = ImportReport(str(src.path), self.page_count, src.page_size)
        self.out = ChangesetParts(
            self._new_part(first=True),
            self._new_part,
            record_overhead=RECORD_OVERHEAD,
            on_page=self._page_added,
        )
        self._raw_chain: dict[int, bytes] = {}

    def _new_part(self, *, first: bool = False) -> Changeset:
        schema = SchemaChange()
        if first:
            schema.created = [o.definition for o in self.objects.values() if o.definition]
        return Changeset(
            source=CommitSource.IMPORT,
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

    def read_chain_page(self, pgno: int) -> bytes:
        self.claim(pgno)
        return self.src.read(pgno)

    # -- parts ---------------------------------------------------------------------------

    def _page_added(self, record: PageRecord) -> None:
        if self.bar is not None:
            self.bar.update(self.src.page_size)

    def add_page(self, record: PageRecord) -> None:
        self.out.add_page(record)

    def take_if_full(self) -> Changeset | None:
        return self.out.take_if_full()

    # -- walking -------------------------------------------------------------------------

    def parts(self):
        """The import's parts, in order (a generator: the store consumes it)."""
        yield from self._walk_raw(1, SCHEMA_OWNER, table=True)
        for obj in sorted(self.objects.values(), key=lambda o: o.rootpage):
            self.claim(obj.rootpage)
            if obj.rendered:
                yield from self._walk_rendered(obj)
            elif obj.mirrored:
                yield from self._walk_mirror(obj)
            else:
                yield from self._walk_raw(obj.rootpage, obj.name, table=obj.table_tree)
        yield from self._freelist()
        yield from self._pointer_maps()
        yield from self._leftovers()
        last = self.out.take()
        self.report.parts = self.out.taken
        yield last

    def _walk(self, root: int, *, table: bool, rendered: bool, mirror: bool = False):
        if rendered:
            return walk_table(
                self.src,
                root,
                self.usable,
                claim=self.claim,
                read_chain=self.read_chain_page,
                batch=1,
            )
        return walk_index_tree(
            self.src,
            root,
            self.usable,
            table=table,
            claim=self.claim,
            read_chain=self._read_raw,
            batch=1,
            with_payloads=mirror,
        )

    def _read_raw(self, pgno: int) -> bytes:
        """An overflow page of a raw tree: claimed, and kept for its record."""
        self.claim(pgno)
        image = self.src.read(pgno)
        self._raw_chain[pgno] = image
        return image

    def _walk_rendered(self, obj: SchemaObject):
        name = obj.name
        for page in self._walk(obj.rootpage, table=True, rendered=True):
            self._add_table_page(name, page)
            part = self.take_if_full()
            if part is not None:
                yield part

    def _add_table_page(self, name: str, page: WalkedPage) -> None:
        """An interior page's image, or a leaf's rows (only those that decode, with
        --force)."""
        kept = page.rows if not self.force else list(self._decodable(name, page.rows))
        add_table_page(self.out, name, page, kept)
        self.report.rows[name] = self.report.rows.get(name, 0) + len(kept)

    def _decodable(self, name: str, rows: list[TableRow]) -> Iterator[TableRow]:
        """--force: the rows whose records decode; the others are reported, and their
        overflow pages become free pages."""
        encoding = self.header.text_encoding
        for row in rows:
            try:
                decode_record(row.payload, encoding)
            except FormatError:
                self.report.dropped_rows.setdefault(name, []).append(row.rowid)
                for pgno in row.chain:
                    self.add_page(PageRecord(pgno, PageKind.FREE, None))
                continue
            yield row

    def _walk_mirror(self, obj: SchemaObject):
        """A WITHOUT ROWID table: raw pages, its rows refilled from every cell."""
        for page in self._walk(obj.rootpage, table=False, rendered=False, mirror=True):
            self.add_page(PageRecord(page.pgno, page.kind, obj.name, data=page.image))
            add_mirror_rows(self.out, obj.name, page)
            for _payload, chain in page.payloads:
                self._add_raw_chain(obj.name, chain)
            self.report.rows[obj.name] = self.report.rows.get(obj.name, 0) + len(page.payloads)
            part = self.take_if_full()
            if part is not None:
                yield part

    def _walk_raw(self, root: int, owner: str, *, table: bool):
        for page in self._walk(root, table=table, rendered=False):
            self.add_page(PageRecord(page.pgno, page.kind, owner, data=page.image))
            for _payload, chain in page.payloads:
                self._add_raw_chain(owner, chain)
            part = self.take_if_full()
            if part is not None:
                yield part

    def _add_raw_chain(self, owner: str, chain: list[int]) -> None:
        for seq, pgno in enumerate(chain):
            image = self._raw_chain.pop(pgno)
            self.add_page(PageRecord(pgno, PageKind.OVERFLOW, owner, None, None, seq, image))

    def _freelist(self):
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
            self.add_page(PageRecord(pgno, PageKind.FREELIST_TRUNK, None, data=self.src.read(pgno)))
        for pgno in free.leaves:
            self.claim(pgno)
            self.add_page(PageRecord(pgno, PageKind.FREE, None))
            part = self.take_if_full()
            if part is not None:
                yield part

    def _pointer_maps(self):
        if not self.header.auto_vacuum:
            return
        for pgno in range(2, self.page_count + 1):
            if is_ptrmap_page(pgno, self.usable):
                self.claim(pgno)
                self.add_page(PageRecord(pgno, PageKind.PTRMAP, None, data=self.src.read(pgno)))
                part = self.take_if_full()
                if part is not None:
                    yield part

    def _leftovers(self):
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
            self.add_page(PageRecord(pgno, PageKind.FREE, None, data=self.src.read(pgno)))
            part = self.take_if_full()
            if part is not None:
                yield part
            start = pgno + 1
        if self.report.unused_pages:
            log.warning(
                "%s: %d pages belong to nothing (kept as they are)",
                self.src.path,
                self.report.unused_pages,
            )


def import_file(
    store: Store,
    path: str | os.PathLike[str],
    replace: bool = False,
    progress: bool = True,
    *,
    force: bool = False,
    holder: LeaseHolder | None = None,
) -> ImportReport:
    """Import the SQLite file at `path` into the store in one server transaction.

    Refuses (TransferError, FormatError, StoreNotEmptyError, LeaseHeldError)
    before writing anything when the file cannot be imported faithfully, fails
    SQLite's quick_check (unless `force`), the store already holds a database
    and `replace` is false, or a mount holds the store's lease. SQLite's full
    integrity_check runs beside the import (`BackgroundIntegrityCheck`): a file
    that fails it is refused before the transaction commits. Any error after
    the first write rolls back: nothing is imported.
    """
    path = Path(path)
    check_importable(path)
    if not force:
        _refuse_damaged(path, quick_check_problems(path))
    with BackgroundIntegrityCheck(path) as check:

        def verdict() -> None:
            if not force:
                _refuse_damaged(path, check.problems())

        try:
            report = _import(store, path, replace, progress, force, holder, verdict)
        except CorruptPageError as exc:
            verdict()
            raise TransferError(f"{path}: cannot import a damaged database: {exc}") from exc
        report.problems = check.problems()
    return report


def _refuse_damaged(path: Path, problems: list[str]) -> None:
    """TransferError when SQLite's check of the file found problems."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TransferError(
            f"{path}: the database is damaged: SQLite's integrity_check says: "
            f"{problems[0]}{more}. Nothing was imported. Repair it first (sqlite3 {path} "
            "'.recover'), or use --force to import what decodes"
        )


def _checked_last(parts: Iterator[Changeset], verdict: Callable[[], None]) -> Iterator[Changeset]:
    """`parts`, then `verdict()` before the write may commit (it raises to roll back)."""
    yield from parts
    verdict()


def _check_empty(store: Store, replace: bool) -> None:
    if not replace and not store.is_empty():
        raise StoreNotEmptyError(
            f"the store ({store.target}) already holds a database; use --replace to overwrite it"
        )


def _import(
    store: Store,
    path: Path,
    replace: bool,
    progress: bool,
    force: bool,
    holder: LeaseHolder | None,
    verdict: Callable[[], None],
) -> ImportReport:
    with FilePageSource(path) as src:
        _check_empty(store, replace)  # before the lease: a refused import leaves no trace
        store.initialise()
        store.acquire_lease(holder or LeaseHolder.this_process(f"pgfs import {path}"))
        try:
            _check_empty(store, replace)
            started = time.perf_counter()
            with progress_bar("import", src.page_count * src.page_size, progress) as bar:
                importer = _Importer(src, force=force, bar=bar)
                log.info(
                    "importing %s: %d pages of %d bytes, %d schema objects",
                    path,
                    src.page_count,
                    src.page_size,
                    len(importer.objects),
                )
                walk = _checked_last(importer.parts(), verdict)
                with Producer(walk, name="pgfs-import-walk") as parts:
                    stats = store.write(parts, source=CommitSource.IMPORT, clear=replace)
        finally:
            store.release_lease()
    report = importer.report
    report.seconds = time.perf_counter() - started
    report.stats = stats
    log.info(
        "imported %s: %d rows in %d parts, %.1f s",
        path,
        report.total_rows,
        report.parts,
        report.seconds,
    )
    return report
