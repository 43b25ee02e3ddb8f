"""`wait_until_mounted`, the one wait the scripts use for a mount to come up: it returns
once the mount is there, and says whether the process died or the time ran out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgfs.fuse.mount import is_mounted, wait_until_mounted


def test_returns_once_pgfs_has_mounted(pg_dsn: str, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    argv = [sys.executable, "-m", "pgfs", "mount", str(mountpoint), "--foreground"]
    argv += ["--dsn", pg_dsn, "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        wait_until_mounted(mountpoint, proc, timeout=60)
        assert is_mounted(mountpoint) and (mountpoint / "jellyfin.db").exists()
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
        proc.wait(60)


def test_says_when_the_process_exits_first(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ChildProcessError, match="status 3"):
        wait_until_mounted(tmp_path, proc, timeout=60)


def test_says_when_the_time_runs_out(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(TimeoutError, match=r"not mounted within 0\.3 s"):
            wait_until_mounted(tmp_path, proc, timeout=0.3)
    finally:
        proc.kill()
        proc.wait()
