"""Errors raised by the PostgreSQL store.

Every message is safe to print: none of them ever contains a password (DSNs
in messages go through `pgfs.store.dsn.redact_dsn`).
"""

from __future__ import annotations


class StoreError(Exception):
    """PostgreSQL refused or failed an operation; the store is unchanged."""


class StoreUnavailableError(StoreError):
    """PostgreSQL cannot be reached, or the connection was lost mid-operation."""


class StoreNotEmptyError(StoreError):
    """The store already holds a database (e.g. `pgfs import` without --replace)."""


class StoreConflictError(StoreError):
    """The schemas pgfs would use hold something pgfs did not create."""
