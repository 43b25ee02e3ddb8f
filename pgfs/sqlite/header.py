"""The 100-byte database header (fileformat2 §1.3 "The Database Header")."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from pgfs.sqlite.errors import NotADatabaseError, UnsupportedFeatureError

HEADER_SIZE = 100
MAGIC = b"SQLite format 3\x00"
MIN_USABLE_SIZE = 480  # §1.3.4: the usable size is not allowed to be less than 480
LOCK_BYTE_OFFSET = 1 << 30  # §1.3.2 "The Lock-Byte Page": the page holding byte 2**30

# magic, page size, write/read version, reserved, 3 payload fractions, then 4-byte fields
# at offsets 24..68 (cache size, user version and application id signed as SQLite
# reports them), 20 reserved bytes, version-valid-for, SQLITE_VERSION_NUMBER.
_LAYOUT = struct.Struct(">16sHBBBBBB6IiIIiIi20sII")


class TextEncoding(IntEnum):
    """Header offset 56 (§1.3.13)."""

    UTF8 = 1
    UTF16LE = 2
    UTF16BE = 3

    @property
    def codec(self) -> str:
        """The Python codec name for this encoding."""
        return _CODECS[self]


_CODECS = {
    TextEncoding.UTF8: "utf-8",
    TextEncoding.UTF16LE: "utf-16-le",
    TextEncoding.UTF16BE: "utf-16-be",
}


def is_valid_page_size(page_size: int) -> bool:
    """A power of two between 512 and 65536 (§1.3.2)."""
    return 512 <= page_size <= 65536 and page_size & (page_size - 1) == 0


def lock_byte_page(page_size: int) -> int:
    """Page number of the lock-byte page (§1.3.2); SQLite never stores data there."""
    return LOCK_BYTE_OFFSET // page_size + 1


@dataclass
class DatabaseHeader:
    """Every field of the database header, in file order.

    ``page_size`` is the real size (65536 where the file stores 1).
    ``text_encoding`` is UTF8 when the file stores 0 (a database whose schema
    was never written; SQLite then uses UTF-8), with ``text_encoding_unset``
    set so that :meth:`to_bytes` writes the 0 back. ``reserved_expansion`` is
    the 20 bytes at offset 72 that must be zero; kept for a lossless round trip.
    """

    page_size: int = 4096
    write_version: int = 1
    read_version: int = 1
    reserved_space: int = 0
    max_payload_fraction: int = 64
    min_payload_fraction: int = 32
    leaf_payload_fraction: int = 32
    file_change_counter: int = 0
    database_size: int = 0
    first_freelist_trunk: int = 0
    freelist_count: int = 0
    schema_cookie: int = 0
    schema_format: int = 4
    default_cache_size: int = 0
    largest_root_btree: int = 0
    text_encoding: TextEncoding = TextEncoding.UTF8
    user_version: int = 0
    incremental_vacuum: int = 0
    application_id: int = 0
    version_valid_for: int = 0
    sqlite_version: int = 0
    text_encoding_unset: bool = False
    reserved_expansion: bytes = field(default=bytes(20), repr=False)

    @classmethod
    def parse(cls, data: bytes) -> DatabaseHeader:
        """Decode the first 100 bytes of ``data``.

        Raises NotADatabaseError for what SQLite rejects with SQLITE_NOTADB:
        a short header, a bad magic string, an impossible page size, a usable
        size under 480 bytes, payload fractions other than 64/32/32 (§1.3.6),
        an unknown text encoding; UnsupportedFeatureError for a read version
        above 2 (§1.3.3: SQLite refuses to read such a file).
        """
        if len(data) < HEADER_SIZE:
            raise NotADatabaseError(f"database header is {len(data)} bytes, not {HEADER_SIZE}")
        f = _LAYOUT.unpack_from(bytes(data[:HEADER_SIZE]))
        if f[0] != MAGIC:
            raise NotADatabaseError("bad magic string: not a SQLite 3 database")
        page_size = 65536 if f[1] == 1 else f[1]
        if not is_valid_page_size(page_size):
            raise NotADatabaseError(f"impossible page size {f[1]}")
        write_version, read_version, reserved = f[2], f[3], f[4]
        if read_version > 2:
            raise UnsupportedFeatureError(f"file read format {read_version} is newer than 2")
        if page_size - reserved < MIN_USABLE_SIZE:
            raise NotADatabaseError(f"usable size {page_size - reserved} is under 480")
        if (f[5], f[6], f[7]) != (64, 32, 32):
            raise NotADatabaseError(f"payload fractions {f[5]}/{f[6]}/{f[7]} are not 64/32/32")
        (change, size, trunk, free, cookie, fmt, cache, root, enc, user, incr, app) = f[8:20]
        if enc > 3:
            raise NotADatabaseError(f"unknown text encoding {enc}")
        return cls(
            page_size=page_size,
            write_version=write_version,
            read_version=read_version,
            reserved_space=reserved,
            max_payload_fraction=f[5],
            min_payload_fraction=f[6],
            leaf_payload_fraction=f[7],
            file_change_counter=change,
            database_size=size,
            first_freelist_trunk=trunk,
            freelist_count=free,
            schema_cookie=cookie,
            schema_format=fmt,
            default_cache_size=cache,
            largest_root_btree=root,
            text_encoding=TextEncoding(enc or 1),
            user_version=user,
            incremental_vacuum=incr,
            application_id=app,
            version_valid_for=f[21],
            sqlite_version=f[22],
            text_encoding_unset=enc == 0,
            reserved_expansion=f[20],
        )

    def to_bytes(self) -> bytes:
        """The 100 header bytes (page size 65536 written as 1)."""
        if not is_valid_page_size(self.page_size):
            raise ValueError(f"impossible page size {self.page_size}")
        enc = 0 if self.text_encoding_unset else int(self.text_encoding)
        return _LAYOUT.pack(
            MAGIC,
            1 if self.page_size == 65536 else self.page_size,
            self.write_version,
            self.read_version,
            self.reserved_space,
            self.max_payload_fraction,
            self.min_payload_fraction,
            self.leaf_payload_fraction,
            self.file_change_counter,
            self.database_size,
            self.first_freelist_trunk,
            self.freelist_count,
            self.schema_cookie,
            self.schema_format,
            self.default_cache_size,
            self.largest_root_btree,
            enc,
            self.user_version,
            self.incremental_vacuum,
            self.application_id,
            bytes(self.reserved_expansion).ljust(20, b"\0")[:20],
            self.version_valid_for,
            self.sqlite_version,
        )

    @property
    def usable_size(self) -> int:
        """Page size minus the reserved bytes at the end of every page (§1.3.4)."""
        return self.page_size - self.reserved_space

    @property
    def is_wal(self) -> bool:
        """File format version numbers 2 mean WAL mode (§1.3.3)."""
        return self.read_version == 2 or self.write_version == 2

    @property
    def auto_vacuum(self) -> bool:
        """Auto- or incremental-vacuum database: pointer-map pages exist (§1.3.14)."""
        return self.largest_root_btree != 0

    @property
    def database_size_valid(self) -> bool:
        """§1.3.7: the in-header size counts only if non-zero and the
        version-valid-for number equals the change counter."""
        return self.database_size != 0 and self.version_valid_for == self.file_change_counter

    @property
    def lock_byte_page(self) -> int:
        """Page number of this database's lock-byte page."""
        return lock_byte_page(self.page_size)
