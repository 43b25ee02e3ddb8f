"""The Producer: a thread walks ahead of the consumer, and errors and early ends pass
between them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgfs.emulator.producer import Producer


def test_items_come_in_order():
    with Producer(range(100), depth=3) as items:
        assert list(items) == list(range(100))


def test_an_error_of_the_producer_is_raised_by_the_consumer():
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("damaged page 7")

    with Producer(failing()) as items:
        assert next(items) == 1
        with pytest.raises(ValueError, match="damaged page 7"):
            next(items)
        assert list(items) == []


def test_leaving_early_stops_the_walk():
    made: list[int] = []
    closed: list[bool] = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                made.append(n)
                yield n
                n += 1
        finally:
            closed.append(True)

    with Producer(endless(), depth=1) as items:
        assert next(items) == 0
    assert closed == [True]
    assert len(made) <= 3  # one consumed, one queued, one waiting for room
