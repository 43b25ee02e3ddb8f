"""Overflow pages (fileformat2 §1.6, "Cell Payload Overflow Pages").

The part of a payload that does not fit on its b-tree page is a linked list of
overflow pages: a 4-byte big-endian next page number (0 on the last page),
then usable_size - 4 bytes of payload (the last page holds the remainder).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pgfs.sqlite.btree import PageType, local_payload_size
from pgfs.sqlite.errors import CorruptPageError

_U32 = struct.Struct(">I")


def split_payload(
    payload: bytes, usable_size: int, page_type: PageType
) -> tuple[bytes, list[bytes]]:
    """(local part, overflow chunks of usable_size - 4 bytes, the last shorter)."""
    n_local = local_payload_size(len(payload), usable_size, page_type)
    step = usable_size - 4
    chunks = [bytes(payload[i : i + step]) for i in range(n_local, len(payload), step)]
    return bytes(payload[:n_local]), chunks


def overflow_page_count(payload_size: int, usable_size: int, page_type: PageType) -> int:
    """How many overflow pages a payload of this size needs."""
    rest = payload_size - local_payload_size(payload_size, usable_size, page_type)
    return -(-rest // (usable_size - 4))


def encode_overflow_page(next_pgno: int, chunk: bytes, page_size: int) -> bytes:
    """An overflow page: next page number (0 = last), the chunk, zero padding."""
    if len(chunk) > page_size - 4:
        raise ValueError(f"{len(chunk)}-byte chunk does not fit on a {page_size}-byte page")
    if not 0 <= next_pgno <= 0xFFFFFFFF:
        raise ValueError(f"bad next page number {next_pgno}")
    return _U32.pack(next_pgno) + bytes(chunk) + bytes(page_size - 4 - len(chunk))


def decode_overflow_page(data: bytes, pgno: int, usable_size: int) -> tuple[int, bytes]:
    """(next page number, 0 at the end of the chain; the usable_size - 4 content bytes)."""
    if usable_size < 5 or len(data) < usable_size:
        raise CorruptPageError(pgno, f"overflow page is {len(data)} bytes, usable {usable_size}")
    return _U32.unpack_from(data, 0)[0], bytes(data[4:usable_size])


def assemble_payload(
    cell,
    read_page: Callable[[int], bytes],
    usable_size: int,
    page_type: PageType,
    pgno: int,
) -> tuple[bytes, list[int]]:
    """The full payload of a cell (any kind with a payload) and its overflow chain.

    ``pgno`` is the page holding the cell, for error messages. Follows the
    chain for exactly the bytes the payload size asks for (the next pointer of
    the last page is not followed). Raises CorruptPageError on a loop, a page 0
    before the payload is complete, or a local part that does not match the
    payload size.
    """
    size = cell.payload_size
    local = bytes(cell.local)
    n_local = local_payload_size(size, usable_size, page_type)
    if len(local) != n_local:
        raise CorruptPageError(pgno, f"cell keeps {len(local)} local bytes, expected {n_local}")
    if cell.overflow is None:
        if n_local != size:
            raise CorruptPageError(pgno, "payload spills but the cell has no overflow page")
        return local, []
    return follow_chain(local, size, cell.overflow, read_page, usable_size, pgno)


def follow_chain(
    local: bytes,
    size: int,
    first: int,
    read_page: Callable[[int], bytes],
    usable_size: int,
    pgno: int,
) -> tuple[bytes, list[int]]:
    """`local` completed to `size` bytes from the overflow chain starting at `first`:
    (payload, chain). Linear in the chain's length."""
    parts = [local]
    chain: list[int] = []
    seen: set[int] = set()
    remaining = size - len(local)
    step = usable_size - 4
    nxt = first
    while remaining > 0:
        if nxt == 0:
            raise CorruptPageError(
                pgno, f"overflow chain ends after {len(chain)} pages, {remaining} bytes short"
            )
        if nxt in seen:
            raise CorruptPageError(pgno, f"overflow chain loops back to page {nxt}")
        seen.add(nxt)
        chain.append(nxt)
        page = read_page(nxt)
        if len(page) < usable_size:
            raise CorruptPageError(nxt, f"overflow page is {len(page)} bytes, usable {usable_size}")
        take = min(remaining, step)
        parts.append(page[4 : 4 + take])
        remaining -= take
        nxt = _U32.unpack_from(page, 0)[0]
    return b"".join(parts), chain
