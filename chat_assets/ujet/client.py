"""Client for UJET's Manager API `chats` endpoint: one half-open `updated_at` window at a time.

The vendor advises against page numbers for chats, because results cannot be guaranteed while
records change, and recommends tailing: ask by `updated_at`, from the last record seen, again and
again. So a window is read in `updated_at` order, each request starting at the newest second the
previous page reached; chats seen twice at the seams are de-duplicated by id. Page numbers remain
only where tailing cannot move: more chats share one second than a page holds.

Every request is paced process-wide (slowing down on 429s, recovering gradually), what is
transient is retried (429, 5xx, dropped or slow connections), what is not fails at once
(401/403/404), and each page is validated chat by chat: one unreadable chat is repaired or left
out and counted, never the reason a day fails. Nothing here logs or raises with record contents
or credentials, because chats carry personal data and the secret opens them all.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from chat_assets.grammar import parse_instant

__all__ = [
    "MAX_PER_PAGE",
    "FetchResult",
    "RequestPacer",
    "UjetAuthError",
    "UjetClient",
    "UjetError",
    "UjetNotFoundError",
    "UjetResponseError",
    "UjetUnavailableError",
    "pacer_for",
]

MAX_PER_PAGE = 100
"""Integrations treat 100 as UJET's largest page; asking for more is not documented to work."""

_DEFAULT_PORTS = {"http": 80, "https": 443}

PROGRESS_SECONDS = 5.0
_log = logging.getLogger(__name__)


class UjetError(Exception):
    """Anything that stopped a UJET fetch; the message says what happened and what to check."""


class UjetAuthError(UjetError):
    """UJET refused the credentials (401) or their permissions (403); retrying cannot help."""


class UjetNotFoundError(UjetError):
    """The chats endpoint does not exist at the configured address (404)."""


class UjetResponseError(UjetError):
    """UJET answered, but not with something we can trust as a page of chats."""


class UjetUnavailableError(UjetError):
    """UJET stayed throttled, failing or unreachable through every retry."""


@dataclass(frozen=True)
class FetchResult:
    """The chats of one window plus the numbers that tell whether the fetch was healthy."""

    records: list[dict]
    """The window's chats, newest version of each, by id; empty when they went to a sink."""
    kept: int
    """Chats of the window, newest version of each (what `records` holds or the sink got)."""
    pages: int
    total: int | None
    received: int
    duplicates_dropped: int
    requests: int
    retries: int
    throttled: int
    outside_window: int = 0
    left_out: tuple[str, ...] = ()
    """Chats that could not be used, named by chat id or page position, never by values."""
    repaired: int = 0
    """Chats whose text was repaired (unpaired surrogates replaced, NUL characters removed)."""
    reread: bool = False
    """The window arrived short of `total` and was read once more."""
    shortfall: int = 0
    """Chats UJET's `total` promised beyond those the last read got (usable or left out)."""
    pace: float = 0.0
    """The request rate in force at the end (lower than configured after 429s)."""

    @property
    def distinct(self) -> int:
        """Distinct chats received, before the half-open window trims the boundary."""
        return self.received - self.duplicates_dropped


Origin = tuple[str, str, int]


def _origin(url: str) -> Origin:
    """(scheme, host, port) with default ports filled in, so equal origins compare equal."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


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
    # arrive, a few milliseconds (1% and 3% drew 429s from a strict limiter on a busy machine).
    GUARD = 0.05

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
        self._ceiling = self._rate = self._throttled_at = 0.0
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

    def set_rate(self, requests_per_second: float) -> None:
        """Configure the most requests per second for all sharers; the pace starts there."""
        if not math.isfinite(requests_per_second) or requests_per_second <= 0:
            raise ValueError("requests_per_second must be a positive number")
        with self._lock:
            self._ceiling = self._rate = requests_per_second
            self._throttled_at = math.inf

    def wait(self) -> None:
        """Block until this caller may start its request, then count it as started now."""
        self._wait_until_due(start=True)

    def _wait_until_due(self, *, start: bool) -> None:
        """Sleep until one interval after the last start; then count a start now, if asked."""
        while True:
            with self._lock:
                now = self._clock()
                due = self._last_start + (1.0 + self.GUARD) / self._rate
                if now >= due:
                    if start:
                        self._last_start = now
                    return
            self._sleep(due - now)

    def sent(self) -> None:
        """The request that `wait` let go has been written only now: the spacing to the next
        one counts from here. A thread held up between the two (by another thread holding the
        interpreter, on a busy machine) would otherwise send its request late and the next one
        on time, closer to it than the interval."""
        with self._lock:
            self._last_start = max(self._last_start, self._clock())

    def settle(self) -> None:
        """Wait one interval from now, after the last answer, without starting a request.

        For a handover: whoever sends next (another process taking over the account) then
        keeps the spacing where the server measures it. The last request arrived before its
        answer did, however late it left this process."""
        self.sent()
        self._wait_until_due(start=False)

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
    """The one pacer of this process for base_url's origin, set to the given rate.

    UJET limits per company host, not per client object, so every client in the process that
    talks to the same host must draw from the same pacer.
    """
    key = _origin(base_url)
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = RequestPacer(requests_per_second)
    if pacer.requests_per_second != requests_per_second:
        pacer.set_rate(requests_per_second)
    return pacer


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON and no column can hold them: read them as null."""
    return None


class _PacedConnection:
    """Waits for the pacer once the connection is open, right before the request is written,
    and tells it when the request is out, so spacing is measured on send times: neither a new
    connection's handshake nor a delay in writing can shorten the gap to the next request."""

    pacer: RequestPacer
    sock: Any

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]
        self.pacer.wait()
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.pacer.sent()


class _PacedAdapter(HTTPAdapter):
    """requests' transport with every connection of its pools paced by one RequestPacer."""

    def __init__(self, pacer: RequestPacer) -> None:
        self._pools = {}
        for scheme, pool, connection in (
            ("http", HTTPConnectionPool, HTTPConnection),
            ("https", HTTPSConnectionPool, HTTPSConnection),
        ):
            paced = type(f"Paced{connection.__name__}", (_PacedConnection, connection), {})
            paced.pacer = pacer
            self._pools[scheme] = type(f"Paced{pool.__name__}", (pool,), {"ConnectionCls": paced})
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _normalise_id(value: object) -> int | None:
    """An int id from an int or a string of ASCII digits; None otherwise (bools are not ids)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _is_digits(value.strip()):
        return int(value.strip())
    return None


def _utc_param(moment: datetime, *, round_up: bool) -> str:
    """Whole-second UTC text for a bound; the upper bound rounds up so no record is lost."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0)
        if round_up:
            moment += timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_header(response: requests.Response, name: str) -> int | None:
    """A non-negative integer header, or None when absent or not a number."""
    raw = response.headers.get(name)
    if raw is None or not _is_digits(raw.strip()):
        return None
    return int(raw.strip())


def _status_text(code: int) -> str:
    """'404 Not Found' from our own table, never from the server's reason phrase."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _json_kind(body: object) -> str:
    """What a JSON value is, in words, without any of its content."""
    if body is None:
        return "an empty body or null"
    if isinstance(body, dict):
        return "a JSON object"
    if isinstance(body, str):
        return "a JSON string"
    return "a JSON scalar"


# JSON escapes that parse into text PostgreSQL cannot store: NUL, and UTF-16 surrogates (a pair
# parses into one character and is harmless; an unpaired one is not). Found in the raw bytes,
# so the common page is never walked.
_NEEDS_REPAIR = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNPAIRED = re.compile("[\ud800-\udfff]")


def _repaired_text(text: str) -> str:
    return _UNPAIRED.sub("\ufffd", text.replace("\x00", ""))


def _repaired(value: Any) -> Any:
    """A copy of a parsed chat with NUL removed and unpaired surrogates replaced by U+FFFD."""
    if isinstance(value, str):
        return _repaired_text(value)
    if isinstance(value, dict):
        return {_repaired_text(k): _repaired(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repaired(v) for v in value]
    return value


@dataclass
class _Counters:
    """Request accounting for one fetch_window call."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    pages: int = 0
    reported: float = 0.0  # when progress was last logged


@dataclass
class _Read:
    """What one read of a window gathered: when each chat's newest version was updated, and
    the rest (the chats themselves went to the sink as they came)."""

    newest: dict[int, datetime] = field(default_factory=dict)
    received: int = 0
    total: int | None = None
    left_out: dict[str, None] = field(default_factory=dict)  # ordered set of labels
    repaired: set[int] = field(default_factory=set)

    def _keep(self, versions: Iterable[tuple[int, datetime]]) -> None:
        """The newest version of each chat wins."""
        for chat_id, updated in versions:
            kept = self.newest.get(chat_id)
            if kept is None or updated > kept:
                self.newest[chat_id] = updated

    def add(self, page: _Page) -> None:
        self.received += len(page.chats)
        self._keep((record["id"], updated) for record, updated in page.chats)
        self.left_out.update(dict.fromkeys(page.left_out))
        self.repaired.update(page.repaired)

    def merge(self, later: _Read) -> _Read:
        """This read and a later one of the same window: newest versions win, later counts."""
        received = self.received + later.received
        merged = _Read(dict(self.newest), received, later.total, dict(later.left_out))
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


@dataclass(frozen=True)
class _Page:
    """One answer: its usable chats in order, and what more the server says there is."""

    chats: list[tuple[dict, datetime]]
    total: int | None
    more: bool
    left_out: list[str]
    repaired: list[int]


class _Delivery:
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


def _collector(into: dict[int, dict]) -> Callable[[list[dict]], None]:
    """A sink keeping the last version delivered of each chat: its newest."""

    def collect(records: list[dict]) -> None:
        for record in records:
            into[record["id"]] = record

    return collect


class UjetClient:
    """Fetches the chats updated in [start, end) from UJET's Manager API.

    One instance may serve many windows in turn; it is not meant to be shared by threads at the
    same time (a requests.Session is not), but pacing is process-wide regardless.
    """

    def __init__(
        self,
        base_url: str,
        company_key: str,
        company_secret: str,
        *,
        requests_per_second: float = 5.0,
        per_page: int = MAX_PER_PAGE,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_retry_after: float = 300.0,
        max_pages: int = 10_000,
        log: logging.Logger | Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base_url = self._checked_base_url(base_url)
        if not company_key:
            raise ValueError("UJET company key is empty: set UJET_COMPANY_KEY")
        if not company_secret:
            raise ValueError("UJET company secret is empty: set UJET_COMPANY_SECRET")
        if per_page < 1:
            raise ValueError("per_page must be at least 1")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive")
        if max_retries < 0 or backoff_base < 0 or backoff_cap < 0 or max_retry_after < 0:
            raise ValueError(
                "max_retries, backoff_base, backoff_cap and max_retry_after must be >= 0"
            )
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self._auth = (company_key, company_secret)
        self._host = urlsplit(self._base_url).netloc
        self._origin = _origin(self._base_url)
        self._pacer = pacer_for(self._base_url, requests_per_second)
        self._per_page = min(per_page, MAX_PER_PAGE)
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_retry_after = max_retry_after
        self._max_pages = max_pages
        self._log = log if log is not None else _log
        self._session = requests.Session()
        self._session.mount("http://", _PacedAdapter(self._pacer))
        self._session.mount("https://", _PacedAdapter(self._pacer))
        self._sleep = sleep

    @staticmethod
    def _checked_base_url(base_url: str) -> str:
        """The base URL without a trailing slash; refuses forms that could leak or mislead."""
        parts = urlsplit(base_url.strip())
        if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(
                "UJET base URL must be an http(s) URL with a host, like "
                "https://acme.ujet.co/manager/api/v1: check UJET_BASE_URL / UJET_SUBDOMAIN"
            )
        if parts.username is not None or parts.password is not None:
            # Never echo it: the part before '@' may be the secret itself.
            raise ValueError(
                "UJET base URL must not carry credentials before the host; "
                "pass them as UJET_COMPANY_KEY / UJET_COMPANY_SECRET instead"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"UJET base URL for {parts.hostname} must end at /manager/api/v1, "
                "without a query or fragment: check UJET_BASE_URL"
            )
        return base_url.strip().rstrip("/")

    @property
    def base_url(self) -> str:
        """The API base the client was built with (it never holds credentials)."""
        return self._base_url

    @property
    def origin(self) -> str:
        """scheme://host:port of the account: what UJET's request budget belongs to."""
        scheme, host, port = self._origin
        return f"{scheme}://{host}:{port}"

    def settle(self) -> None:
        """Wait until this account's next request may start (see `RequestPacer.settle`)."""
        self._pacer.settle()

    def __repr__(self) -> str:
        return f"UjetClient(base_url={self._base_url!r})"

    def __enter__(self) -> UjetClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its connections."""
        self._session.close()

    def fetch_window(
        self, start: datetime, end: datetime, sink: Callable[[list[dict]], None] | None = None
    ) -> FetchResult:
        """All chats whose updated_at lies in [start, end), newest version of each, by id.

        A read that arrives short of UJET's `total` is read once more, and the two are merged
        (newest version of each chat); the shortfall reported is the second read's.

        With a sink, the chats are not kept: each page's chats go to it as they arrive, every
        version newer than any the sink had of that chat, seams' repeats left out. Chats the
        window's bounds leave out (the whole seconds asked for) and versions superseded later
        reach it too: keeping, per chat, the newest version within [start, end) is the sink's.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("fetch_window needs timezone-aware start and end datetimes")
        if end <= start:
            raise ValueError("fetch_window needs start before end")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        window = f"{_utc_param(start, round_up=False)} to {_utc_param(end, round_up=False)}"
        counters = _Counters()
        collected: dict[int, dict] = {}
        deliver = _Delivery(sink if sink is not None else _collector(collected))
        read = self._read(start, end, window, counters, deliver)
        reread = read.shortfall > 0
        if reread:
            self._log.warning(
                f"UJET window {window}: {read.shortfall} chats short of the API's total "
                f"{read.total} (chats may have changed while reading); reading it once more"
            )
            again = self._read(start, end, window, counters, deliver)
            shortfall = again.shortfall
            read = read.merge(again)
        else:
            shortfall = 0
        return self._result(read, collected, start, end, window, counters, reread, shortfall)

    def _read(
        self,
        start: datetime,
        end: datetime,
        window: str,
        counters: _Counters,
        deliver: _Delivery,
    ) -> _Read:
        """One read of the window by tailing: each request asks for updated_at from the newest
        second reached so far (inclusive), in updated_at order, so a chat updated meanwhile
        moves behind the cursor or out of the window and never pushes another past a page."""
        read = _Read()
        upper = _utc_param(end, round_up=True)
        cursor = start.replace(microsecond=0)
        stepping: datetime | None = None  # the one second being read by page numbers
        params = self._params(cursor, upper, page=1)
        pages_here = 0
        while True:
            pages_here += 1
            if pages_here > self._max_pages:
                raise UjetResponseError(
                    f"UJET kept offering pages past {self._max_pages} requests for the window "
                    f"{window} (total {read.total if read.total is not None else 'unknown'}); "
                    "stopped to avoid an endless loop: the API's paging looks broken"
                )
            page = self._request_page(params, pages_here, window, counters)
            if pages_here == 1:
                read.total = page.total  # the first answer counts the whole window
            read.add(page)
            deliver(page.chats)
            self._progress(read, counters)
            newest = max((updated for _, updated in page.chats), default=None)
            if not page.more:
                if stepping is None:
                    return read
                # Done with the crowded second: tail on from the next one.
                cursor, stepping = stepping + timedelta(seconds=1), None
                if _utc_param(cursor, round_up=False) > upper:
                    return read
                params = self._params(cursor, upper, page=1)
            elif stepping is None and newest is not None and newest.replace(microsecond=0) > cursor:
                cursor = newest.replace(microsecond=0)
                params = self._params(cursor, upper, page=1)
            elif stepping is None and newest is not None:
                # A whole page within one second: tailing cannot get past it, so this second
                # alone is read by page numbers (the only place they remain), page 1 being done.
                stepping = cursor
                within = _utc_param(cursor + timedelta(seconds=1), round_up=False)
                params = self._params(cursor, within, page=2)
            else:
                # Stepping through the crowded second, or a page without a usable updated_at
                # to tail from: the next page by number.
                params = {**params, "page": int(params["page"]) + 1}

    def _params(self, low: datetime, high: str, *, page: int) -> dict[str, str | int]:
        return {
            "updated_at[from]": _utc_param(low, round_up=False),
            "updated_at[to]": high,
            "sort_column": "updated_at",
            "sort_direction": "ASC",
            "per": self._per_page,
            "page": page,
        }

    def _progress(self, read: _Read, counters: _Counters) -> None:
        """How far the window has come, in the run log: on the first page, then at most every
        PROGRESS_SECONDS (each line is an event Dagster stores)."""
        now = time.monotonic()
        if counters.requests > 1 and now - counters.reported < PROGRESS_SECONDS:
            return
        counters.reported = now
        have = len(read.newest)
        of, left = "", ""
        if read.total is not None:
            of = f" of {read.total}"
            pages = math.ceil(max(0, read.total - have) / self._per_page)
            left = f", about {pages / self._pacer.pace:.0f} s to go"
        self._log.info(
            f"UJET: {counters.pages} pages, {have}{of} chats so far, "
            f"pace {self._pacer.pace:.1f} requests/s{left}"
        )

    def _request_page(
        self, params: dict[str, str | int], number: int, window: str, counters: _Counters
    ) -> _Page:
        """One page of the chats endpoint, and whether the server says more follow it.

        The `Link` header, where a deployment sends one, is read with requests' RFC 8288 parser
        for its rel="next"; its targets are never followed (the next page is the same query with
        the next number, and credentials never go to a host the header names). Without links,
        `total` and the page size tell, as the vendor's pagination page advises.
        """
        response = self._get(f"{self._base_url}/chats", params, number, window, counters)
        counters.pages += 1
        chats, size, left_out, repaired = self._parse_page(response, number, window)
        per = self._per_page
        server_per = _int_header(response, "per-page")
        if server_per:
            # A server that caps the page lower than asked still pages "full" pages.
            per = min(per, server_per)
        total = _int_header(response, "total")
        links = response.links  # header names are case-insensitive
        page_number = int(params["page"])
        if size == 0:
            more = False
        elif "next" in links:
            more = True
        elif total is not None:
            more = total > (page_number - 1) * per + size
        else:
            more = not links and size >= per
        if chats and any(a[1] > b[1] for a, b in itertools.pairwise(chats)):
            raise UjetResponseError(
                f"UJET request {number} of the window {window} was not in updated_at order; "
                "the API seems to ignore sort_column, so tailing cannot be trusted"
            )
        return _Page(chats, total, more, left_out, repaired)

    def _result(
        self,
        read: _Read,
        collected: dict[int, dict],
        start: datetime,
        end: datetime,
        window: str,
        counters: _Counters,
        reread: bool,
        shortfall: int,
    ) -> FetchResult:
        """Keep the newest version of each id, then drop what falls outside [start, end)."""
        duplicates = read.received - len(read.newest)
        inside = sorted(i for i, updated in read.newest.items() if start <= updated < end)
        outside = len(read.newest) - len(inside)
        if shortfall:
            self._log.warning(
                f"UJET said total {read.total} for the window {window} but {len(read.newest)} "
                f"distinct chats arrived after a second read; {shortfall} missing"
            )
        if read.left_out:
            self._log.warning(
                f"UJET window {window}: {len(read.left_out)} chats left out, without a usable "
                f"id or updated_at: {', '.join(list(read.left_out)[:10])}"
            )
        self._log.info(
            f"UJET window {window}: {counters.requests} requests, {read.received} chats received, "
            f"{duplicates} duplicates dropped, {outside} outside the window, {len(inside)} kept, "
            f"pace {self._pacer.pace:.1f}/s"
        )
        return FetchResult(
            records=[collected[i] for i in inside] if collected else [],
            kept=len(inside),
            pages=counters.pages,
            total=read.total,
            received=read.received,
            duplicates_dropped=duplicates,
            requests=counters.requests,
            retries=counters.retries,
            throttled=counters.throttled,
            outside_window=outside,
            left_out=tuple(read.left_out),
            repaired=len(read.repaired),
            reread=reread,
            shortfall=shortfall,
            pace=self._pacer.pace,
        )

    def _get(
        self,
        url: str,
        params: dict[str, str | int] | None,
        page: int,
        window: str,
        counters: _Counters,
    ) -> requests.Response:
        """One request, paced and retried; returns only a 2xx response, raises on the rest."""
        attempt = 0
        while True:
            counters.requests += 1  # paced by the session's adapter, right before it is sent
            try:
                response = self._session.get(
                    url,
                    params=params,
                    auth=self._auth,
                    timeout=self._timeout,
                    headers={"Accept": "application/json"},
                    allow_redirects=False,  # credentials must not follow a redirect anywhere
                )
            except requests.exceptions.SSLError:
                raise UjetError(
                    f"TLS with {self._host} failed on request {page} of the window {window} "
                    "(SSLError): check UJET_BASE_URL and the machine's CA certificates"
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                cause, answered = type(exc).__name__, False
                delay = self._backoff(attempt)
            except requests.RequestException as exc:
                raise UjetError(
                    f"Request {page} of the window {window} to {self._host} could not be sent "
                    f"({type(exc).__name__}): check UJET_BASE_URL"
                ) from None
            else:
                status = response.status_code
                if status == 429:
                    counters.throttled += 1
                    self._pacer.throttled()
                    cause, answered = _status_text(status), True
                    delay = self._retry_after(response, attempt)
                elif status >= 500:
                    cause, answered = _status_text(status), True
                    delay = self._backoff(attempt)
                elif 200 <= status < 300:
                    self._pacer.succeeded()
                    return response
                else:
                    self._raise_for_client_error(status, page, window)

            if attempt >= self._max_retries:
                if answered:
                    raise UjetUnavailableError(
                        f"UJET request {page} of the window {window} still failed after "
                        f"{self._max_retries} retries; last cause: {cause}. Check UJET's status, "
                        "or lower UJET_REQUESTS_PER_SECOND"
                    )
                raise UjetUnavailableError(
                    f"UJET at {self._host} could not be reached for request {page} of the "
                    f"window {window} after {self._max_retries} retries (last cause: {cause}): "
                    "check UJET_BASE_URL / UJET_SUBDOMAIN and this machine's network"
                )
            attempt += 1
            counters.retries += 1
            what = f"answered {cause}" if answered else f"request failed with {cause}"
            self._log.warning(
                f"UJET {what}; waiting {delay:.1f} s "
                f"(retry {attempt} of {self._max_retries}, request {page})"
            )
            self._sleep(delay)

    def _raise_for_client_error(self, status: int, page: int, window: str) -> NoReturn:
        """Turn a non-retryable status into the error that names what to fix."""
        if status == 401:
            raise UjetAuthError(
                "UJET answered 401 Unauthorized: check UJET_COMPANY_KEY and UJET_COMPANY_SECRET"
            )
        if status == 403:
            raise UjetAuthError(
                "UJET answered 403 Forbidden: the company key lacks permission for the Manager "
                "API chats endpoint; check its permissions in the UJET console "
                "(Settings -> Developer Settings)"
            )
        if status == 404:
            raise UjetNotFoundError(
                f"UJET answered 404 Not Found at {self._host}: check UJET_SUBDOMAIN / "
                "UJET_DOMAIN / UJET_BASE_URL (the base must end at /manager/api/v1)"
            )
        if 300 <= status < 400:
            raise UjetError(
                f"UJET answered {_status_text(status)} on page {page} of the window {window}; "
                "the API should not redirect: check UJET_BASE_URL (scheme and host)"
            )
        raise UjetError(
            f"UJET answered {_status_text(status)} on page {page} of the window {window}: "
            "check the client's query parameters against the API"
        )

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with full jitter, so parallel clients spread out."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** min(attempt, 60))
        return random.uniform(0, ceiling)

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        """Seconds the 429 asked for (number or HTTP-date), capped; backoff when it did not say."""
        raw = (response.headers.get("retry-after") or "").strip()
        delay: float | None = None
        if raw:
            try:
                delay = float(raw)
            except ValueError:
                try:
                    when = parsedate_to_datetime(raw)
                except (TypeError, ValueError, IndexError):
                    when = None
                if when is not None:
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=UTC)
                    delay = (when - datetime.now(UTC)).total_seconds()
        if delay is None or not math.isfinite(delay):
            return self._backoff(attempt)
        return min(max(delay, 0.0), self._max_retry_after)

    def _parse_page(
        self, response: requests.Response, number: int, window: str
    ) -> tuple[list[tuple[dict, datetime]], int, list[str], list[int]]:
        """(usable chats with parsed updated_at, chats in the body, labels of those left out,
        ids of those repaired). Raises, without quoting the body, only when the body as a whole
        is not a JSON array."""
        if response.status_code == 204 or not response.content:
            if response.status_code == 204:
                return [], 0, [], []
            body: Any = None
        else:
            body = self._json_body(response, number, window)
        if not isinstance(body, list):
            raise UjetResponseError(
                f"UJET request {number} of the window {window} was not a JSON array of chat "
                f"objects (got {_json_kind(body)}): check UJET_BASE_URL points at the Manager API"
            )
        suspicious = _NEEDS_REPAIR.search(response.content) is not None
        chats: list[tuple[dict, datetime]] = []
        left_out: list[str] = []
        repaired: list[int] = []
        for position, record in enumerate(body, start=1):
            record_id = _normalise_id(record.get("id")) if isinstance(record, dict) else None
            updated = parse_instant(record.get("updated_at")) if isinstance(record, dict) else None
            if record_id is None or updated is None:
                left_out.append(
                    f"id {record_id}"
                    if record_id is not None
                    else f"request {number} position {position}"
                )
                continue
            if suspicious:
                clean = _repaired(record)
                if clean != record:
                    repaired.append(record_id)
                    record = clean
            record["id"] = record_id
            # One canonical form, so every later reader parses the same instant the same way.
            record["updated_at"] = updated.isoformat().replace("+00:00", "Z")
            chats.append((record, updated))
        return chats, len(body), left_out, repaired

    @staticmethod
    def _json_body(response: requests.Response, number: int, window: str) -> Any:
        """The parsed body; bytes that are not UTF-8 are replaced by U+FFFD, not fatal."""
        content = response.content
        try:
            try:
                return json.loads(content, parse_constant=_no_constant)
            except UnicodeDecodeError:
                text = content.decode("utf-8", "replace")
                return json.loads(text, parse_constant=_no_constant)
        except ValueError:
            # from None: JSONDecodeError keeps the whole body in .doc.
            content_type = response.headers.get("content-type", "unknown").split(";")[0]
            raise UjetResponseError(
                f"UJET request {number} of the window {window} was not JSON (content type "
                f"{content_type[:60]!r}): check UJET_BASE_URL points at the Manager API"
            ) from None
