"""The pacer: request starts to one UJET account spaced at least 1/rate apart, for every thread of
the process and, through `SharedTurns`, for every process that fetches from the account.

UJET's request budget belongs to the account (its host), not to a client object: every client of
the process talking to one host draws from the same pacer (`pacer_for`), and runs in other
processes take turns with it request by request, never window by window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """(scheme, host, port) with default ports filled in, so equal origins compare equal."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


def origin_text(origin: Origin) -> str:
    """scheme://host:port: what a UJET request budget belongs to."""
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}"


class SharedTurns(Protocol):
    """Request starts of one account across processes: `begin` blocks until `interval` seconds
    after the last start anyone recorded and holds the turn; `end` records a start now and lets
    the turn go. One thread of the process holds the turn at a time."""

    def begin(self, interval: float) -> None: ...

    def end(self) -> None: ...


class RequestPacer:
    """Spaces request starts at least 1/rate apart for everyone sharing it, and adapts the rate.

    Spacing is measured from the moment the previous request was actually let go, never from a
    schedule of slots: a caller that wakes late pushes the next one later too, so a late request
    is never followed by a catch-up burst. A 429 lowers the rate multiplicatively (someone else
    may be spending the tenant's budget); each success raises it again by small steps, quickly
    up to most of the rate that drew the last 429 and slowly beyond, up to the configured rate.
    """

    DECREASE = 0.7
    FLOOR_SHARE = 0.05  # never slower than this share of the configured rate
    FAST_STEP = 0.02  # of the configured rate, per success, up to 85% of the last throttled pace
    SLOW_STEP = 0.001  # ... and beyond
    # Of an interval: room for the jitter between a request leaving and the server seeing it
    # arrive (a millisecond or two at 10 requests/s).
    GUARD = 0.02
    SENDING_POLL = 0.001  # how often a caller looks whether the request being sent has left

    def __init__(
        self,
        requests_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._last_start = -math.inf
        self._sending = False
        self._waiting = 0  # callers inside `wait`, not yet let go
        self._ceiling = self._rate = self._throttled_at = 0.0
        self._turns: SharedTurns | None = None
        self._holding = threading.local()
        self.throttles = 0
        self.set_rate(requests_per_second)

    @property
    def requests_per_second(self) -> float:
        """The configured rate: the most the pacer will ever allow."""
        return self._ceiling

    @property
    def pace(self) -> float:
        """The rate in force now, after any slowing down; callers sharing the pacer see one."""
        return self._rate

    @property
    def interval(self) -> float:
        """Seconds from one request start to the next at the pace in force, guard included."""
        return (1.0 + self.GUARD) / self._rate

    def idle_for(self) -> float:
        """Seconds the next request could have started before now while no caller waited to
        start one: negative until it may, while a request is being sent, and while a caller
        waits for its turn (it takes the moment as soon as it comes)."""
        with self._lock:
            if self._sending or self._waiting:
                return -self.interval
            return self._clock() - (self._last_start + self.interval)

    def set_rate(self, requests_per_second: float) -> None:
        """Configure the most requests per second for all sharers; the pace starts there."""
        if not math.isfinite(requests_per_second) or requests_per_second <= 0:
            raise ValueError("requests_per_second must be a positive number")
        with self._lock:
            self._ceiling = self._rate = requests_per_second
            self._throttled_at = math.inf

    def share(self, turns: SharedTurns | None) -> None:
        """Take turns with other processes through `turns` (None: this process alone)."""
        with self._lock:
            self._turns = turns

    def wait(self) -> None:
        """Block until this caller may start its request, then count it as started now. Until
        the caller says the request is `sent`, no other may start: a thread held up between the
        two (by another holding the interpreter) would otherwise send its request late, closer
        to the next one than the interval."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    due = self._last_start + self.interval
                    if not self._sending and now >= due:
                        self._sending = True
                        self._last_start = now
                        turns = self._turns
                        break
                self._sleep(max(due - now, self.SENDING_POLL))
        finally:
            with self._lock:
                self._waiting -= 1
        self._holding.turns = turns
        if turns is not None:
            turns.begin(self.interval)

    def sent(self) -> None:
        """The request that `wait` let go has been written only now: the spacing to the next
        one counts from here."""
        turns, self._holding.turns = getattr(self._holding, "turns", None), None
        if turns is not None:
            turns.end()
        with self._lock:
            self._last_start = max(self._last_start, self._clock())
            self._sending = False

    def throttled(self) -> None:
        """The server answered 429: slow down for everyone sharing this pacer."""
        with self._lock:
            self.throttles += 1
            self._throttled_at = self._rate
            self._rate = max(self._ceiling * self.FLOOR_SHARE, self._rate * self.DECREASE)

    def succeeded(self) -> None:
        """A request went through: recover a step towards the configured rate."""
        with self._lock:
            fast = self._rate < self._throttled_at * 0.85
            step = self._ceiling * (self.FAST_STEP if fast else self.SLOW_STEP)
            self._rate = min(self._ceiling, self._rate + step)


_pacers: dict[Origin, RequestPacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(base_url: str, requests_per_second: float) -> RequestPacer:
    """The one pacer of this process for base_url's origin, set to the given rate."""
    key = origin_of(base_url)
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = RequestPacer(requests_per_second)
    if pacer.requests_per_second != requests_per_second:
        pacer.set_rate(requests_per_second)
    return pacer
