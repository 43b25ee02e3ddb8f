"""Fixtures for the FUSE tests: a real mount (a `python -m pgfs mount` process) over real
PostgreSQL, always unmounted at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import Mount


def _fuse_usable() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed"
    if os.geteuid() != 0 and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "no access to /dev/fuse"
    return None


@pytest.fixture(autouse=True)
def _needs_fuse() -> None:
    reason = _fuse_usable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def mount_factory(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """mount_factory(dsn, names=..., extra=...) -> a started Mount; all are stopped at the end."""
    mounts: list[Mount] = []
    counter = iter(range(1000))

    def make(dsn: str, *, names: list[str] | None = None, extra: list[str] | None = None) -> Mount:
        number = next(counter)
        point = tmp_path / f"mnt{number}"
        point.mkdir()
        mount = Mount(
            path=point,
            dsn=dsn,
            log_path=tmp_path / f"mount{number}.log",
            names=names or ["jellyfin.db"],
            extra=extra or [],
        )
        mounts.append(mount)
        mount.start()
        return mount

    yield make
    for mount in mounts:
        mount.stop()


@pytest.fixture
def mount(mount_factory: Callable[..., Mount], pg_dsn: str) -> Mount:
    return mount_factory(pg_dsn)
