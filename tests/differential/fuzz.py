"""Generated programs run side by side, failures shrunk, figures kept: what the CI slice
(test_differential.py) and `scripts/fuzz_mount.py` share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .generator import generated
from .mount import FreshDatabases
from .program import ClientKind, JournalMode, Program
from .runner import CheckPlan, DifferenceKind, DifferentialRun, ReplaySource, RunResult
from .shrink import shrink


@dataclass
class Tally:
    """Figures for one journal mode and client."""

    sequences: int = 0
    statements: int = 0
    transactions: int = 0
    verifies: int = 0
    differences: int = 0
    seconds: float = 0.0

    def add(self, result: RunResult, seconds: float) -> None:
        self.sequences += 1
        self.statements += result.statements
        self.transactions += result.transactions
        self.verifies += result.verifies
        self.differences += result.difference is not None
        self.seconds += seconds


@dataclass(frozen=True)
class Finding:
    """A difference, with the program that showed it and its shrunk form."""

    kind: DifferenceKind
    detail: str
    original: Program
    shrunk: Program
    mount_log: str

    def report(self) -> str:
        return (
            f"{self.kind.value} differs (journal_mode={self.shrunk.mode.value}, "
            f"client={self.shrunk.client.value}, seed={self.shrunk.seed}; "
            f"{len(self.original.steps)} steps shrunk to {len(self.shrunk.steps)}):\n"
            f"  {self.detail}\n\n"
            f"Replay with: .venv/bin/python scripts/fuzz_mount.py --replay FILE\n"
            f"---- FILE ----\n{self.shrunk.script()}--------------\n"
            f"mount log (tail):\n{self.mount_log[-2500:]}"
        )


@dataclass
class Fuzzer:
    databases: FreshDatabases
    workdir: Path
    plan: CheckPlan = field(default_factory=CheckPlan)
    shrink_seconds: float = 300.0

    def run_seed(self, seed: int, mode: JournalMode, client: ClientKind, units: int) -> RunResult:
        setup, source = generated(seed, mode, units)
        run = DifferentialRun(mode, client, setup, self.databases, self.workdir, self.plan, seed)
        return run.run(source)

    def replay(self, program: Program, plan: CheckPlan | None = None) -> RunResult:
        run = DifferentialRun(
            program.mode,
            program.client,
            program.setup,
            self.databases,
            self.workdir,
            plan or self.plan,
            program.seed,
        )
        return run.run(ReplaySource(program.steps))

    def investigate(self, failed: RunResult) -> Finding:
        """Shrink the program of a failed run, keeping the kind of difference."""
        assert failed.difference is not None
        kind = failed.difference.kind
        plan = replace(
            self.plan,
            verify_every=1 if kind is DifferenceKind.VERIFY else 0,
            remount=kind is DifferenceKind.REMOUNT,
        )

        signature = failed.difference.signature

        def reproduces(candidate: Program) -> bool:
            result = self.replay(candidate, plan)
            return result.difference is not None and result.difference.signature == signature

        deadline = time.monotonic() + self.shrink_seconds
        shrunk = shrink(failed.program, reproduces, deadline)
        final = self.replay(shrunk, plan)
        if final.difference is None:  # not reproducible: report the original
            final, shrunk = failed, failed.program
        assert final.difference is not None
        return Finding(
            kind=final.difference.kind,
            detail=final.difference.detail,
            original=failed.program,
            shrunk=shrunk,
            mount_log=final.mount_log,
        )
