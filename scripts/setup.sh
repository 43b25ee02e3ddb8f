#!/usr/bin/env bash
# Installs what pgfs needs on Debian 12: FUSE 3 (headers to build pyfuse3), the
# PostgreSQL and MariaDB server binaries if absent, the MariaDB client library
# (to build the `mariadb` driver), and a virtualenv in .venv with pgfs and its
# test extras. Idempotent: a second run only checks. Without root it
# installs no Debian package: it names the missing ones and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
pkg-config --exists fuse3 2>/dev/null || need_apt+=(libfuse3-dev pkg-config)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || need_apt+=(postgresql)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v mariadb_config >/dev/null 2>&1 || need_apt+=(libmariadb-dev)
if [ ! -x .venv/bin/python ]; then
    "$python" -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
    "$python" -c 'import os, sysconfig; os.stat(sysconfig.get_paths()["include"] + "/Python.h")' \
        >/dev/null 2>&1 || need_apt+=(python3-dev)
    command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${need_apt[*]}" >&2
        echo "setup: install them as root (apt-get install ${need_apt[*]}), then run this again" >&2
        exit 1
    fi
    echo "setup: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if ! .venv/bin/python -c 'import pgfs, pyfuse3, psycopg, mariadb, pytest, apsw' >/dev/null 2>&1 \
    || [ pyproject.toml -nt .venv/.pgfs-installed ]; then
    echo "setup: installing Python packages into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.pgfs-installed
fi
