"""`--metrics-addr HOST:PORT`: Prometheus `/metrics` and a `/healthz` for probes.

The metrics live in a `prometheus_client` registry of the mount's own: a
latency histogram observed at every commit, and a collector that reads the
counters of every database file (commits, failures, rows, pages, the lease,
the page cache) when Prometheus scrapes. The exposition is
`prometheus_client`'s. It is served by the mount's own trio loop, so an
answer also means the loop that serves FUSE requests is running.
`/healthz` is 200 when every database's server answers within 3 seconds,
else 503 with the reason (an outage makes the mount useless for writes, not
dead: the chart uses it for readiness, and `pgfs status` for liveness).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import prometheus_client
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgfs.tracker import DatabaseFile

log = logging.getLogger("pgfs.fuse")
prometheus_client.disable_created_metrics()  # no *_created series: nothing here needs them
HEALTH_TIMEOUT = 3.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class FuseCounters(Protocol):
    """The request counters of the FUSE layer."""

    reads: int
    writes: int
    bytes_read: int
    bytes_written: int


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics address {text!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


_PER_FILE: list[tuple[str, str, str, Callable[[DatabaseFile], float]]] = [
    ("counter", "pgfs_commit_failures", "Commits the server failed (EIO).",
     lambda f: f.stats.failed_commits),
    ("counter", "pgfs_commits_skipped",
     "Journal ends or WAL frames that changed nothing (rollbacks, repeated commit frames).",
     lambda f: f.stats.commits_skipped),
    ("counter", "pgfs_refused_writes", "Database writes refused: no journal or WAL.",
     lambda f: f.stats.refused_writes),
    ("counter", "pgfs_pages_committed", "Pages sent to the server in commits.",
     lambda f: f.stats.pages_committed),
    ("counter", "pgfs_commit_seconds", "Time spent committing to the server.",
     lambda f: f.stats.commit_seconds),
    ("gauge", "pgfs_commits_in_flight", "Commits waiting for the server now.",
     lambda f: f.commits_in_flight),
    ("gauge", "pgfs_database_pages", "Pages in the database the server holds.",
     lambda f: f.database.page_count),
    ("gauge", "pgfs_file_size_bytes", "Size of the database file as SQLite set it.",
     lambda f: f.size),
    ("gauge", "pgfs_wal_bytes", "Bytes of the -wal file held (in memory or spilled).",
     lambda f: len(f.wal.data) if f.wal is not None else 0),
    ("gauge", "pgfs_pending_pages", "Database pages written in the open rollback transaction.",
     lambda f: len(f.overlay or ())),
    ("gauge", "pgfs_preimages", "Pre-images of pages not yet checkpointed.",
     lambda f: len(f.preimages or ())),
    ("gauge", "pgfs_lease_held", "1 while this mount holds the store's writer lease.",
     lambda f: int(f.database.lease_status().held)),
    ("gauge", "pgfs_lease_epoch", "The fencing epoch of the writer lease.",
     lambda f: f.database.lease_status().epoch or 0),
    ("counter", "pgfs_lease_reacquired", "Times the lease was taken again (connection lost).",
     lambda f: f.database.lease_status().reacquired),
    ("counter", "pgfs_pages_rendered", "Pages rendered from the server (page cache misses).",
     lambda f: f.database.pages_rendered),
    ("counter", "pgfs_page_cache_hits", "Page reads served from pgfs' own page cache.",
     lambda f: f.database.cache_hits),
    ("gauge", "pgfs_local_cache_pages",
     "Pages the local page cache file holds (of pgfs_database_pages; --warm-cache fills it).",
     lambda f: w.cached if (w := f.database.warmth()) else 0),
]  # fmt: skip


class _MountCollector:
    """Reads the counters of every database file when Prometheus scrapes."""

    def __init__(self, files: Mapping[str, DatabaseFile], fuse: FuseCounters) -> None:
        self.files = files
        self.fuse = fuse

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pgfs_up", "1 while the mount is served.")
        up.add_metric([], 1)
        yield up
        commits = CounterMetricFamily(
            "pgfs_commits",
            "Commits applied to the server, by source.",
            labels=["database", "source"],
        )
        for name, f in self.files.items():
            for source, count in sorted(f.stats.commits_by_source.items()):
                commits.add_metric([name, source], count)
        yield commits
        for kind, metric, help_text, value in _PER_FILE:
            family: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                metric, help_text, labels=["database"]
            )
            for name, f in self.files.items():
                family.add_metric([name], float(value(f)))
            yield family
        rows = CounterMetricFamily(
            "pgfs_rows",
            "Rows inserted, updated and deleted in the server, by table.",
            labels=["database", "table", "op"],
        )
        for name, f in self.files.items():
            for (table, op), count in sorted(f.stats.rows.items()):
                rows.add_metric([name, table, op], count)
        yield rows
        for metric, help_text, value in (
            ("pgfs_fuse_reads", "Reads of virtual files.", self.fuse.reads),
            ("pgfs_fuse_read_bytes", "Bytes read.", self.fuse.bytes_read),
            ("pgfs_fuse_writes", "Writes to virtual files.", self.fuse.writes),
            ("pgfs_fuse_written_bytes", "Bytes written.", self.fuse.bytes_written),
        ):
            counter = CounterMetricFamily(metric, help_text)
            counter.add_metric([], value)
            yield counter


class MountMetrics:
    """The registry of one mount: its collector and its commit-latency histogram."""

    def __init__(self, files: Mapping[str, DatabaseFile], fuse: FuseCounters) -> None:
        self.files = files
        self.registry = CollectorRegistry()
        self.registry.register(_MountCollector(files, fuse))
        self.latency = Histogram(
            "pgfs_commit_latency_seconds",
            "Time from commit point to the server's commit.",
            ["database"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        for name, f in files.items():
            f.on_commit = self._observer(name)

    def _observer(self, name: str) -> Callable[[str, float], None]:
        child = self.latency.labels(database=name)
        return lambda _source, seconds: child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def check_health(files: Mapping[str, DatabaseFile]) -> str | None:
    """None when every store answers; else why not."""
    for name, dbfile in files.items():
        with trio.move_on_after(HEALTH_TIMEOUT) as scope:
            try:
                health = await trio.to_thread.run_sync(
                    dbfile.database.health, abandon_on_cancel=True
                )
            except Exception as exc:
                return f"{name}: {exc}"
            if not health.ok:
                return f"{name}: {health.detail}"
        if scope.cancelled_caught:
            return f"{name}: the server did not answer within {HEALTH_TIMEOUT:.0f} s"
    return None


async def _respond(stream: trio.SocketStream, metrics: MountMetrics) -> None:
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
        status, payload, kind = "405 Method Not Allowed", b"only GET\n", "text/plain"
    elif path == b"/metrics":
        status, payload, kind = "200 OK", metrics.exposition(), CONTENT_TYPE_LATEST
    elif path in (b"/healthz", b"/health"):
        problem = await check_health(metrics.files)
        status = "200 OK" if problem is None else "503 Service Unavailable"
        payload, kind = ((problem or "ok") + "\n").encode(), "text/plain; charset=utf-8"
    else:
        status, payload, kind = "404 Not Found", b"not found\n", "text/plain"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head if method == b"HEAD" else head + payload)


async def serve_metrics(
    metrics: MountMetrics, address: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    host, port = parse_address(address)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _respond(stream, metrics)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics on http://%s:%d/metrics and /healthz", host, port)
    task_status.started()
    await trio.serve_listeners(handler, listeners)
