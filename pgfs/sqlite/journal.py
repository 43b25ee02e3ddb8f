"""The rollback journal header (fileformat2 §3 "The Rollback Journal").

A journal starts with a header in its first sector: the 8-byte magic, then
big-endian 32-bit page count ("nRec"), checksum nonce, initial database size in
pages, sector size and page size. A journal whose header is zeroed
(journal_mode=PERSIST) or that is empty (TRUNCATE) or gone (DELETE) means the
transaction is committed: it is no longer "hot" (§3, "hot journal").

SQLite first writes the header with the magic as zeros and fills the magic in
only when it syncs the journal, just before it first writes the database file
(writeJournalHdr / syncJournal in pager.c). So a journal without its magic is
either finished or not yet in force: only the change "magic present, then
gone" (or unlink, or truncation to 0) after database writes is a commit. Each
journal sync within one transaction starts a new header (its own nonce and
record count) at the next sector boundary.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
JOURNAL_HEADER_SIZE = 28
_FIELDS = struct.Struct(">5I")
# nRec of 0xFFFFFFFF: "compute the count from the journal size" (no-sync mode).
RECORD_COUNT_FROM_SIZE = 0xFFFFFFFF


@dataclass
class JournalHeader:
    record_count: int
    nonce: int
    initial_pages: int
    sector_size: int
    page_size: int

    def to_bytes(self) -> bytes:
        """The 28 header bytes (the rest of the header sector is unused)."""
        return JOURNAL_MAGIC + _FIELDS.pack(
            self.record_count, self.nonce, self.initial_pages, self.sector_size, self.page_size
        )


def parse_journal_header(data: bytes) -> JournalHeader | None:
    """The header at the start of a journal; None when the magic is absent
    (empty, zeroed by PERSIST, or not yet written in full)."""
    if len(data) < JOURNAL_HEADER_SIZE or bytes(data[:8]) != JOURNAL_MAGIC:
        return None
    return JournalHeader(*_FIELDS.unpack_from(bytes(data[:JOURNAL_HEADER_SIZE]), 8))


def journal_is_finalized(data: bytes) -> bool:
    """True when the journal no longer describes a transaction: empty, or its
    magic is not there (zeroed header)."""
    return len(data) == 0 or bytes(data[:8]) != JOURNAL_MAGIC


def journal_page_checksum(nonce: int, page: bytes) -> int:
    """The checksum of a journal page record (pager_cksum): the nonce plus
    every 200th byte of the page, from the end backwards."""
    total = nonce
    i = len(page) - 200
    while i > 0:
        total += page[i]
        i -= 200
    return total & 0xFFFFFFFF
