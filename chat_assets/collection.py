"""Python's cyclic garbage collector, held back while a window's pages pass through.

A page is a tree of dicts and lists parsed from JSON, and so is each sanitized chat: none holds a
cycle, and reference counting frees each as soon as it is staged. The collector does not know
that: by default it walks the young objects every 700 container allocations, and every tenth of
those walks also the older ones, which in a run worker include all of Dagster's. While a window is
fetched, sanitized and staged, it walks them every `young` allocations instead; cyclic garbage
made meanwhile (Dagster's events, the HTTP client's exceptions) waits at most that long.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG = 100_000


@contextmanager
def collected_rarely(young: int = YOUNG) -> Iterator[None]:
    """Collect the youngest generation every `young` allocations, not fewer, until the block
    ends; the earlier thresholds then come back."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
