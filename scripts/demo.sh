#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the demo: mounts jellyfin.db backed by an
# embedded PostgreSQL (or $PGFS_DSN when set), runs a small Jellyfin-style
# workload through SQLite, shows the rows in PostgreSQL, and unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
