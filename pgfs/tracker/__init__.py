"""Commit detection for rollback journals and WAL, one state machine per database file."""

from pgfs.tracker.database_file import DatabaseFile
from pgfs.tracker.interface import (
    Backend,
    CommitFailedError,
    NoJournalError,
    ReadOnlyError,
    Role,
    SideFile,
    TrackerError,
)

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
