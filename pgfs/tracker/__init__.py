"""Commit detection for rollback journals and WAL, one state machine per database file."""

from pgfs.tracker.database_file import DatabaseFile
from pgfs.tracker.errors import CommitFailedError, NoJournalError, ReadOnlyError, TrackerError
from pgfs.tracker.interface import Backend, Role, SideFile

__all__ = [
    "Backend",
    "CommitFailedError",
    "DatabaseFile",
    "NoJournalError",
    "ReadOnlyError",
    "Role",
    "SideFile",
    "TrackerError",
]
