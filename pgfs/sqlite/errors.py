"""Errors raised by the SQLite file-format layer.

Every decoder in :mod:`pgfs.sqlite` raises only these (all subclasses of
``ValueError``) on malformed input, never ``IndexError``, ``struct.error`` and
the like: callers can treat any :class:`FormatError` as "these bytes are not
what SQLite would have written".
"""

from __future__ import annotations


class FormatError(ValueError):
    """Bytes that do not follow the SQLite file format."""


class CorruptPageError(FormatError):
    """A page (or a record on a page) is malformed.

    ``pgno`` is None when the position is not known (e.g. a bare record).
    """

    def __init__(self, pgno: int | None, detail: str) -> None:
        self.pgno = pgno
        self.detail = detail
        super().__init__(f"page {pgno}: {detail}")

    def __reduce__(self):  # keep pickling (e.g. across processes) working
        return (type(self), (self.pgno, self.detail))


class NotADatabaseError(FormatError):
    """The file header is not a SQLite database header (SQLITE_NOTADB)."""


class UnsupportedFeatureError(FormatError):
    """Valid SQLite that pgfs does not handle (e.g. CREATE VIRTUAL TABLE)."""
