#!/usr/bin/env python3
"""One-shot migration step: import an existing SQLite database into PostgreSQL, once.

The Helm chart runs this as an init container before the pgfs sidecar mounts
the data folder. It is idempotent and safe to re-run after a crash at any
point:

1. Create the backing folder (the data folder on the config volume) if it is
   missing, owned by --owner when given. Nothing else happens when no
   database file is there: a fresh install, or the import is already done.
2. Settle the file with SQLite itself: a hot rollback journal is rolled back
   and a WAL is checkpointed into the database file (lockingv3.html §4,
   wal.html "Checkpointing"), so the file alone holds every committed
   transaction.
3. Ask PostgreSQL whether the store is empty. Empty: record "importing" with
   the file's SHA-256 in the state file, run `pgfs import`. Not empty: if the
   state file says an import of this very file began while the store was
   empty, that import committed (an import is one PostgreSQL transaction) and
   only step 4 is left; with --replace the store is overwritten; otherwise
   stop with an error rather than guess which copy is the right one.
4. Record "imported" and rename the database and its -wal/-shm/-journal
   files to a backup name (`jellyfin.db.pre-pgfs`, then with a timestamp if
   that exists), so the mount serves the name from PostgreSQL and the
   original stays beside it.

The PostgreSQL connection comes from the environment exactly as for every
pgfs command (PGFS_DSN, PGFS_DSN_FILE, libpq variables such as PGPASSWORD);
the password never appears in arguments or output.

Exit status: 0 done (or nothing to do), 1 error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

PROG = "pgfs-import-existing"
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")


class ImportStepError(Exception):
    """A condition the operator must resolve; the message says how."""


@dataclass
class ImportState:
    """What the state file records between runs."""

    status: str  # "importing" or "imported"
    sha256: str
    source: str
    time: str
    backup: str | None = None


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", required=True, type=Path, help="backing folder holding the database"
    )
    parser.add_argument("--name", default="jellyfin.db", help="database file name")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="where progress is recorded (default: DATA_DIR/../.pgfs-import.json)",
    )
    parser.add_argument("--backup-suffix", default=".pre-pgfs")
    parser.add_argument(
        "--replace", action="store_true", help="overwrite a store that already holds a database"
    )
    parser.add_argument("--owner", default=None, help="UID:GID for a data folder created here")
    parser.add_argument("--meta-schema", default="pgfs")
    parser.add_argument("--data-schema", default="jellyfin")
    parser.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to keep retrying while PostgreSQL is unreachable",
    )
    parser.add_argument(
        "--create-only",
        action="store_true",
        help="only create the data folder; never import (warns if a database is there)",
    )
    parser.add_argument(
        "--pgfs", default=None, help="pgfs executable (default: `pgfs` on PATH, else this python)"
    )
    return parser.parse_args(argv)


def ensure_data_dir(path: Path, owner: str | None) -> None:
    if path.is_dir():
        return
    path.mkdir(parents=True)
    log(f"created {path}")
    if owner:
        uid, _, gid = owner.partition(":")
        os.chown(path, int(uid), int(gid or uid))


def settle_database(db: Path) -> None:
    """Let SQLite roll back a hot journal and checkpoint a WAL into the file."""
    conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, isolation_level=None)
    try:
        # Reading the schema takes a shared lock: SQLite plays back a hot
        # journal here (atomiccommit.html §4.2) and opens the WAL if any.
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise ImportStepError(
                    f"{db} is in use by another process (WAL checkpoint blocked): "
                    "stop Jellyfin before the import"
                )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ImportStepError(f"{db} fails PRAGMA quick_check: {check}")
    except sqlite3.DatabaseError as exc:
        raise ImportStepError(f"{db} cannot be opened by SQLite: {exc}") from exc
    finally:
        conn.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_state(path: Path) -> ImportState | None:
    try:
        data = json.loads(path.read_text())
        return ImportState(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ImportStepError(f"unreadable state file {path}: {exc}; remove it") from exc


def write_state(path: Path, state: ImportState) -> None:
    """Atomically replace the state file (write, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(asdict(state), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_is_empty(meta_schema: str, data_schema: str, wait: float) -> bool:
    """True when the PostgreSQL store holds no database yet.

    Retries while PostgreSQL is unreachable (e.g. a CloudNativePG cluster
    still starting) for up to `wait` seconds.
    """
    from pgfs.store import open_store
    from pgfs.store.dsn import resolve_dsn
    from pgfs.store.errors import StoreUnavailableError

    deadline = time.monotonic() + wait
    while True:
        try:
            store = open_store(resolve_dsn(None), meta_schema=meta_schema, data_schema=data_schema)
            break
        except StoreUnavailableError as exc:
            if time.monotonic() >= deadline:
                raise ImportStepError(f"PostgreSQL unreachable: {exc}") from exc
            log(f"PostgreSQL unreachable, retrying in 5 s: {exc}")
            time.sleep(5)
    try:
        store.initialise()
        return store.is_empty()
    finally:
        store.close()


def pgfs_command(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    found = shutil.which("pgfs")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from pgfs.cli import main; sys.exit(main())"]


def run_import(args: argparse.Namespace, db: Path, replace: bool) -> None:
    argv = [
        *pgfs_command(args.pgfs),
        "import",
        str(db),
        "--no-progress",
        "--meta-schema",
        args.meta_schema,
        "--data-schema",
        args.data_schema,
    ]
    if replace:
        argv.append("--replace")
    log(f"importing {db} into PostgreSQL" + (" (replacing the store)" if replace else ""))
    started = time.monotonic()
    result = subprocess.run(argv, check=False)
    if result.returncode != 0:
        raise ImportStepError(f"pgfs import failed (exit {result.returncode}); see above")
    log(f"imported {db} in {time.monotonic() - started:.1f} s")


def backup_name(db: Path, suffix: str) -> Path:
    candidate = db.with_name(db.name + suffix)
    if not any(candidate.with_name(candidate.name + s).exists() for s in ("", *COMPANION_SUFFIXES)):
        return candidate
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return db.with_name(f"{db.name}{suffix}-{stamp}")


def move_aside(db: Path, suffix: str) -> Path:
    """Rename the database and its companion files to the backup name."""
    backup = backup_name(db, suffix)
    for companion in COMPANION_SUFFIXES:
        source = db.with_name(db.name + companion)
        if source.exists():
            os.replace(source, backup.with_name(backup.name + companion))
    os.replace(db, backup)
    fsync_dir(db.parent)
    return backup


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir
    state_file: Path = args.state_file or data_dir.parent / ".pgfs-import.json"
    ensure_data_dir(data_dir, args.owner)
    db = data_dir / args.name
    if not db.exists():
        log(f"no {db}: nothing to import")
        return
    if args.create_only:
        log(f"warning: {db} is not imported (import disabled); the mount hides it")
        return
    settle_database(db)
    digest = file_sha256(db)
    state = read_state(state_file)
    began_here = state is not None and state.sha256 == digest
    if store_is_empty(args.meta_schema, args.data_schema, args.wait):
        write_state(state_file, ImportState("importing", digest, str(db), now()))
        run_import(args, db, replace=False)
    elif began_here:
        log(f"{db} was imported by an earlier run (SHA-256 {digest[:12]}...)")
    elif args.replace:
        write_state(state_file, ImportState("importing", digest, str(db), now()))
        run_import(args, db, replace=True)
    else:
        raise ImportStepError(
            f"PostgreSQL already holds a database and {db} exists too. Keep PostgreSQL's: "
            f"rename or remove {db}. Keep the file's: re-run with --replace "
            "(chart value importExisting.replace=true)."
        )
    backup = move_aside(db, args.backup_suffix)
    write_state(state_file, ImportState("imported", digest, str(db), now(), str(backup)))
    log(f"kept the original as {backup}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ImportStepError as exc:
        log(f"error: {exc}")
        return 1
    except Exception as exc:  # any other failure: one line, never a traceback with secrets
        with contextlib.suppress(Exception):
            log(f"error: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
