"""Python's cyclic garbage collector, held back where a process makes many objects that are
not garbage.

By default the collector walks the young objects every 700 container allocations, and every tenth
of those walks also the older ones, which in a run's process include all of Dagster's. Two places
make objects by the hundred thousand without making cyclic garbage: loading the code location
(the modules' long-lived objects, which no walk can free) and a window's pages (trees of dicts and
lists parsed from JSON, freed by reference counting as soon as they are staged). There the
collector walks them every `young` allocations instead; cyclic garbage made meanwhile (Dagster's
events, the HTTP client's exceptions) waits at most that long.
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
