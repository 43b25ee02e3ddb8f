"""The local page cache (`--cache-dir`): kept across a remount of the same store state,
dropped when the store moved on without it, and never served stale."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from .helpers import Client, Mount

KEPT = "pages kept from the last mount"
EMPTY = "starting empty"


def _fill(mount: Mount) -> None:
    with Client(mount.db) as client:
        client.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        client.execute("BEGIN")
        client.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 300,) for _ in range(2000)])
        client.execute("COMMIT")


def _values(mount: Mount) -> list[tuple]:
    with Client(mount.db) as client:
        assert client.one("PRAGMA integrity_check") == "ok"
        return client.execute("SELECT v, count(*) FROM t GROUP BY v ORDER BY v")


def test_the_cache_is_kept_across_a_remount_and_dropped_when_the_store_moved_on(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    mount = mount_factory(pg_dsn, extra=cache)
    _fill(mount)
    assert _values(mount) == [("x" * 300, 2000)]
    mount.restart()
    assert mount.log().count(KEPT) == 1
    rendered_before = mount.db_status()
    assert _values(mount) == [("x" * 300, 2000)]
    assert mount.db_status()["pages_rendered"] == rendered_before["pages_rendered"] == 0
    mount.stop()

    # Another mount (its own cache) changes the store: the first cache is now stale.
    other = mount_factory(pg_dsn, extra=["--cache-dir", str(tmp_path / "other")])
    with Client(other.db) as client:
        client.execute("UPDATE t SET v = 'changed' WHERE id <= 500")
    other.stop()

    mount.start()
    assert mount.log().count(EMPTY) == 2  # the first start, and this one
    assert _values(mount) == [("changed", 500), ("x" * 300, 1500)]
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM jellyfin.t WHERE v = 'changed'").fetchone()
    assert row == (500,)


def test_a_mount_that_did_not_stop_cleanly_leaves_no_trusted_cache(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    mount = mount_factory(pg_dsn, extra=["--cache-dir", str(tmp_path / "cache")])
    _fill(mount)
    assert mount.proc is not None
    mount.proc.kill()
    mount.proc.wait()
    mount.stop()  # detaches the dead mount
    mount.start()
    assert KEPT not in mount.log()
    assert _values(mount) == [("x" * 300, 2000)]


def _wait_until_warm(mount: Mount, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        local = mount.db_status()["local_cache"]
        if local is not None and local["complete"]:
            return local
        time.sleep(0.1)
    raise AssertionError(f"the local cache did not fill: {mount.db_status()['local_cache']}")


def test_warm_cache_makes_the_cache_file_a_full_copy_that_commits_keep_current(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    filler = mount_factory(pg_dsn, extra=["--cache-dir", str(tmp_path / "filler")])
    _fill(filler)
    filler.stop()

    cache = tmp_path / "cache"
    mount = mount_factory(pg_dsn, extra=["--cache-dir", str(cache), "--warm-cache"])
    local = _wait_until_warm(mount)
    assert local["pages"] == local["of"] == mount.db_status()["page_count"] > 128
    assert "local page cache complete" in mount.log()
    rendered = mount.db_status()["pages_rendered"]
    assert _values(mount) == [("x" * 300, 2000)]
    with Client(mount.db) as client:
        client.execute("UPDATE t SET v = 'changed' WHERE id % 3 = 0")
        client.execute("DELETE FROM t WHERE id > 1900")
    # Every read came from the local copy, the commit's pages included.
    assert _values(mount) == [("changed", 633), ("x" * 300, 1267)]
    assert mount.db_status()["pages_rendered"] == rendered
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT v, count(*) FROM jellyfin.t GROUP BY v ORDER BY v").fetchall()
    assert rows == [("changed", 633), ("x" * 300, 1267)]

    mount.restart()
    assert mount.log().count(KEPT) == 1
    assert "already holds all" in mount.log()
    assert _values(mount) == [("changed", 633), ("x" * 300, 1267)]
    assert mount.db_status()["pages_rendered"] == 0
