"""The store: where a SQLite database is kept as rows (README Design, "Layers").

`Store` (in `interface`) is all the layers above know of it; `open_store`
picks the backend from the URL's scheme:

- `postgresql://...`, `postgres://...`, a libpq `key=value` string, or ""
  (the libpq environment): PostgreSQL;
- `mariadb://...` (or `mysql://...`): MariaDB.
"""

from __future__ import annotations

from pgfs.store.errors import StoreError
from pgfs.store.interface import Store

POSTGRES_SCHEMES = ("postgresql", "postgres")
MARIADB_SCHEMES = ("mariadb", "mysql")


def backend_of(url: str) -> str:
    """'postgres' or 'mariadb' for a store URL (StoreError for an unknown scheme)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return "postgres"  # a libpq key=value string, or the libpq environment
    scheme = scheme.lower()
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    if scheme in MARIADB_SCHEMES:
        return "mariadb"
    raise StoreError(
        f"unknown store URL scheme {scheme!r}: use postgresql://, mariadb:// or a libpq "
        "key=value string"
    )


def open_store(url: str, *, meta_schema: str = "pgfs", data_schema: str = "jellyfin") -> Store:
    """Connect to the store at `url` (StoreUnavailableError when it cannot be reached)."""
    if backend_of(url) == "mariadb":
        from pgfs.store.mariadb import MariaDBStore

        return MariaDBStore.connect(url, meta_schema=meta_schema, data_schema=data_schema)
    from pgfs.store.postgres import PostgresStore

    return PostgresStore.connect(url, meta_schema=meta_schema, data_schema=data_schema)


__all__ = ["Store", "StoreError", "backend_of", "open_store"]
