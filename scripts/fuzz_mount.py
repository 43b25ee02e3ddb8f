"""Differential fuzzing of a pgfs mount against a local SQLite file.

Generated SQL programs (tests/differential: two interleaved connections; rowid,
WITHOUT ROWID and AUTOINCREMENT tables, indexes, views, triggers, small and
overflowing rows, REPLACE, ALTER TABLE, DROP, VACUUM, auto_vacuum, savepoints,
rollbacks) run on a local file and through a `python -m pgfs mount` over a
throwaway PostgreSQL, in every journal mode pgfs follows and with both SQLite
clients (Python's sqlite3 and apsw). After every transaction the statement
results, every table's content with storage classes and integrity_check must
agree; `pgfs verify` checks the store every --verify-every transactions and at
the end of each program. A difference is shrunk to a small SQL script, printed
and written to --out.

    .venv/bin/python scripts/fuzz_mount.py --minutes 30
    .venv/bin/python scripts/fuzz_mount.py --replay case.sql [--shrink]

Without --dsn it starts an embedded PostgreSQL cluster in a temporary folder
(the PostgreSQL server binaries must be installed; run as root or postgres).
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pgfs.store.cluster import EmbeddedCluster  # noqa: E402
from tests.differential.fuzz import Finding, Fuzzer, Tally  # noqa: E402
from tests.differential.mount import FreshDatabases, fuse_unavailable_reason  # noqa: E402
from tests.differential.program import ClientKind, JournalMode, Program  # noqa: E402
from tests.differential.runner import CheckPlan  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to generate")
    parser.add_argument("--modes", default=",".join(m.value for m in JournalMode))
    parser.add_argument("--clients", default=",".join(c.value for c in ClientKind))
    parser.add_argument("--seed", type=int, default=1000, help="the first program's seed")
    parser.add_argument("--units", type=int, default=40, help="transactions per program")
    parser.add_argument("--verify-every", type=int, default=10, help="transactions per verify")
    parser.add_argument("--shrink-seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=ROOT / ".pgfs" / "fuzz")
    parser.add_argument("--dsn", help="a PostgreSQL DSN with CREATE DATABASE rights")
    parser.add_argument("--replay", type=Path, help="run this program (a printed script)")
    parser.add_argument("--shrink", action="store_true", help="with --replay: shrink it")
    return parser.parse_args(argv)


@contextmanager
def databases(dsn: str | None) -> Iterator[FreshDatabases]:
    if dsn is not None:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        yield FreshDatabases(dsn, str(info.get("host", "")), str(info.get("user", "")))
        return
    with EmbeddedCluster.temporary() as cluster:
        yield FreshDatabases(
            cluster.admin_dsn(), str(cluster.socket_dir), cluster.user, cluster.port
        )


def replay(fuzzer: Fuzzer, path: Path, shrink: bool) -> int:
    program = Program.parse(path.read_text())
    result = fuzzer.replay(program)
    print(
        f"replayed {path}: journal_mode={program.mode.value} client={program.client.value}, "
        f"{result.statements} statements, {result.transactions} transactions"
    )
    if result.difference is None:
        print("no difference")
        return 0
    if shrink:
        print(fuzzer.investigate(result).report())
    else:
        print(result.difference.describe())
        print(result.mount_log[-2500:])
    return 1


def fuzz(fuzzer: Fuzzer, args: argparse.Namespace) -> int:
    combos = [
        (JournalMode(mode), ClientKind(client))
        for mode in args.modes.split(",")
        for client in args.clients.split(",")
    ]
    tallies = {combo: Tally() for combo in combos}
    findings: list[Finding] = []
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    for seed, (mode, client) in zip(itertools.count(args.seed), itertools.cycle(combos)):
        if time.monotonic() >= deadline:
            break
        began = time.monotonic()
        result = fuzzer.run_seed(seed, mode, client, args.units)
        tallies[(mode, client)].add(result, time.monotonic() - began)
        status = "ok" if result.difference is None else result.difference.kind.value
        print(
            f"seed {seed} {mode.value}/{client.value}: {result.statements} statements, "
            f"{result.transactions} transactions, {status}",
            flush=True,
        )
        if result.difference is not None:
            finding = fuzzer.investigate(result)
            findings.append(finding)
            target = args.out / f"finding-{seed}-{mode.value}-{client.value}.sql"
            target.write_text(finding.shrunk.script())
            target.with_suffix(".original.sql").write_text(finding.original.script())
            print(finding.report(), flush=True)
            print(f"written to {target}", flush=True)
    print_figures(tallies, time.monotonic() - started, findings)
    return 1 if findings else 0


def print_figures(
    tallies: dict[tuple[JournalMode, ClientKind], Tally], seconds: float, findings: list[Finding]
) -> None:
    total = Tally()
    print()
    print(
        f"{'mode':<9} {'client':<8} {'sequences':>9} {'statements':>10} {'transactions':>12} "
        f"{'verifies':>8} {'differences':>11} {'minutes':>7}"
    )
    for (mode, client), tally in tallies.items():
        print(
            f"{mode.value:<9} {client.value:<8} {tally.sequences:>9} {tally.statements:>10} "
            f"{tally.transactions:>12} {tally.verifies:>8} {tally.differences:>11} "
            f"{tally.seconds / 60:>7.1f}"
        )
        for name in ("sequences", "statements", "transactions", "verifies", "differences"):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
    print(
        f"{'all':<18} {total.sequences:>9} {total.statements:>10} {total.transactions:>12} "
        f"{total.verifies:>8} {total.differences:>11} {seconds / 60:>7.1f}"
    )
    for finding in findings:
        print(
            f"difference: {finding.kind.value}, {len(finding.shrunk.steps)} steps "
            f"({finding.shrunk.mode.value}/{finding.shrunk.client.value})"
        )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: mounts stopped, the embedded cluster stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    reason = fuse_unavailable_reason()
    if reason:
        print(f"fuzz_mount: cannot mount: {reason}", file=sys.stderr)
        return 2
    plan = CheckPlan(verify_every=args.verify_every)
    with databases(args.dsn) as dbs, tempfile.TemporaryDirectory(prefix="pgfs-fuzz-") as work:
        fuzzer = Fuzzer(dbs, Path(work), plan, args.shrink_seconds)
        if args.replay is not None:
            return replay(fuzzer, args.replay, args.shrink)
        return fuzz(fuzzer, args)


if __name__ == "__main__":
    sys.exit(main())
