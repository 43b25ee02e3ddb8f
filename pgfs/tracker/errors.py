"""The errors a tracked file operation raises, each with the errno the caller sees."""

from __future__ import annotations

import errno


class TrackerError(Exception):
    """A file operation pgfs refuses or could not complete; `errno` is what the caller sees."""

    errno = errno.EIO


class CommitFailedError(TrackerError):
    """The backend's commit raised: the commit is not in the store and not visible to SQLite."""


class NoJournalError(TrackerError):
    """A database-file write with neither a rollback journal nor a WAL (journal_mode OFF/MEMORY)."""


class ReadOnlyError(TrackerError):
    errno = errno.EROFS
