"""WAL bytes as SQLite writes them (header, frames with salts and checksum chain)."""

from __future__ import annotations

from pgfs.sqlite import wal

PAGE = 1024


def page(tag: int) -> bytes:
    return bytes([tag % 256]) * PAGE


def wal_header(salts: tuple[int, int]) -> tuple[bytes, tuple[int, int]]:
    """The 32-byte header and the checksum chain it starts."""
    header = wal.WalHeader(wal.WAL_MAGIC_LE, wal.WAL_VERSION, PAGE, 0, *salts, 0, 0)
    header = header.with_checksum()
    return header.to_bytes(), (header.checksum1, header.checksum2)


def wal_frame(
    pgno: int, data: bytes, commit: int, salts: tuple[int, int], chain: tuple[int, int]
) -> tuple[bytes, tuple[int, int]]:
    """A frame's 24-byte header and page, and the chain after it."""
    chain = wal.frame_checksum(wal.WalFrameHeader(pgno, commit, *salts, 0, 0), data, *chain, False)
    return wal.WalFrameHeader(pgno, commit, *salts, *chain).to_bytes() + data, chain
