"""The MariaDB backend: `MariaDBStore` (driver: the official `mariadb` connector)."""

from pgfs.store.mariadb.store import MariaDBStore

__all__ = ["MariaDBStore"]
