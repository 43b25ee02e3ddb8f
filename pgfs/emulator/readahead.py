"""Which pages to render when a read misses the page cache (a pure state machine).

Rendering costs a round of queries whatever the number of pages in it (every
table's leaves in one pipelined round trip, raw pages with their page
records), so a miss renders more than the page asked for:

- a miss right after the previous batch (a sequential read) renders a window
  that doubles, up to `max_window` pages;
- any other miss of a client read renders its aligned block of `block` pages:
  SQLite's b-trees grow in place, so a query that reads one page of a region
  mostly reads its neighbours next (the cold browse query of a 100 MB library
  touches most pages of its tables and indexes);
- any other miss of the diff (`block=1`) renders just its page: a commit's cost
  must depend on the pages it changes.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_WINDOW = 256
"""Most pages a sequential read renders ahead in one batch (1 MiB of 4 KiB pages)."""
CLIENT_BLOCK = 256
"""Pages a random miss of a client read renders: its aligned block."""


@dataclass
class ReadAhead:
    max_window: int = MAX_WINDOW
    last_miss: int | None = None
    window: int = 1

    def plan(self, first: int, last: int, page_count: int, *, block: int = 1) -> range:
        """The pages to render for a read of [first, last] that missed the cache."""
        start = first
        if self.last_miss is not None and 0 < first - self.last_miss <= self.window:
            self.window = min(self.window * 2, self.max_window)
        else:
            self.window = max(block, 1)
            start = first - (first - 1) % self.window
        self.last_miss = first
        stop = min(max(start + self.window - 1, last), page_count)
        return range(start, max(stop, last) + 1)
