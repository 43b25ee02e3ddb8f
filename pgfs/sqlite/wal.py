"""The write-ahead log (fileformat2 §4 "The Write-Ahead Log"; walformat.html).

A WAL file is a 32-byte header and frames of a 24-byte frame header plus one
page. All header fields are big-endian 32-bit. The checksums (§4.1) run over
32-bit words in the byte order the magic number names, cumulatively: the
header's checksum covers its first 24 bytes; each frame's covers the first 8
bytes of its frame header and its page, starting from the previous frame's
checksum (the header's for the first frame). A frame is valid only if its
salts equal the header's and its checksum matches; a frame with a non-zero
"database size after commit" ends a transaction.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass, replace
from functools import lru_cache

import numpy as np

from pgfs.sqlite.errors import FormatError
from pgfs.sqlite.header import is_valid_page_size

WAL_HEADER_SIZE = 32
WAL_FRAME_HEADER_SIZE = 24
WAL_MAGIC_LE = 0x377F0682
WAL_MAGIC_BE = 0x377F0683
WAL_VERSION = 3007000

_HEADER = struct.Struct(">8I")
_FRAME = struct.Struct(">6I")
_MASK = 0xFFFFFFFF


@dataclass
class WalHeader:
    magic: int
    version: int
    page_size: int
    checkpoint_seq: int
    salt1: int
    salt2: int
    checksum1: int
    checksum2: int

    @classmethod
    def parse(cls, data: bytes) -> WalHeader:
        """Decode the 32-byte header; FormatError for a short header, a bad magic,
        an unknown version or an impossible page size. The checksum is not
        verified here (SQLite treats a bad one as an empty WAL): see
        :attr:`checksum_valid`."""
        if len(data) < WAL_HEADER_SIZE:
            raise FormatError(f"WAL header is {len(data)} bytes, not {WAL_HEADER_SIZE}")
        header = cls(*_HEADER.unpack_from(bytes(data[:WAL_HEADER_SIZE])))
        if header.magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE):
            raise FormatError(f"bad WAL magic {header.magic:#010x}")
        if header.version != WAL_VERSION:
            raise FormatError(f"unknown WAL format version {header.version}")
        if not is_valid_page_size(header.page_size):
            raise FormatError(f"bad WAL page size {header.page_size}")
        return header

    def to_bytes(self) -> bytes:
        return _HEADER.pack(*astuple(self))

    @property
    def big_endian_checksums(self) -> bool:
        """Magic 0x377f0683: checksums over big-endian words."""
        return self.magic == WAL_MAGIC_BE

    def compute_checksum(self) -> tuple[int, int]:
        """The checksum of the first 24 header bytes."""
        return wal_checksum(self.to_bytes()[:24], 0, 0, self.big_endian_checksums)

    @property
    def checksum_valid(self) -> bool:
        return self.compute_checksum() == (self.checksum1, self.checksum2)

    def with_checksum(self) -> WalHeader:
        """A copy with checksum1/checksum2 computed."""
        c1, c2 = self.compute_checksum()
        return replace(self, checksum1=c1, checksum2=c2)


@dataclass
class WalFrameHeader:
    pgno: int
    commit_size: int
    salt1: int
    salt2: int
    checksum1: int
    checksum2: int

    @classmethod
    def parse(cls, data: bytes) -> WalFrameHeader:
        if len(data) < WAL_FRAME_HEADER_SIZE:
            raise FormatError(f"WAL frame header is {len(data)} bytes")
        return cls(*_FRAME.unpack_from(bytes(data[:WAL_FRAME_HEADER_SIZE])))

    def to_bytes(self) -> bytes:
        return _FRAME.pack(
            self.pgno, self.commit_size, self.salt1, self.salt2, self.checksum1, self.checksum2
        )

    @property
    def is_commit(self) -> bool:
        """A commit frame: its "database size after commit" is not zero."""
        return self.commit_size != 0

    @property
    def is_unsalted(self) -> bool:
        """Salts and checksums all zero: SQLite wrote the frame while it meant to
        rewrite the headers after the commit frame (wal.c `walEncodeFrame` with
        `iReCksum` set)."""
        return self.salt1 == self.salt2 == self.checksum1 == self.checksum2 == 0


@lru_cache(maxsize=16)
def _word_format(n_words: int, big_endian: bool) -> struct.Struct:
    return struct.Struct(f"{'>' if big_endian else '<'}{n_words}I")


@lru_cache(maxsize=8)
def _coefficients(n_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple]:
    """The recurrence of §4.1 in closed form, for `n_pairs` pairs of words.

    One step is v' = M v + (a, a + b) with v = (s1, s2) and M = [[1, 1], [1, 2]]
    (s1 += a + s2; s2 += b + s1). After n steps, v_n = M^n v_0 + the sum over
    pairs i of M^(n-1-i) (a_i, a_i + b_i): each of s1, s2 is a dot product of
    the words with fixed coefficients, mod 2**32. Returns the coefficients of
    a and b in s1 and in s2, and M^n.
    """
    powers = np.empty((n_pairs + 1, 4), dtype=np.uint64)
    p11, p12, p21, p22 = 1, 0, 0, 1
    for k in range(n_pairs + 1):
        powers[k] = (p11, p12, p21, p22)
        p11, p12, p21, p22 = (
            (p11 + p21) & _MASK,
            (p12 + p22) & _MASK,
            (p11 + 2 * p21) & _MASK,
            (p12 + 2 * p22) & _MASK,
        )
    ks = powers[n_pairs - 1 :: -1][:n_pairs]  # M^(n-1-i) for i = 0..n-1
    a1 = (ks[:, 0] + ks[:, 1]) & _MASK
    b1 = ks[:, 1].copy()
    a2 = (ks[:, 2] + ks[:, 3]) & _MASK
    b2 = ks[:, 3].copy()
    return a1, b1, a2, b2, tuple(int(x) for x in powers[n_pairs])


def wal_checksum(data: bytes, s1: int, s2: int, big_endian: bool) -> tuple[int, int]:
    """The WAL checksum of `data` (a multiple of 8 bytes) continuing from (s1, s2),
    with words in big- or little-endian order (§4.1):
    for each pair of words (a, b): s1 += a + s2; s2 += b + s1 (mod 2**32).

    Computed in closed form with numpy (`_coefficients`): a few microseconds
    for a page, where the word-by-word loop takes a hundred.
    """
    n = len(data)
    if n % 8:
        raise ValueError(f"checksummed data must be a multiple of 8 bytes, not {n}")
    if n < 64:
        words = _word_format(n // 4, big_endian).unpack(data)
        it = iter(words)
        for a, b in zip(it, it, strict=True):
            s1 = (s1 + a + s2) & _MASK
            s2 = (s2 + b + s1) & _MASK
        return s1, s2
    words = np.frombuffer(data, dtype=">u4" if big_endian else "<u4").astype(np.uint64)
    a, b = words[0::2], words[1::2]
    ca1, cb1, ca2, cb2, (p11, p12, p21, p22) = _coefficients(n // 8)
    t1 = int(np.dot(a, ca1)) + int(np.dot(b, cb1))
    t2 = int(np.dot(a, ca2)) + int(np.dot(b, cb2))
    return (p11 * s1 + p12 * s2 + t1) & _MASK, (p21 * s1 + p22 * s2 + t2) & _MASK


def frame_checksum(
    frame_header: WalFrameHeader | bytes,
    page: bytes,
    s1: int,
    s2: int,
    big_endian: bool,
) -> tuple[int, int]:
    """Checksum of a frame: its first 8 header bytes, then the page."""
    head = frame_header.to_bytes() if isinstance(frame_header, WalFrameHeader) else frame_header
    c1, c2 = wal_checksum(bytes(head[:8]), s1, s2, big_endian)
    return wal_checksum(page, c1, c2, big_endian)


def frame_offset(index: int, page_size: int) -> int:
    """Byte offset of frame ``index`` (0-based) in the WAL file."""
    return WAL_HEADER_SIZE + index * (WAL_FRAME_HEADER_SIZE + page_size)


def frame_valid(
    frame: WalFrameHeader, page: bytes, header: WalHeader, previous: tuple[int, int]
) -> bool:
    """SQLite's walDecodeFrame test: non-zero page number, salts equal to the
    header's, checksum equal to the one computed from ``previous``."""
    if frame.pgno == 0 or (frame.salt1, frame.salt2) != (header.salt1, header.salt2):
        return False
    expected = frame_checksum(frame, page, *previous, header.big_endian_checksums)
    return expected == (frame.checksum1, frame.checksum2)


@dataclass
class WalFrame:
    index: int
    header: WalFrameHeader
    page: bytes


def read_wal(data: bytes) -> tuple[WalHeader | None, list[WalFrame], int]:
    """Recover a WAL as SQLite does (walIndexRecover): the header (None when
    absent, bad or its checksum fails), the valid frames in order, and the
    number of those frames up to and including the last commit frame (the
    frames after it belong to no committed transaction)."""
    try:
        header = WalHeader.parse(data)
    except FormatError:
        return None, [], 0
    if not header.checksum_valid:
        return None, [], 0
    frames: list[WalFrame] = []
    committed = 0
    previous = (header.checksum1, header.checksum2)
    size = header.page_size
    index = 0
    while frame_offset(index + 1, size) <= len(data):
        start = frame_offset(index, size)
        frame = WalFrameHeader.parse(data[start : start + WAL_FRAME_HEADER_SIZE])
        page = bytes(data[start + WAL_FRAME_HEADER_SIZE : start + WAL_FRAME_HEADER_SIZE + size])
        if not frame_valid(frame, page, header, previous):
            break
        previous = (frame.checksum1, frame.checksum2)
        frames.append(WalFrame(index, frame, page))
        index += 1
        if frame.is_commit:
            committed = index
    return header, frames, committed
