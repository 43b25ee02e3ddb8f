"""The mount tunes glibc malloc before serving: two arenas and a fixed mapping
threshold (pgfs.fuse.mount.tune_malloc says why); off glibc nothing happens."""

from __future__ import annotations

import pytest

from pgfs.fuse import mount


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


def test_the_mount_keeps_two_arenas_and_a_fixed_mapping_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(mount.ctypes, "CDLL", lambda name: libc)
    mount.tune_malloc()
    assert libc.calls == [
        (mount.M_ARENA_MAX, 2),
        (mount.M_MMAP_THRESHOLD, mount.MMAP_THRESHOLD),
    ]


def test_without_glibc_malloc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError(name)

    monkeypatch.setattr(mount.ctypes, "CDLL", missing)
    mount.tune_malloc()  # no error
