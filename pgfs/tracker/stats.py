"""What the tracker counts, for `.pgfs-status`, logs and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CommitRecord:
    """One applied commit, for logs and `.pgfs-status`."""

    source: str
    pages: int
    page_count: int
    ms: float
    at: float
    summary: str


@dataclass
class TrackerStats:
    """Counters of one database file."""

    commits_by_source: dict[str, int] = field(default_factory=dict)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, op) -> rows
    pages_committed: int = 0
    commit_seconds: float = 0.0
    commits: int = 0
    commits_skipped: int = 0
    failed_commits: int = 0
    refused_writes: int = 0
    last_commit: CommitRecord | None = None
    last_error: str | None = None
    last_error_at: float | None = None
