"""Filling the local page cache in the background (`pgfs mount --warm-cache`).

A mount on a node with an empty local cache renders every page a client
first reads from the server's rows: a cold browse of a 100 MB library takes
seconds and one of 1 GB half a minute, Jellyfin's command timeout. With
`--warm-cache` the mount renders the pages its cache file lacks in the
background, a batch at a time, until the file is a full local copy (as LiteFS
keeps one); from then on reads never wait on the server, and a restart that
keeps the file starts warm. Client requests go first: each step holds the
database only for one batch, and commits keep the copy current as always.
The server stays the source of truth (README "Speed at a real library's size").
"""

from __future__ import annotations

import logging
import time

import trio

from pgfs.tracker import Backend

log = logging.getLogger("pgfs.fuse")

PAUSE_SECONDS = 0.002
"""Between two steps: what waits for the database (client reads, commits) goes first."""
RETRY_SECONDS = 5.0
"""After a step failed (the server is down): the warm-up pauses, the mount serves on."""
MAX_IDLE_STEPS = 100
"""Steps in a row that add nothing before the warm-up gives up (commits free pages
as fast as it fills them, or a page never stays cached)."""


async def warm_cache(name: str, database: Backend) -> None:
    """Fill `database`'s local page cache file with every page; return when it holds
    them all, or at once when there is no file."""
    warmth = database.warmth()
    if warmth is None:
        log.info("%s: no local page cache to warm (no --cache-dir)", name)
        return
    if warmth.complete:
        log.info("%s: local page cache already holds all %d pages", name, warmth.total)
        return
    log.info(
        "%s: warming the local page cache in the background (%d of %d pages held)",
        name,
        warmth.cached,
        warmth.total,
    )
    started, first, idle = time.monotonic(), warmth.cached, 0
    while not warmth.complete and idle < MAX_IDLE_STEPS:
        before = warmth.cached
        try:
            step = await trio.to_thread.run_sync(database.warm_step)
        except Exception as exc:
            log.warning(
                "%s: warming the local page cache paused for %.0f s: %s", name, RETRY_SECONDS, exc
            )
            await trio.sleep(RETRY_SECONDS)
            continue
        if step is None:
            return
        warmth = step
        idle = idle + 1 if warmth.cached <= before else 0
        await trio.sleep(PAUSE_SECONDS)
    seconds = time.monotonic() - started
    if not warmth.complete:
        log.warning(
            "%s: warming the local page cache stopped at %d of %d pages: no progress",
            name,
            warmth.cached,
            warmth.total,
        )
        return
    log.info(
        "%s: local page cache complete: %d pages rendered in %.1f s (%d pages in all)",
        name,
        warmth.cached - first,
        seconds,
        warmth.total,
    )
