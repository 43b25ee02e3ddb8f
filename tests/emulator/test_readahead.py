"""The read-ahead planner: what a miss renders (pure, no server needed)."""

from __future__ import annotations

from pgfs.emulator.readahead import ReadAhead


def test_a_random_client_miss_renders_its_aligned_block() -> None:
    plan = ReadAhead()
    assert plan.plan(70, 70, 1000, block=64) == range(65, 129)
    assert plan.plan(500, 500, 1000, block=64) == range(449, 513)


def test_sequential_misses_double_the_window_up_to_its_limit() -> None:
    plan = ReadAhead()
    assert plan.plan(70, 70, 10_000, block=64) == range(65, 129)
    assert plan.plan(129, 129, 10_000, block=64) == range(129, 257)
    assert plan.plan(257, 257, 10_000, block=64) == range(257, 513)
    assert plan.plan(513, 513, 10_000, block=64) == range(513, 769)
    assert plan.plan(769, 769, 10_000, block=64) == range(769, 1025)


def test_a_diff_miss_renders_just_its_page_unless_reads_are_sequential() -> None:
    plan = ReadAhead()
    assert plan.plan(10, 10, 1000) == range(10, 11)
    assert plan.plan(11, 11, 1000) == range(11, 13)
    assert plan.plan(400, 400, 1000) == range(400, 401)


def test_the_plan_covers_the_read_and_stops_at_the_last_page() -> None:
    assert ReadAhead().plan(990, 990, 1000, block=64) == range(961, 1001)
    assert ReadAhead().plan(70, 200, 1000, block=64) == range(65, 201)
    assert ReadAhead().plan(1, 1, 1, block=64) == range(1, 2)
