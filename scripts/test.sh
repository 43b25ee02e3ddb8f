#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the checks: ruff, then the whole test
# suite against a real PostgreSQL, real FUSE mounts and real SQLite clients.
# Extra arguments go to pytest (e.g. -m "not slow" for a quick run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check pgfs tests scripts
.venv/bin/ruff format --check pgfs tests scripts
exec .venv/bin/pytest "$@"
