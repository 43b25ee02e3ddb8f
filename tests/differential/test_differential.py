"""Every SQL statement behaves through a pgfs mount exactly as on a local file.

A fixed slice of the differential fuzzer (scripts/fuzz_mount.py runs it for
longer): generated programs on two interleaved connections, in every journal mode
pgfs follows, through Python's sqlite3 (the system SQLite) and apsw (a current
SQLite), compared after every transaction with the same program on a local file
(runner.py says what is compared). A difference fails with the program shrunk to
a SQL script that `scripts/fuzz_mount.py --replay FILE` runs again.

cases/*.sql are differences found before, each replayed in every mode and client.
open/*.sql are differences not fixed yet, replayed as found: expected to fail, and to
fail the suite once they pass, so that they move to cases/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .fuzz import Fuzzer
from .program import ClientKind, JournalMode, Program

SEEDS = [1, 2]
UNITS = 40  # transactions per generated program
CASES = sorted((Path(__file__).parent / "cases").glob("*.sql"))
OPEN = sorted((Path(__file__).parent / "open").glob("*.sql"))


@pytest.mark.parametrize("client", list(ClientKind), ids=lambda c: c.value)
@pytest.mark.parametrize("mode", list(JournalMode), ids=lambda m: m.value)
@pytest.mark.parametrize("seed", SEEDS)
def test_generated_program_behaves_as_on_a_local_file(
    fuzzer: Fuzzer, seed: int, mode: JournalMode, client: ClientKind
) -> None:
    result = fuzzer.run_seed(seed, mode, client, UNITS)
    if result.difference is not None:
        pytest.fail(fuzzer.investigate(result).report(), pytrace=False)
    assert result.transactions >= UNITS // 2, "the program committed too little to say much"
    assert result.verifies >= 1


@pytest.mark.parametrize("client", list(ClientKind), ids=lambda c: c.value)
@pytest.mark.parametrize("mode", list(JournalMode), ids=lambda m: m.value)
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case_found_before(
    fuzzer: Fuzzer, case: Path, mode: JournalMode, client: ClientKind
) -> None:
    program = Program.parse(case.read_text()).in_mode(mode, client)
    result = fuzzer.replay(program)
    if result.difference is not None:
        pytest.fail(
            f"{case.name} in {mode.value}/{client.value}: {result.difference.describe()}\n"
            f"{result.mount_log[-2500:]}",
            pytrace=False,
        )


@pytest.mark.xfail(strict=True, reason="an open defect: see the script's note")
@pytest.mark.parametrize("case", OPEN, ids=lambda p: p.stem)
def test_open_defect_still_differs(fuzzer: Fuzzer, case: Path) -> None:
    program = Program.parse(case.read_text())
    result = fuzzer.replay(program)
    assert result.difference is None, result.difference.describe()
