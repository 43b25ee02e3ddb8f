"""Varints (fileformat2 §1.6 "varint")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfs.sqlite.errors import CorruptPageError
from pgfs.sqlite.varint import decode_varint, encode_varint, varint_size

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(I64)
def test_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert len(raw) == varint_size(value)
    assert decode_varint(raw, 0) == (value, len(raw))
    # and at an offset, followed by garbage
    assert decode_varint(b"\xff\xff" + raw + b"\x81", 2) == (value, 2 + len(raw))


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "8100"),
        (240, "8170"),
        (16383, "ff7f"),
        (16384, "818000"),
        (2**56 - 1, "ffffffffffffff7f"),
        (2**56, "80c080808080808000"),
        (-1, "ffffffffffffffffff"),
        (-(2**63), "c08080808080808000"),
        (2**63 - 1, "bfffffffffffffffff"),
    ],
)
def test_known_encodings(value: int, raw: str) -> None:
    assert encode_varint(value).hex() == raw
    assert decode_varint(bytes.fromhex(raw), 0) == (value, len(raw) // 2)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (127, 1), (128, 2), (2**14, 3), (2**49 - 1, 7), (2**49, 8), (2**56, 9), (-5, 9)],
)
def test_sizes(value: int, size: int) -> None:
    assert varint_size(value) == size


def test_unsigned_input_is_the_same_bits() -> None:
    assert encode_varint(2**64 - 1) == encode_varint(-1)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)
    with pytest.raises(ValueError):
        varint_size(value)


def test_non_minimal_encodings_decode() -> None:
    # SQLite never writes them, but reading one is defined: 0x80 0x01 is 1.
    assert decode_varint(b"\x80\x01", 0) == (1, 2)


@given(st.binary(max_size=12), st.integers(min_value=-2, max_value=14))
@settings(deadline=None, max_examples=300)
def test_hostile_bytes(data: bytes, offset: int) -> None:
    try:
        value, nxt = decode_varint(data, offset)
    except CorruptPageError as exc:
        assert exc.pgno is None
    else:
        assert offset < nxt <= len(data)
        assert nxt - offset <= 9
        assert -(2**63) <= value < 2**63


def test_truncated() -> None:
    raw = encode_varint(2**40)
    for cut in range(len(raw)):
        with pytest.raises(CorruptPageError):
            decode_varint(raw[:cut], 0)


def test_memoryview() -> None:
    assert decode_varint(memoryview(b"\x00\x81\x00"), 1) == (128, 3)
