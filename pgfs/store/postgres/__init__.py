"""The PostgreSQL backend: `PostgresStore` and the embedded cluster."""

from pgfs.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
