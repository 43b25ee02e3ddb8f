"""BlockMap layers and read plans (pure)."""

from __future__ import annotations

from pgfs.tracker.blocks import BlockMap, assemble, base_ranges, plan_read

BASE = bytes(range(256)) * 64  # 16 KiB the "base" holds


def base(start: int, stop: int) -> bytes:
    return BASE[start:stop]


def read(offset: int, length: int, layers: list[BlockMap]) -> bytes:
    return assemble(plan_read(offset, length, layers), base)


def test_layers_win_over_the_base_and_over_each_other() -> None:
    top, below = BlockMap(4096), BlockMap(1024)
    top.put(1, b"T" * 4096)
    below.put(0, b"B" * 1024)
    below.put(4, b"b" * 1024)  # under top's block 1: hidden
    expected = bytearray(BASE)
    expected[0:1024] = b"B" * 1024
    expected[4096:8192] = b"T" * 4096
    assert read(0, len(BASE), [top, below]) == bytes(expected)
    assert read(1000, 5000, [top, below]) == bytes(expected[1000:6000])
    segments = plan_read(0, len(BASE), [top, below])
    assert list(base_ranges(segments)) == [(1024, 4096), (8192, 16384)]


def test_partial_writes_need_the_base_of_absent_blocks() -> None:
    layer = BlockMap(1024)
    assert layer.missing_for_write(1000, 100) == [0, 1]
    assert layer.missing_for_write(1024, 2048) == []
    layer.write(1000, b"x" * 100, {0: BASE[0:1024], 1: BASE[1024:2048]})
    expected = bytearray(BASE[:2048])
    expected[1000:1100] = b"x" * 100
    assert read(0, 2048, [layer]) == bytes(expected)
    assert layer.missing_for_write(1000, 100) == []


def test_truncate_drops_and_zeroes() -> None:
    layer = BlockMap(1024)
    layer.write(0, b"a" * 3072, {})
    layer.truncate(1500)
    assert layer.indexes() == [0, 1]
    assert (layer.get(1) or b"")[476:] == bytes(548)
