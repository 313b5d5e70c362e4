"""Python's cyclic garbage collector, held back where a process makes many objects that are
not garbage.

By default the collector walks the young objects every 700 container allocations, every tenth
walk takes the middle generation too, and once enough has survived into the oldest generation a
walk takes that as well: in a run's process, all of Dagster's objects. Two places
make objects by the hundred thousand without making cyclic garbage: loading the code location
(the modules' long-lived objects, which no walk can free) and a window's pages (trees of dicts and
lists parsed from JSON, freed by reference counting as soon as they are staged). There the
collector walks them every `young` allocations instead; cyclic garbage made meanwhile (Dagster's
events, the HTTP client's exceptions) waits at most that long.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG = 100_000

# The thresholds are the process's: blocks open in several threads at once share one raise, and
# the thresholds from before the first come back when the last ends.
_lock = threading.Lock()
_open = 0
_before: tuple[int, ...] = ()


@contextmanager
def collected_rarely(young: int = YOUNG) -> Iterator[None]:
    """Collect the youngest generation every `young` allocations, not fewer, until the block
    ends; the earlier thresholds then come back."""
    global _open, _before
    with _lock:
        if _open == 0:
            _before = gc.get_threshold()
        _open += 1
        gc.set_threshold(max(young, gc.get_threshold()[0]), *_before[1:])
    try:
        yield
    finally:
        with _lock:
            _open -= 1
            if _open == 0:
                gc.set_threshold(*_before)
