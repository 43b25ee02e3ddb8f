"""`--metrics-addr HOST:PORT`: Prometheus `/metrics` and a `/healthz` for probes.

Served by the mount's own trio loop, so an answer also means the loop that
serves FUSE requests is running. `/healthz` is 200 when every database's
PostgreSQL answers within 3 seconds, else 503 with the reason (a PostgreSQL
outage makes the mount useless for writes, not dead: the chart uses it for
readiness, and `pgfs status` for liveness).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from pgfs.fuse.mount import MountSession

log = logging.getLogger("pgfs.fuse")
HEALTH_TIMEOUT = 3.0


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics address {text!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(session: MountSession) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{{{labels}}} {value}" if labels else f"{name} {value}")

    files = session.files
    db = {name: f'database="{_label(name)}"' for name in files}
    metric("pgfs_up", "gauge", "1 while the mount is served.", [("", 1)])
    metric(
        "pgfs_commits_total",
        "counter",
        "Commits applied to PostgreSQL, by source (journal, wal).",
        [
            (f'{db[n]},source="{s}"', c)
            for n, f in files.items()
            for s, c in sorted(f.stats.commits_by_source.items())
        ],
    )
    simple: list[tuple[str, str, str, Callable[[Any], float]]] = [
        (
            "pgfs_commit_failures_total",
            "counter",
            "Commits PostgreSQL failed (EIO).",
            lambda f: f.stats.failed_commits,
        ),
        (
            "pgfs_commits_skipped_total",
            "counter",
            "Journal ends or WAL frames that changed nothing (rollbacks, repeated commit frames).",
            lambda f: f.stats.commits_skipped,
        ),
        (
            "pgfs_refused_writes_total",
            "counter",
            "Database writes refused: no journal or WAL.",
            lambda f: f.stats.refused_writes,
        ),
        (
            "pgfs_pages_committed_total",
            "counter",
            "Pages sent to PostgreSQL in commits.",
            lambda f: f.stats.pages_committed,
        ),
        (
            "pgfs_commit_seconds_total",
            "counter",
            "Time spent committing to PostgreSQL.",
            lambda f: round(f.stats.commit_seconds, 6),
        ),
        (
            "pgfs_commits_in_flight",
            "gauge",
            "Commits waiting for PostgreSQL now.",
            lambda f: f.commits_in_flight,
        ),
        (
            "pgfs_pages_rendered_total",
            "counter",
            "Pages rendered from PostgreSQL (page cache misses).",
            lambda f: f.database.renderer.pages_rendered,
        ),
        (
            "pgfs_page_cache_hits_total",
            "counter",
            "Page reads served from pgfs' own page cache.",
            lambda f: f.database.cache.hits + f.database.cache.disk_hits,
        ),
        (
            "pgfs_database_pages",
            "gauge",
            "Pages in the database PostgreSQL holds.",
            lambda f: f.database.page_count,
        ),
        (
            "pgfs_file_size_bytes",
            "gauge",
            "Size of the database file as SQLite set it.",
            lambda f: f.size,
        ),
        (
            "pgfs_wal_bytes",
            "gauge",
            "Bytes of the -wal file held in memory.",
            lambda f: len(f.wal.data) if f.wal is not None else 0,
        ),
        (
            "pgfs_pending_pages",
            "gauge",
            "Database pages written in the open rollback transaction.",
            lambda f: len(f.overlay or ()),
        ),
        (
            "pgfs_preimages",
            "gauge",
            "Pre-images of pages not yet checkpointed.",
            lambda f: len(f.preimages or ()),
        ),
    ]
    for name, kind, help_text, get in simple:
        metric(name, kind, help_text, [(db[n], get(f)) for n, f in files.items()])
    histogram_samples: list[tuple[str, float]] = []
    for n, f in files.items():
        latency = f.stats.commit_latency
        for bound, count in zip((*latency.bounds, "+Inf"), latency.counts, strict=True):
            histogram_samples.append((f'{db[n]},le="{bound}"', count))
    lines.append("# HELP pgfs_commit_latency_seconds Time from commit point to PostgreSQL commit.")
    lines.append("# TYPE pgfs_commit_latency_seconds histogram")
    for labels, value in histogram_samples:
        lines.append(f"pgfs_commit_latency_seconds_bucket{{{labels}}} {value}")
    for n, f in files.items():
        latency = f.stats.commit_latency
        lines.append(f"pgfs_commit_latency_seconds_sum{{{db[n]}}} {round(latency.total, 6)}")
        lines.append(f"pgfs_commit_latency_seconds_count{{{db[n]}}} {latency.count}")
    metric(
        "pgfs_rows_total",
        "counter",
        "Rows inserted, updated and deleted in PostgreSQL, by table.",
        [
            (f'{db[n]},table="{_label(table)}",op="{op}"', count)
            for n, f in files.items()
            for (table, op), count in sorted(f.stats.rows.items())
        ],
    )
    ops = session.operations
    metric("pgfs_fuse_reads_total", "counter", "Reads of virtual files.", [("", ops.reads)])
    metric("pgfs_fuse_read_bytes_total", "counter", "Bytes read.", [("", ops.bytes_read)])
    metric("pgfs_fuse_writes_total", "counter", "Writes to virtual files.", [("", ops.writes)])
    metric("pgfs_fuse_written_bytes_total", "counter", "Bytes written.", [("", ops.bytes_written)])
    return "\n".join(lines) + "\n"


async def check_health(session: MountSession) -> str | None:
    """None when every store answers; else why not."""
    for name, dbfile in session.files.items():
        store = getattr(dbfile.database, "store", None)
        if store is None:
            continue
        with trio.move_on_after(HEALTH_TIMEOUT) as scope:
            try:
                await trio.to_thread.run_sync(store.is_empty, abandon_on_cancel=True)
            except Exception as exc:
                return f"{name}: PostgreSQL: {exc}"
        if scope.cancelled_caught:
            return f"{name}: PostgreSQL did not answer within {HEALTH_TIMEOUT:.0f} s"
    return None


async def _respond(stream: trio.SocketStream, session: MountSession) -> None:
    request = b""
    with trio.move_on_after(5):
        while b"\r\n\r\n" not in request and len(request) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            request += chunk
    parts = request.split(b"\r\n", 1)[0].split()
    method, path = (parts[0], parts[1].split(b"?")[0]) if len(parts) >= 2 else (b"", b"")
    if method not in (b"GET", b"HEAD"):
        status, body, kind = "405 Method Not Allowed", "only GET\n", "text/plain"
    elif path == b"/metrics":
        status, body = "200 OK", render_metrics(session)
        kind = "text/plain; version=0.0.4; charset=utf-8"
    elif path in (b"/healthz", b"/health"):
        problem = await check_health(session)
        status = "200 OK" if problem is None else "503 Service Unavailable"
        body, kind = (problem or "ok") + "\n", "text/plain; charset=utf-8"
    else:
        status, body, kind = "404 Not Found", "not found\n", "text/plain"
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head if method == b"HEAD" else head + payload)


async def serve_metrics(
    session: MountSession, address: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    host, port = parse_address(address)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _respond(stream, session)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics on http://%s:%d/metrics and /healthz", host, port)
    task_status.started()
    await trio.serve_listeners(handler, listeners)
