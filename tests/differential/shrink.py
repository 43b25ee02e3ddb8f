"""Make a failing program smaller while it still fails the same way."""

from __future__ import annotations

import time
from collections.abc import Callable

from .program import Conn, Program, Step

Reproduces = Callable[[Program], bool]


def shrink(program: Program, reproduces: Reproduces, deadline: float) -> Program:
    """Remove steps in chunks, halving the chunk until single steps (delta debugging),
    then try running every step on one connection. `reproduces` runs a candidate and
    says whether it still shows the difference; stops at `deadline` (monotonic)."""
    steps = list(program.steps)
    chunk = max(1, len(steps) // 2)
    while time.monotonic() < deadline:
        steps, removed_any = _remove_chunks(program, steps, chunk, reproduces, deadline)
        if not removed_any:
            if chunk == 1:
                break
            chunk //= 2
        chunk = max(1, min(chunk, len(steps) // 2))
    single = [Step(Conn.A, step.sql) for step in steps]
    if single != steps and time.monotonic() < deadline:
        candidate_program = program.with_steps(single)
        if reproduces(candidate_program):
            return candidate_program
    return program.with_steps(steps)


def _remove_chunks(
    program: Program, steps: list[Step], chunk: int, reproduces: Reproduces, deadline: float
) -> tuple[list[Step], bool]:
    """One pass over `steps` from the end, dropping each run of `chunk` steps whose
    removal keeps the failure (later steps depend on earlier ones, rarely the reverse)."""
    removed_any = False
    start = len(steps) - chunk
    while start >= 0 and steps and time.monotonic() < deadline:
        candidate = steps[:start] + steps[start + chunk :]
        if reproduces(program.with_steps(candidate)):
            steps = candidate
            removed_any = True
        start = min(start, len(steps)) - chunk
    return steps, removed_any
