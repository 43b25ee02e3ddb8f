"""Page sources: where the diff, the importer and the exporter read page images from.

Everything in the emulator works on page images. A `PageSource` gives the
image of page `pgno` (1-based) of one version of a database:

- `FilePageSource` reads a real SQLite file lazily (import);
- `pgfs.emulator.database.Database` renders the store's current state (the
  old version in a diff);
- `OverlayPageSource` puts the pages of a commit over another source (the new version).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from pgfs.sqlite.errors import CorruptPageError, NotADatabaseError
from pgfs.sqlite.header import HEADER_SIZE, DatabaseHeader


@runtime_checkable
class PageSource(Protocol):
    """One version of a database, page by page."""

    page_size: int
    usable_size: int
    page_count: int

    def read(self, pgno: int) -> bytes:
        """The image of page `pgno` (1 <= pgno <= page_count), `page_size` bytes."""
        ...

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        """Images of several pages, in one batch where the source can."""
        ...


def header_page_count(header: DatabaseHeader, file_size: int) -> int:
    """The database size in pages (fileformat2 §1.3.7).

    The in-header size counts only when it is non-zero and the change counter
    equals the version-valid-for number; otherwise the file size decides.
    """
    if header.database_size and header.file_change_counter == header.version_valid_for:
        return header.database_size
    return file_size // header.page_size


class FilePageSource:
    """A SQLite database file read lazily, page by page, with a tiny cache.

    Raises NotADatabaseError for a file without the SQLite header and
    CorruptPageError naming the first missing page for a truncated file.
    """

    def __init__(self, path: str | os.PathLike[str], cache_pages: int = 32) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self.file_size = os.fstat(self._fd).st_size
            first = os.pread(self._fd, HEADER_SIZE, 0)
            if len(first) < HEADER_SIZE:
                raise NotADatabaseError(
                    f"{self.path}: {self.file_size} bytes is too short for a SQLite database"
                )
            self.header = DatabaseHeader.parse(first)
            self.page_size = self.header.page_size
            self.usable_size = self.header.usable_size
            self.page_count = header_page_count(self.header, self.file_size)
            in_file = self.file_size // self.page_size
            if self.page_count > in_file or self.page_count == 0:
                raise CorruptPageError(
                    in_file + 1,
                    f"beyond the end of the file: the file is truncated "
                    f"({self.file_size} bytes, the header says {self.page_count} pages "
                    f"of {self.page_size} bytes)",
                )
        except BaseException:
            os.close(self._fd)
            raise
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_pages = cache_pages

    def read(self, pgno: int) -> bytes:
        cached = self._cache.get(pgno)
        if cached is not None:
            self._cache.move_to_end(pgno)
            return cached
        if not 1 <= pgno <= self.page_count:
            raise CorruptPageError(pgno, f"page number out of range 1..{self.page_count}")
        data = os.pread(self._fd, self.page_size, (pgno - 1) * self.page_size)
        if len(data) != self.page_size:
            raise CorruptPageError(pgno, f"short read: {self.path} is truncated")
        self._cache[pgno] = data
        if len(self._cache) > self._cache_pages:
            self._cache.popitem(last=False)
        return data

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        return {pgno: self.read(pgno) for pgno in pgnos}

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FilePageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OverlayPageSource:
    """`changed` pages over `base`: the database after a commit.

    Page size and usable size come from the new page 1 when it is among the
    changed pages (a VACUUM may change them), else from the base.
    """

    def __init__(self, base: PageSource, changed: Mapping[int, bytes], page_count: int) -> None:
        self.base = base
        self.changed = changed
        self.page_count = page_count
        first = changed.get(1)
        if first is not None:
            header = DatabaseHeader.parse(first[:HEADER_SIZE])
            self.page_size = header.page_size
            self.usable_size = header.usable_size
        else:
            self.page_size = base.page_size
            self.usable_size = base.usable_size

    def read(self, pgno: int) -> bytes:
        image = self.changed.get(pgno)
        if image is not None and pgno <= self.page_count:
            return image
        self._check(pgno)
        if pgno > self.base.page_count:
            return bytes(self.page_size)  # never written: a hole reads as zeros
        return self.base.read(pgno)

    def read_many(self, pgnos: Iterable[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        rest: list[int] = []
        for pgno in pgnos:
            image = self.changed.get(pgno)
            if image is not None and pgno <= self.page_count:
                out[pgno] = image
            else:
                self._check(pgno)
                if pgno > self.base.page_count:
                    out[pgno] = bytes(self.page_size)
                else:
                    rest.append(pgno)
        if rest:
            out.update(self.base.read_many(rest))
        return out

    def _check(self, pgno: int) -> None:
        if not 1 <= pgno <= self.page_count:
            raise CorruptPageError(pgno, f"page number out of range 1..{self.page_count}")
