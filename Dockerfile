# syntax=docker/dockerfile:1
#
# pgfs: the `pgfs` command line (mount, unmount, status, import, export,
# verify, inspect) on Python 3.11 with FUSE 3. Built from this repository alone:
#
#   docker build -t pgfs:0.1.0 .
#   docker run --rm pgfs:0.1.0 --help
#   docker run --rm -e PGFS_DSN_FILE=/run/secrets/pgfs-dsn -v /srv/jellyfin:/data \
#       pgfs:0.1.0 import /data/data/jellyfin.db
#
# The image runs as the unprivileged user `pgfs` (uid/gid 10001). Commands
# that only talk to PostgreSQL (import, export, verify, inspect) need nothing
# more. A mount needs /dev/fuse and the right to mount; the image makes both
# possible without root — fusermount3 is setuid root and /etc/fuse.conf has
# user_allow_other, so `--allow-other` works for a non-root pgfs:
#
#   docker run --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor=unconfined \
#       -e PGFS_DSN_FILE=... -v /srv/jellyfin/data:/backing pgfs:0.1.0 \
#       mount /mnt/pgfs --backing-dir /backing --allow-other --foreground
#
# On Kubernetes the pgfs sidecar runs privileged and as root anyway (see
# charts/jellyfin-pgfs/README.md): only a privileged container may use
# Bidirectional mount propagation, which is how the mount reaches Jellyfin's
# container, and root lets the passthrough folder keep every file's owner.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# Build stage: a virtualenv in /opt/pgfs with pgfs and its dependencies.
# pyfuse3 publishes no wheels, so it is compiled here against libfuse3.
FROM ${PYTHON_IMAGE} AS build
# Debian package versions are not pinned: the base image pins the release
# (bookworm) and its security updates should be picked up on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libfuse3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/pgfs
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgfs ./pgfs
RUN /opt/pgfs/bin/pip install /src
# The one-shot migration step of the Helm chart (imports an existing
# jellyfin.db once); it runs on the virtualenv's python.
COPY --chmod=0755 scripts/pgfs-import-existing.py /opt/pgfs/bin/pgfs-import-existing

# ---------------------------------------------------------------------------
# Runtime stage: the same Python base, FUSE 3 at run time, no compiler.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="pgfs" \
      org.opencontainers.image.description="FUSE filesystem that keeps an unmodified SQLite application's database (Jellyfin's jellyfin.db) in PostgreSQL" \
      org.opencontainers.image.licenses="MIT"
# fuse3: fusermount3 (setuid) and /etc/fuse.conf; libfuse3-3: what pyfuse3
# links to; tini: PID 1 that forwards SIGTERM to pgfs and reaps orphans;
# ca-certificates: sslmode=verify-full / sslrootcert=system for managed
# PostgreSQL services.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates fuse3 libfuse3-3 tini \
    && rm -rf /var/lib/apt/lists/* \
    && printf '\n# pgfs: let a non-root pgfs mount with --allow-other\nuser_allow_other\n' \
        >> /etc/fuse.conf \
    && groupadd --system --gid 10001 pgfs \
    && useradd --system --uid 10001 --gid pgfs --home-dir /var/lib/pgfs --create-home \
        --shell /usr/sbin/nologin pgfs \
    && install -d -o pgfs -g pgfs /mnt/pgfs
COPY --from=build /opt/pgfs /opt/pgfs
ENV PATH=/opt/pgfs/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PGFS_MOUNTPOINT=/mnt/pgfs
USER 10001:10001
WORKDIR /var/lib/pgfs
# Healthy while the mount at $PGFS_MOUNTPOINT answers (`pgfs status` exits 0;
# any failure is reported as 1, since Docker reserves exit code 2).
# Set PGFS_MOUNTPOINT when mounting elsewhere. One-shot commands (import,
# export, ...) end long before the first check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "pgfs status \"$PGFS_MOUNTPOINT\" || exit 1"]
ENTRYPOINT ["/usr/bin/tini", "--", "pgfs"]
CMD ["--help"]
