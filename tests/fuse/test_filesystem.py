"""The mount directory as a filesystem: names, refusals, side files, mmap, status."""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import socket
import sqlite3
import stat
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from .helpers import Client, Mount, pg_tables


def test_directory_and_status(mount: Mount) -> None:
    assert sorted(os.listdir(mount.path)) == [".pgfs-status", "jellyfin.db"]
    info = os.stat(mount.db)
    assert stat.S_ISREG(info.st_mode) and info.st_size == 0
    status = json.loads((mount.path / ".pgfs-status").read_text())
    assert status["pid"] == mount.proc.pid
    assert status["databases"]["jellyfin.db"]["mode"] == "idle"
    with pytest.raises(PermissionError):
        open(mount.path / ".pgfs-status", "w")  # noqa: SIM115


def test_unknown_names_are_refused(mount: Mount) -> None:
    for action in (
        lambda: open(mount.path / "notes.txt", "w"),  # noqa: SIM115
        lambda: os.mkdir(mount.path / "sub"),
        lambda: os.unlink(mount.db),
        lambda: os.rename(mount.db, mount.path / "other.db"),
        lambda: os.symlink("jellyfin.db", mount.path / "link.db"),
        lambda: open(mount.path / "jellyfin.db-mj1234", "w"),  # noqa: SIM115
    ):
        with pytest.raises(OSError) as caught:
            action()
        assert caught.value.errno == errno.EPERM
    assert not (mount.path / "notes.txt").exists()
    assert "refused create 'notes.txt'" in mount.log()


def test_side_files_directory_fsync_and_mmap(mount: Mount) -> None:
    journal = mount.path / "jellyfin.db-journal"
    fd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"not a journal")
    os.fsync(fd)
    os.close(fd)
    assert journal.read_bytes() == b"not a journal"
    directory = os.open(mount.path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(directory)  # SQLite fsyncs the directory after creating a journal
    os.close(directory)
    os.unlink(journal)
    assert not journal.exists()

    # -shm is shared memory between SQLite processes: it must map.
    shm = mount.path / "jellyfin.db-shm"
    fd = os.open(shm, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 32768)
        with mmap.mmap(fd, 32768, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mapped:
            mapped[100:105] = b"hello"
            mapped.flush()
            other = os.open(shm, os.O_RDONLY)
            with mmap.mmap(other, 32768, mmap.MAP_SHARED, mmap.PROT_READ) as second:
                assert second[100:105] == b"hello"
            os.close(other)
        assert os.pread(fd, 5, 100) == b"hello"
    finally:
        os.close(fd)
    os.unlink(shm)


def test_several_databases_in_one_mount(mount_factory: Callable[..., Mount], pg_dsn: str) -> None:
    mount = mount_factory(pg_dsn, names=["jellyfin.db", "library.db"])
    with Client(mount.path / "jellyfin.db") as one, Client(mount.path / "library.db") as two:
        one.execute("PRAGMA journal_mode=WAL")
        one.execute("CREATE TABLE a(x INTEGER PRIMARY KEY, y TEXT)")
        one.execute("INSERT INTO a(y) VALUES ('one')")
        two.execute("CREATE TABLE b(x INTEGER PRIMARY KEY, y TEXT)")
        two.execute("INSERT INTO b(y) VALUES ('two')")
    assert pg_tables(pg_dsn, "jellyfin") == {"a"}
    assert pg_tables(pg_dsn, "library") == {"b"}
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT y FROM library.b").fetchall() == [("two",)]
    status = mount.status()["databases"]
    assert status["jellyfin.db"]["commits"] >= 2 and status["library.db"]["commits"] >= 2


def test_read_only_mount(mount_factory: Callable[..., Mount], pg_dsn: str) -> None:
    writable = mount_factory(pg_dsn)
    with Client(writable.db) as client:
        client.execute("CREATE TABLE a(x INTEGER PRIMARY KEY, y TEXT)")
        client.execute("INSERT INTO a(y) VALUES ('kept')")
    writable.stop()
    mount = mount_factory(pg_dsn, extra=["--read-only"])
    with Client(mount.db) as client:
        assert client.execute("SELECT y FROM a") == [("kept",)]
        with pytest.raises(Exception, match=r"readonly|read-only|I/O"):
            client.execute("INSERT INTO a(y) VALUES ('refused')")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT y FROM jellyfin.a").fetchall() == [("kept",)]


def test_backing_dir_passes_other_names_through(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    backing = tmp_path / "backing"
    (backing / "collections").mkdir(parents=True)
    (backing / "old.txt").write_text("kept")
    (backing / "jellyfin.db").write_bytes(b"stale file hidden by the virtual database")
    mount = mount_factory(pg_dsn, extra=["--backing-dir", str(backing)])
    root = mount.path
    assert sorted(os.listdir(root)) == [
        ".pgfs-status",
        "collections",
        "jellyfin.db",
        "old.txt",
    ]
    assert (root / "old.txt").read_text() == "kept"
    with Client(mount.db) as client:
        client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        client.execute("INSERT INTO t(v) VALUES ('in postgres')")
    # Files, directories, links, renames, modes: all land in the backing directory.
    (root / "collections" / "a.json").write_text('{"a": 1}')
    os.rename(root / "collections" / "a.json", root / "collections" / "b.json")
    os.symlink("b.json", root / "collections" / "link")
    os.link(root / "old.txt", root / "hard.txt")
    os.chmod(root / "old.txt", 0o600)
    os.mkdir(root / "empty")
    os.rmdir(root / "empty")
    with open(root / "grow.bin", "wb") as out:
        out.write(b"x" * 10000)
        out.flush()
        os.fsync(out.fileno())
    os.truncate(root / "grow.bin", 100)
    assert (backing / "collections" / "b.json").read_text() == '{"a": 1}'
    assert os.readlink(root / "collections" / "link") == "b.json"
    assert (root / "collections" / "link").read_text() == '{"a": 1}'
    assert os.stat(backing / "hard.txt").st_nlink == 2
    assert os.stat(root / "hard.txt").st_ino == os.stat(root / "old.txt").st_ino
    assert stat.S_IMODE(os.stat(backing / "old.txt").st_mode) == 0o600
    assert os.path.getsize(backing / "grow.bin") == 100
    assert not (backing / "empty").exists()
    os.unlink(root / "hard.txt")
    assert not (backing / "hard.txt").exists()
    # The database names stay virtual: renaming onto them is refused.
    with pytest.raises(PermissionError):
        os.rename(root / "old.txt", root / "jellyfin.db-wal")
    # Jellyfin copies its database as a backup before migrations: a real SQLite file.
    shutil.copyfile(mount.db, root / "jellyfin.db.bak")
    backup = sqlite3.connect(backing / "jellyfin.db.bak")
    assert backup.execute("SELECT v FROM t").fetchall() == [("in postgres",)]
    assert backup.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    backup.close()
    assert (backing / "jellyfin.db").read_bytes().startswith(b"stale")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_metrics_and_health(mount_factory: Callable[..., Mount], pg_dsn: str) -> None:
    port = _free_port()
    mount = mount_factory(pg_dsn, extra=["--metrics-addr", f"127.0.0.1:{port}"])
    with Client(mount.db) as client:
        client.execute("PRAGMA journal_mode=WAL")
        client.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        client.execute("INSERT INTO t(v) VALUES ('a'), ('b')")
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
        assert answer.status == 200 and answer.read() == b"ok\n"
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'pgfs_commits_total{database="jellyfin.db",source="wal"}' in text
    assert 'pgfs_rows_total{database="jellyfin.db",op="inserted",table="t"} 2.0' in text
    assert "pgfs_fuse_reads_total" in text


def test_read_only_mount_refuses_passthrough_changes(
    mount_factory: Callable[..., Mount], pg_dsn: str, tmp_path: Path
) -> None:
    backing = tmp_path / "backing"
    (backing / "collections").mkdir(parents=True)
    (backing / "notes.txt").write_text("kept")
    mode_before = (backing / "notes.txt").stat().st_mode
    mount = mount_factory(pg_dsn, extra=["--backing-dir", str(backing), "--read-only"])
    root = mount.path
    assert (root / "notes.txt").read_text() == "kept"
    attempts = [
        lambda: (root / "new.txt").write_text("refused"),
        lambda: (root / "notes.txt").write_text("changed"),
        lambda: (root / "notes.txt").unlink(),
        lambda: (root / "notes.txt").rename(root / "moved.txt"),
        lambda: (root / "made").mkdir(),
        lambda: (root / "collections").rmdir(),
        lambda: os.truncate(root / "notes.txt", 0),
        lambda: os.chmod(root / "notes.txt", 0o600),
        lambda: os.symlink("notes.txt", root / "link"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
    assert sorted(p.name for p in backing.iterdir()) == ["collections", "notes.txt"]
    assert (backing / "notes.txt").read_text() == "kept"
    assert (backing / "notes.txt").stat().st_mode == mode_before
