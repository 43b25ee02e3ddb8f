"""What `pgfs unmount` and `pgfs status` do, and how `pgfs mount --daemon` waits.

(The foreground mount itself is composed in `pgfs.cli.app`: it opens the
stores and serves them with `pgfs.fuse.mount.run_mount`.)

- `start_daemon(argv, ...)`: runs a foreground mount command as a detached
  child (its log in a file) and returns once the mount is ready, or fails
  with the child's last log lines.
- `unmount(mountpoint)`: `fusermount3 -u` (refused by the kernel while files
  are open in the mount); with `lazy=True` the daemon is asked to stop with
  SIGTERM (it finishes commits in flight and detaches the mount) and, if it
  is gone, `fusermount3 -uz`. Waits until the daemon has exited.
- `read_status(mountpoint)`: the JSON the mount serves as `.pgfs-status`
  (pid, databases, their mode, commits applied, last commit, last error).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgfs.fuse.mount import is_mounted
from pgfs.fuse.operations import STATUS_NAME
from pgfs.fuse.options import ControlError

__all__ = [
    "ControlError",
    "format_status",
    "pid_alive",
    "read_status",
    "start_daemon",
    "unmount",
]


def start_daemon(
    argv: Sequence[str],
    mountpoint: Path,
    log_file: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> int:
    """Run `argv` (a foreground mount command) detached; return its pid once mounted."""
    log_file = Path(log_file).absolute()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            raise ControlError(
                f"the mount process exited with status {code}:\n{_tail(log_file)}".rstrip()
            )
        if is_mounted(mountpoint):
            try:
                read_status(mountpoint)
                return child.pid
            except ControlError:
                pass
        time.sleep(0.1)
    child.terminate()
    raise ControlError(f"{mountpoint} was not mounted after {timeout:.0f} s; log: {log_file}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_status(mountpoint: Path | str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The mount's `.pgfs-status`; ControlError when not a pgfs mount or not answering.

    Read in a daemon thread: a mount whose process hangs must not hang the caller.
    """
    if not is_mounted(mountpoint):
        raise ControlError(f"{mountpoint} is not mounted")
    path = Path(mountpoint) / STATUS_NAME
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["data"] = path.read_bytes()
        except OSError as exc:
            result["error"] = exc

    reader = threading.Thread(target=work, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise ControlError(f"{mountpoint} does not answer (reading {STATUS_NAME} timed out)")
    if "error" in result:
        raise ControlError(f"cannot read {path}: {result['error'].strerror}")
    try:
        return json.loads(result["data"])
    except ValueError as exc:
        raise ControlError(f"{path} is not pgfs status JSON: {exc}") from None


def pid_alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its parent's wait() does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _fusermount(mountpoint: Path, lazy: bool) -> None:
    argv = ["fusermount3", "-u", *(["-z"] if lazy else []), str(mountpoint)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        argv[0] = "umount"
        argv = [a for a in argv if a != "-u"]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()
        if "busy" in message.lower():
            raise ControlError(
                f"{mountpoint} is busy (files are open in it): stop the application first, "
                "or use --lazy"
            )
        raise ControlError(f"unmounting {mountpoint} failed: {message}")


def unmount(mountpoint: Path | str, *, lazy: bool = False, timeout: float = 60.0) -> None:
    """Unmount a pgfs mount and wait for its process to finish (module docstring)."""
    mountpoint = Path(os.path.abspath(mountpoint))
    if not is_mounted(mountpoint):
        raise ControlError(f"{mountpoint} is not mounted")
    pid: int | None = None
    with contextlib.suppress(ControlError):
        pid = int(read_status(mountpoint).get("pid") or 0) or None
    if lazy and pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
    else:
        _fusermount(mountpoint, lazy)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_mounted(mountpoint) and (pid is None or not pid_alive(pid)):
            return
        time.sleep(0.05)
    raise ControlError(f"{mountpoint}: the pgfs process did not finish within {timeout:.0f} s")


def format_status(status: dict[str, Any]) -> str:
    """Human-readable `pgfs status`."""
    lines = [
        f"mounted on {status.get('mountpoint')} (pid {status.get('pid')})"
        + (" read-only" if status.get("read_only") else ""),
    ]
    if status.get("store"):
        lines.append(f"store: {status['store']}")
    for name, db in sorted((status.get("databases") or {}).items()):
        lines.append(
            f"{name}: {db.get('mode')}, {db.get('page_count')} pages of {db.get('page_size')} "
            f"bytes, {db.get('commits')} commits applied"
        )
        last = db.get("last_commit")
        if last:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
            lines.append(
                f"  last commit {when} via {last['source']}: {last['rows']}; "
                f"{last['pages']} pages, {last['ms']} ms"
            )
        if db.get("last_error"):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(db["last_error_at"]))
            lines.append(f"  last error {when}: {db['last_error']}")
    return "\n".join(lines)
