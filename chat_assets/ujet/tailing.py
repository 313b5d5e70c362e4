"""Tailing: one read of an `updated_at` window, in disjoint slices read side by side.

The vendor advises against page numbers for chats, because results cannot be guaranteed while
records change, and recommends tailing: ask by `updated_at`, from the last record seen, again and
again. So each slice of the window is read in `updated_at` order, each request starting at the
newest second the previous page reached; a chat updated meanwhile moves behind the cursor or out
of the window and never pushes another past a page. Page numbers remain only where tailing cannot
move: more chats share one second than a page holds.

A real API takes a while to answer each page. Read one page after another, its request budget
would sit idle while each answer is on its way, so the window is read by several lanes at once,
each tailing a slice of its own, all paced by the account's one pacer:

- The first lane's first request asks for the whole window: its `total` counts every chat of the
  window, the figure the read is checked against.
- Whenever the pacer is about to be free and no lane waits for it (every lane is waiting for an
  answer), one more lane starts, on the later half of the slice with the most left: lanes grow
  until the budget, not the server's time to answer, is what limits the read. This does not
  wait for the first answer: while it is on its way, lanes start on later halves of the window
  by time, each slice's first answer counting its chats. A server that answers within an
  interval keeps one lane, and a window of one page is one request; a slow one spends up to one
  request per interval of its first answer's time on a window that turns out small.
- Each answer's `total` counts what is left of its slice. A lane whose slice is done takes the
  later half of the slice with the most left beyond the requests in flight, while more than a
  page is left there: the taken half and the page in flight are then read side by side instead
  of one after the other, for as many requests when the chats are spread evenly (split at the
  middle of a slice with one to two pages left, each part fits a page). So lanes finish
  together, their last requests an interval apart, however the chats are spread over the day.
  (The slice it halved may still receive chats of the taken half from the request in flight:
  chats seen twice are de-duplicated by id, and that answer's count of what is left is scaled
  down to the part its slice kept.)
- Adjacent slices share their boundary second (the API's bounds are inclusive whole seconds), so
  no chat falls between two.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from chat_assets.ujet.errors import UjetResponseError
from chat_assets.ujet.page import Page

SECOND = timedelta(seconds=1)

Params = dict[str, str | int]
# Asks for one page with these query parameters on a lane (each lane has a connection); returns
# it and the seconds its answer took.
Ask = Callable[[Params, int], tuple[Page, float]]


def wire_time(moment: datetime, *, round_up: bool = False) -> str:
    """Whole-second UTC text for a bound; rounded up, an upper bound loses no record."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0)
        if round_up:
            moment += SECOND
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def whole_second(moment: datetime, *, round_up: bool = False) -> datetime:
    """The whole second `wire_time` sends for `moment`."""
    down = moment.astimezone(UTC).replace(microsecond=0)
    return down + SECOND if round_up and moment.microsecond else down


@dataclass
class Read:
    """What one read of a window gathered: when each chat's newest version was updated, and
    the rest (the chats themselves went to the sink as they came)."""

    newest: dict[int, datetime] = field(default_factory=dict)
    received: int = 0
    total: int | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    """Chats left out, by a key telling one from another: the label naming each."""
    repaired: set[int] = field(default_factory=set)

    def _keep(self, versions: Iterable[tuple[int, datetime]]) -> None:
        """The newest version of each chat wins."""
        for chat_id, updated in versions:
            kept = self.newest.get(chat_id)
            if kept is None or updated > kept:
                self.newest[chat_id] = updated

    def add(self, page: Page) -> None:
        self.received += len(page.chats)
        self._keep((record["id"], updated) for record, updated in page.chats)
        for key, label in page.left_out.items():
            self.left_out.setdefault(key, label)
        self.repaired.update(page.repaired)

    def merge(self, later: Read) -> Read:
        """This read and a later one of the same window: newest versions win, later counts."""
        received = self.received + later.received
        merged = Read(dict(self.newest), received, later.total, dict(later.left_out))
        merged.repaired = self.repaired | later.repaired
        merged._keep(later.newest.items())
        # A chat left out once but read cleanly later is not missing.
        for chat_id in merged.newest:
            merged.left_out.pop(f"id {chat_id}", None)
        return merged

    @property
    def shortfall(self) -> int:
        if self.total is None:
            return 0
        return max(0, self.total - len(self.newest) - len(self.left_out))


class Delivery:
    """Hands each page's chats to a sink: a chat's first version, then only newer ones."""

    def __init__(self, sink: Callable[[list[dict]], None]) -> None:
        self._sink = sink
        self._delivered: dict[int, datetime] = {}

    def __call__(self, chats: list[tuple[dict, datetime]]) -> None:
        fresh = []
        for record, updated in chats:
            before = self._delivered.get(record["id"])
            if before is None or updated > before:
                self._delivered[record["id"]] = updated
                fresh.append(record)
        if fresh:
            self._sink(fresh)


@dataclass
class _Slice:
    """A part of the window tailed by one lane: from `cursor` to `hi`, whole seconds."""

    cursor: datetime
    hi: datetime
    owns_hi: bool
    """Whether the chats of the second `hi` are this slice's: only the window's last slice's
    are; every other slice's `hi` is where the next one starts."""
    stepping: datetime | None = None
    """The one second read by page numbers, while more chats share it than a page holds."""
    page: int = 1
    requests: int = 0
    left: int | None = None
    """Chats the server counted beyond the last answer's page, up to `hi` (None: no answer
    yet)."""
    asked_to: datetime | None = None
    """The upper bound of the request in flight (None: none is): `hi` when it was sent."""
    done: bool = False

    def params(self, per: int) -> Params:
        low, high = self.cursor, self.hi
        if self.stepping is not None:
            low, high = self.stepping, self.stepping + SECOND
        return {
            "updated_at[from]": wire_time(low),
            "updated_at[to]": wire_time(high),
            "sort_column": "updated_at",
            "sort_direction": "ASC",
            "per": per,
            "page": self.page,
        }

    def past_end(self) -> bool:
        return self.cursor > self.hi or (self.cursor == self.hi and not self.owns_hi)

    def advance(self, page: Page, per: int) -> None:
        """Where the next request of this slice starts, after `page` answered it."""
        newest = max((updated for _, updated in page.chats), default=None)
        asked_to, self.asked_to = self.asked_to, None
        if page.total is not None:
            self.left = max(0, page.total - (self.page - 1) * per - len(page.chats))
            if asked_to is not None and self.hi < asked_to and self.stepping is None:
                # Halved while the request was in flight: the count covers the taken half too.
                # Keep the share of it that falls in this slice, as if spread evenly.
                since = self.cursor if newest is None else max(self.cursor, whole_second(newest))
                asked = (asked_to - since).total_seconds()
                kept = max(0.0, (self.hi - since).total_seconds())
                self.left = round(self.left * min(1.0, kept / asked)) if asked > 0 else 0
        if not page.more:
            if self.stepping is None:
                self.done = True
                return
            # Done with the crowded second: tail on from the next one.
            self.cursor, self.stepping, self.page = self.stepping + SECOND, None, 1
        elif self.stepping is None and newest is not None and whole_second(newest) > self.cursor:
            self.cursor, self.page = whole_second(newest), 1
        elif self.stepping is None and newest is not None:
            # A whole page within one second: tailing cannot get past it, so this second
            # alone is read by page numbers (the only place they remain), page 1 being done.
            self.stepping, self.page = self.cursor, 2
        else:
            # Stepping through the crowded second, or a page without a usable updated_at to
            # tail from: the next page by number.
            self.page += 1
        self.done = self.stepping is None and self.past_end()

    def work(self, per_second: float) -> float:
        """Chats left to read: as the last answer counted them, or, before any answer, as many
        as the window holds in as long a time (`per_second`; infinite before any is known)."""
        if self.left is not None:
            return self.left
        return per_second * (self.hi - self.cursor).total_seconds()

    def pending(self, per: int, per_second: float) -> tuple[float, float]:
        """How much is left beyond the request in flight: chats, then seconds (which rank
        slices before any count is known)."""
        chats = self.work(per_second) - (per if self.asked_to is not None else 0)
        return chats, (self.hi - self.cursor).total_seconds()

    def halve(self, per: int, per_second: float) -> _Slice | None:
        """The later half of what is left, taken from this slice; None when a page or less is
        (the request in flight, or the next, reads it: halving would only add a part-filled
        page), or less than two seconds."""
        if self.done or self.stepping is not None or self.work(per_second) <= per:
            return None
        seconds = int((self.hi - self.cursor).total_seconds())
        if seconds < 2:
            return None
        mid = self.cursor + SECOND * (seconds // 2)
        taken = _Slice(mid, self.hi, self.owns_hi)
        if self.left is not None:
            taken.left = self.left // 2
            self.left -= taken.left
        self.hi, self.owns_hi = mid, False
        return taken


class WindowRead:
    """One read of [start, end) by tailing, in as many lanes as keep the pacer busy."""

    LEAD = 0.05
    """Of an interval: how soon before the pacer is free a lane starts, the time its thread
    takes to start and prepare its request."""
    LOOK_AGAIN = 0.1
    """Of an interval: how often the pacer is looked at while it is free and no lane is due."""

    def __init__(
        self,
        start: datetime,
        end: datetime,
        *,
        label: str,
        per: int,
        ask: Ask,
        deliver: Delivery,
        idle_for: Callable[[], float],
        max_lanes: int,
        max_pages: int,
        progress: Callable[[Read], None],
    ) -> None:
        self._window_start = start
        self._first = _Slice(whole_second(start), whole_second(end, round_up=True), True)
        self._label = label
        self._per = per
        self._ask = ask
        self._deliver = deliver
        self._idle_for = idle_for
        self._max_lanes = max_lanes
        self._max_pages = max_pages
        self._progress = progress
        self._lock = threading.Lock()
        self._lane_ended = threading.Condition(self._lock)
        self._slices = [self._first]
        self._running = 0  # lanes started and not ended
        # Numbers of ended lanes, for the next to start: a lane's number is its connection, so
        # no two running lanes share one. Numbers in use are 0 to running + len(free) - 1.
        self._free: list[int] = []
        self._asking = 0  # lanes waiting for the pacer or an answer
        self._answer_time: float | None = None  # seconds, a moving average of recent answers
        self._began = 0.0  # when the read started (time.monotonic)
        # When its first request left, once the pacer has let it go: a wait for another
        # process's turn is no answer time.
        self._first_sent: float | None = None
        self._errors: list[BaseException] = []
        self.read = Read()
        self.lanes = 0
        """The most lanes that ran at once."""

    def run(self, interval: Callable[[], float]) -> Read:
        """Read the window, adding a lane whenever the pacer is about to be free (within
        LEAD of its `interval`, seconds between requests, so that the new lane's request is
        ready for it) while no lane waits for it, every lane waiting for an answer."""
        self._began = time.monotonic()
        threads = [self._start(self._first)]
        with self._lock:
            while self._running:
                every = interval()
                lead, idle = every * self.LEAD, self._idle_for()
                if self._first_sent is None and -every < idle < math.inf:
                    last_start = time.monotonic() - idle - every
                    if last_start >= self._began:  # the pacer's last start is this read's
                        self._first_sent = last_start
                if idle >= -lead and self._more_lanes_due(every):
                    taken = self._take_half()
                    if taken is not None:
                        threads.append(self._start(taken))
                        continue
                # Until the pacer is next about to be free; while it is, look again soon.
                soon = every * self.LOOK_AGAIN
                self._lane_ended.wait(max(-idle - lead, soon) if idle < -lead else soon)
        for thread in threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        return self.read

    def _more_lanes_due(self, interval: float) -> bool:
        """Every lane is waiting for an answer (none for the pacer or between requests), and
        fewer run than answers of the usual time need to keep requests `interval` apart, one
        more for the time to take each in (lock held). Before the first answer, one lane more
        for each interval it has been awaited since it left."""
        if self._answer_time is None:
            if self._first_sent is None:
                return False
            awaited = time.monotonic() - self._first_sent + interval * self.LEAD
            needed = 1 + math.floor(awaited / interval)
        else:
            needed = 2 + math.ceil(self._answer_time / interval)
        return (
            not self._errors
            and self._running < min(self._max_lanes, needed)
            and self._asking == self._running
        )

    def _start(self, piece: _Slice) -> threading.Thread:
        """A lane for `piece` (lock held, or before any lane runs)."""
        lane = self._free.pop() if self._free else self._running
        self._running += 1
        self.lanes = max(self.lanes, self._running)
        thread = threading.Thread(target=self._lane, args=(piece, lane), name=f"ujet-lane-{lane}")
        thread.start()
        return thread

    def _lane(self, piece: _Slice | None, lane: int) -> None:
        """Tail a slice, then halves taken from others, until none is left."""
        try:
            while piece is not None:
                while not piece.done and not self._errors:
                    self._request(piece, lane)
                with self._lock:
                    piece = None if self._errors else self._take_half()
        except BaseException as error:  # raised in the calling thread once every lane ends
            with self._lock:
                self._errors.append(error)
        finally:
            with self._lock:
                self._running -= 1
                self._free.append(lane)
                self._lane_ended.notify()

    def _take_half(self) -> _Slice | None:
        """The later half of the slice with the most left beyond the requests in flight, as a
        slice of its own (lock held)."""
        total, first = self.read.total, self._first
        seconds = max(1.0, (first.hi - whole_second(self._window_start)).total_seconds())
        per_second = math.inf if total is None else total / seconds
        busiest = max(
            (s for s in self._slices if not s.done),
            key=lambda s: s.pending(self._per, per_second),
            default=None,
        )
        taken = None if busiest is None else busiest.halve(self._per, per_second)
        if taken is not None:
            self._slices.append(taken)
        return taken

    def _request(self, piece: _Slice, lane: int) -> None:
        """One page of `piece`: ask, take in its chats, move the slice on."""
        with self._lock:
            piece.requests += 1
            if piece.requests > self._max_pages:
                raise UjetResponseError(
                    f"UJET kept offering pages past {self._max_pages} requests for the window "
                    f"{self._label} (total {self.read.total}); stopped to avoid an endless "
                    "loop: the API's paging looks broken"
                )
            params = piece.params(self._per)
            piece.asked_to = piece.hi
            self._asking += 1
        try:
            page, seconds = self._ask(params, lane)
        finally:
            with self._lock:
                self._asking -= 1
        with self._lock:
            usual = seconds if self._answer_time is None else self._answer_time
            self._answer_time = 0.8 * usual + 0.2 * seconds
            if piece is self._first and piece.requests == 1:
                self.read.total = page.total  # the first answer counts the whole window
            self.read.add(page)
            self._deliver(page.chats)
            piece.advance(page, self._per)
            self._progress(self.read)
