"""A producer in a thread of its own, handing its items to the calling thread through a small
queue: the producer runs at its own pace (a fetch at the API's), the caller works through what
it hands over (sanitizing and landing), and neither holds more than a few items in between."""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# How often a producer with a full queue looks whether the caller has given up.
_POLL_SECONDS = 0.1
# How long the caller's thread may keep the interpreter from a producer that became ready (an
# answer arrived), while the two run: Python's default is 5 ms, and a producer needing it
# several times for each item waits that long each time.
_SWITCH_SECONDS = 0.001
_switching = threading.Lock()
_handing_over = 0  # hand-overs running in this process; the interval is the process's
_own_switch = 0.0  # the interval before the first of them, put back after the last


@contextlib.contextmanager
def _prompt_switches() -> Iterator[None]:
    """The switch interval at _SWITCH_SECONDS while any hand-over of this process runs."""
    global _handing_over, _own_switch
    with _switching:
        if _handing_over == 0:
            _own_switch = sys.getswitchinterval()
            sys.setswitchinterval(min(_own_switch, _SWITCH_SECONDS))
        _handing_over += 1
    try:
        yield
    finally:
        with _switching:
            _handing_over -= 1
            if _handing_over == 0:
                sys.setswitchinterval(_own_switch)


class Abandoned(Exception):
    """Raised inside the producer when the caller stopped taking items (it failed)."""


class _End(Generic[Result]):
    """The producer's last word: its result, or the exception it ended with."""

    def __init__(self, result: Result | None = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error


def hand_over(
    produce: Callable[[Callable[[Item], None]], Result],
    consume: Callable[[Item], None],
    *,
    depth: int,
    name: str = "producer",
) -> Result:
    """Call `produce(hand)` in a thread; every item it hands goes, in order, to `consume` in
    this thread. Returns what `produce` returned, once every item is consumed.

    At most `depth` items wait in between: `hand` blocks while the queue is full. A producer's
    exception is raised here after the items it handed before are consumed. When `consume` (or
    anything in this thread) raises, `hand` raises `Abandoned` in the producer, this waits for
    the producer to end (so what it holds, a lock or a connection, is released), and the
    exception goes on.
    """
    items: queue.Queue[Item | _End[Result]] = queue.Queue(maxsize=depth)
    abandoned = threading.Event()

    def put(item: Item | _End[Result]) -> None:
        while not abandoned.is_set():
            try:
                items.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue
        raise Abandoned

    def run() -> None:
        try:
            end: _End[Result] = _End(result=produce(put))
        except BaseException as error:  # handed to the caller's thread, raised there
            end = _End(error=error)
        with contextlib.suppress(Abandoned):  # the caller is gone and raises its own
            put(end)

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _prompt_switches():
        thread.start()
        try:
            while True:
                item = items.get()
                if isinstance(item, _End):
                    break
                consume(item)
        finally:
            abandoned.set()
            thread.join()
    if item.error is not None:
        raise item.error
    return item.result  # type: ignore[return-value]
