"""Errors raised by a store, whatever its backend.

Every message is safe to print: none of them ever contains a password.
"""

from __future__ import annotations


class StoreError(Exception):
    """The server refused or failed an operation; the store is unchanged."""


class StoreUnavailableError(StoreError):
    """The server cannot be reached, or the connection was lost mid-operation."""


class CommitOutcomeUnknownError(StoreUnavailableError):
    """The connection was lost after a commit was sent, and the server could not be
    asked within the deadline whether it landed. `commit_id` finds out later."""

    def __init__(self, message: str, commit_id: object) -> None:
        super().__init__(message)
        self.commit_id = commit_id


class StoreNotEmptyError(StoreError):
    """The store already holds a database (e.g. `pgfs import` without --replace)."""


class StoreConflictError(StoreError):
    """The schemas pgfs would use hold something pgfs did not create."""


class LeaseHeldError(StoreError):
    """Another mount (or import) is the store's writer and is alive."""


class LeaseLostError(StoreError):
    """This process was the store's writer, and another one took over: it may not write."""
