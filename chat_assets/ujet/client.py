"""Client for UJET's Manager API `chats` endpoint: one half-open `updated_at` window at a time.

A window is read by tailing, in several lanes at once (`chat_assets.ujet.tailing`); every request
is paced for the whole account (`chat_assets.ujet.pacer`, `chat_assets.ujet.transport`); what is
transient is retried (429, 5xx, dropped or slow connections), what is not fails at once
(401/403/404); each answer is read chat by chat (`chat_assets.ujet.page`). Nothing here logs or
raises with record contents or credentials, because chats carry personal data and the secret
opens them all.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NameResolutionError

from chat_assets.plural import counted
from chat_assets.ujet.errors import (
    UjetAddressError,
    UjetAuthError,
    UjetError,
    UjetNotFoundError,
    UjetUnavailableError,
)
from chat_assets.ujet.pacer import RequestPacer, SharedTurns, origin_of, origin_text, pacer_for
from chat_assets.ujet.page import Page, read_page
from chat_assets.ujet.tailing import Delivery, Params, Read, WindowRead, wire_time
from chat_assets.ujet.transport import paced_session

MAX_PER_PAGE = 100
"""Integrations treat 100 as UJET's largest page; asking for more is not documented to work."""

MAX_IN_FLIGHT = 16
"""Requests of one window in flight at once, at most: enough for answers of 1.5 s at 10/s."""

PROGRESS_SECONDS = 5.0
_log = logging.getLogger(__name__)
_SCHEMES = ("http", "https")


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
    lanes: int = 1
    """Requests of the window in flight at once (the last read's)."""

    @property
    def distinct(self) -> int:
        """Distinct chats received, before the half-open window trims the boundary."""
        return self.received - self.duplicates_dropped


@dataclass
class _Counters:
    """Request accounting for one fetch_window call, kept by every lane."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    pages: int = 0
    asked: int = 0  # pages asked for: each request's number in messages
    reported: float = 0.0  # when progress was last logged
    began: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, **added: int) -> None:
        with self.lock:
            for name, value in added.items():
                setattr(self, name, getattr(self, name) + value)


def _status_text(code: int) -> str:
    """'404 Not Found' from our own table, never from the server's reason phrase."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _lookup_failure(exc: BaseException) -> str | None:
    """Why the host name did not resolve, when that is what stopped a connection; else None."""
    named = False  # urllib3 said so; the resolver's own words are in its cause, if kept
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, socket.gaierror):
            return error.strerror or "name lookup failed"
        named = named or isinstance(error, NameResolutionError)
        linked = (getattr(error, "reason", None), error.__cause__, error.__context__, *error.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return "name lookup failed" if named else None


def _collector(into: dict[int, dict]) -> Callable[[list[dict]], None]:
    """A sink keeping the last version delivered of each chat: its newest."""

    def collect(records: list[dict]) -> None:
        for record in records:
            into[record["id"]] = record

    return collect


class UjetClient:
    """Fetches the chats updated in [start, end) from UJET's Manager API.

    One instance serves one window at a time (its lanes each have an HTTP session of their own);
    pacing is the account's, shared by every client of the process and, once `share` is given
    turns, by other processes.
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
        max_in_flight: int = MAX_IN_FLIGHT,
        pacer: RequestPacer | None = None,
        log: logging.Logger | Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        address_from: str = "UJET_BASE_URL",
        credentials_from: str = "UJET_COMPANY_KEY and UJET_COMPANY_SECRET",
        rate_from: str = "UJET_REQUESTS_PER_SECOND",
    ) -> None:
        """`address_from` names the setting(s) the base URL was built from, `credentials_from`
        those of the key and secret, and `rate_from` that of the request rate, for messages."""
        self._address_from = address_from
        self._credentials_from = credentials_from
        self._rate_from = rate_from
        self._base_url = self._checked_base_url(base_url, address_from, credentials_from)
        if not company_key or not company_secret:
            raise ValueError(f"UJET company key or secret is empty: set {credentials_from}")
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
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._auth = (company_key, company_secret)
        self._host = urlsplit(self._base_url).netloc
        self._origin = origin_of(self._base_url)
        # The process's pacer for the account unless given one (as a test standing for another
        # process is).
        self._pacer = pacer or pacer_for(self._base_url, requests_per_second)
        self._per_page = min(per_page, MAX_PER_PAGE)
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_retry_after = max_retry_after
        self._max_pages = max_pages
        self._max_in_flight = max_in_flight
        self._log = log if log is not None else _log
        self._sessions: list[requests.Session] = []  # one per lane
        self._sleep = sleep

    @staticmethod
    def _checked_base_url(base_url: str, address_from: str, credentials_from: str) -> str:
        """The base URL without a trailing slash; refuses forms that could leak or mislead."""
        parts = urlsplit(base_url.strip())
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            raise ValueError(
                "UJET base URL must be an http(s) URL with a host, like "
                f"https://acme.ujet.co/manager/api/v1: check {address_from}"
            )
        if parts.username is not None or parts.password is not None:
            # Never echo it: the part before '@' may be the secret itself.
            raise ValueError(
                "UJET base URL must not carry credentials before the host; "
                f"pass them as {credentials_from} instead"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"UJET base URL for {parts.hostname} must end at /manager/api/v1, "
                f"without a query or fragment: check {address_from}"
            )
        return base_url.strip().rstrip("/")

    @property
    def base_url(self) -> str:
        """The API base the client was built with (it never holds credentials)."""
        return self._base_url

    @property
    def origin(self) -> str:
        """scheme://host:port of the account: what UJET's request budget belongs to."""
        return origin_text(self._origin)

    def share(self, turns: SharedTurns | None) -> None:
        """Take turns with other processes fetching from this account, request by request."""
        self._pacer.share(turns)

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
        """Close the HTTP sessions and their connections."""
        for session in self._sessions:
            session.close()
        self._sessions.clear()

    def fetch_window(
        self, start: datetime, end: datetime, sink: Callable[[list[dict]], None] | None = None
    ) -> FetchResult:
        """All chats whose updated_at lies in [start, end), newest version of each, by id.

        A read that arrives short of UJET's `total` is read once more, and the two are merged
        (newest version of each chat); the shortfall reported is the second read's.

        With a sink, the chats are not kept: each page's chats go to it as they arrive (from
        one lane at a time), every version newer than any the sink had of that chat, seams'
        repeats left out. Chats the window's bounds leave out (the whole seconds asked for) and
        versions superseded later reach it too: keeping, per chat, the newest version within
        [start, end) is the sink's.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("fetch_window needs timezone-aware start and end datetimes")
        if end <= start:
            raise ValueError("fetch_window needs start before end")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        window = f"{wire_time(start)} to {wire_time(end)}"
        counters = _Counters()
        collected: dict[int, dict] = {}
        deliver = Delivery(sink if sink is not None else _collector(collected))
        read, lanes = self._read(start, end, window, counters, deliver)
        reread = read.shortfall > 0
        if reread:
            self._log.warning(
                f"UJET window {window}: {read.shortfall} chats short of the API's total "
                f"{read.total} (chats may have changed while reading); reading it once more"
            )
            again, lanes = self._read(start, end, window, counters, deliver)
            shortfall = again.shortfall
            read = read.merge(again)
        else:
            shortfall = 0
        return self._result(read, collected, start, end, window, counters, reread, shortfall, lanes)

    def _read(
        self,
        start: datetime,
        end: datetime,
        window: str,
        counters: _Counters,
        deliver: Delivery,
    ) -> tuple[Read, int]:
        """One read of the window by tailing, in lanes; with the lanes it used."""

        def ask(params: Params, lane: int) -> tuple[Page, float]:
            return self._request_page(params, lane, window, counters)

        reading = WindowRead(
            start,
            end,
            label=window,
            per=self._per_page,
            ask=ask,
            deliver=deliver,
            idle_for=self._pacer.idle_for,
            max_lanes=self._max_in_flight,
            max_pages=self._max_pages,
            progress=lambda read: self._progress(read, counters),
        )
        return reading.run(interval=lambda: self._pacer.interval), reading.lanes

    def _session(self, lane: int) -> requests.Session:
        while len(self._sessions) <= lane:
            self._sessions.append(paced_session(self._pacer))
        return self._sessions[lane]

    def _request_page(self, params: Params, lane: int, window: str, counters: _Counters) -> Page:
        """One page of the chats endpoint."""
        with counters.lock:
            counters.asked += 1
            number = counters.asked
        response = self._get(f"{self._base_url}/chats", params, number, window, counters, lane)
        page = read_page(
            response,
            int(params["page"]),
            self._per_page,
            number,
            window,
            address_from=self._address_from,
        )
        counters.count(pages=1)
        return page, response.elapsed.total_seconds()

    def _progress(self, read: Read, counters: _Counters) -> None:
        """How far the window has come, in the run log: once the window's total is known, then
        at most every PROGRESS_SECONDS (each line is an event Dagster stores)."""
        now = time.monotonic()
        if read.total is None or (counters.reported and now - counters.reported < PROGRESS_SECONDS):
            return
        counters.reported = now
        have = len(read.newest)
        of, left = "", ""
        if read.total is not None:
            of = f" of {read.total}"
            pages = math.ceil(max(0, read.total - have) / self._per_page)
            # The slower of the pace and the rate pages have come at so far: a slow server or
            # a busy machine keeps a fetch below its pace.
            rate = self._pacer.pace
            if counters.pages:
                rate = min(rate, counters.pages / max(now - counters.began, 1e-3))
            left = f", about {pages / rate:.0f} s to go"
        self._log.info(
            f"UJET: {counted(counters.pages, 'page')}, {have}{of} chats so far, "
            f"pace {self._pacer.pace:.1f} requests/s{left}"
        )

    def _result(
        self,
        read: Read,
        collected: dict[int, dict],
        start: datetime,
        end: datetime,
        window: str,
        counters: _Counters,
        reread: bool,
        shortfall: int,
        lanes: int,
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
                f"id or updated_at: {', '.join(list(read.left_out.values())[:10])}"
            )
        self._log.info(
            f"UJET window {window}: {counted(counters.requests, 'request')}, "
            f"{counted(read.received, 'chat')} received, "
            f"{counted(duplicates, 'duplicate')} dropped, {outside} outside the window, "
            f"{len(inside)} kept, at most {lanes} in flight at once, pace {self._pacer.pace:.1f}/s"
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
            left_out=tuple(read.left_out.values()),
            repaired=len(read.repaired),
            reread=reread,
            shortfall=shortfall,
            pace=self._pacer.pace,
            lanes=lanes,
        )

    def _get(
        self,
        url: str,
        params: dict[str, str | int] | None,
        page: int,
        window: str,
        counters: _Counters,
        lane: int,
    ) -> requests.Response:
        """One request, paced and retried; returns only a 2xx response, raises on the rest."""
        attempt = 0
        while True:
            counters.count(requests=1)  # paced by the session's adapter, as it is sent
            try:
                response = self._session(lane).get(
                    url,
                    params=params,
                    auth=self._auth,
                    timeout=self._timeout,
                    headers={"Accept": "application/json"},
                    allow_redirects=False,  # credentials must not follow a redirect anywhere
                )
            except requests.exceptions.SSLError:
                raise UjetAddressError(
                    f"TLS with {self._host} failed on request {page} of the window {window} "
                    f"(SSLError): check {self._address_from} and the machine's CA certificates"
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                if (lookup := _lookup_failure(exc)) is not None:
                    # A name that does not resolve is a setting to fix, not a slow network.
                    raise UjetAddressError(
                        f"UJET host {self._host} did not resolve ({lookup}): "
                        f"check {self._address_from}"
                    ) from None
                cause, answered = type(exc).__name__, False
                delay = self._backoff(attempt)
            except requests.RequestException as exc:
                raise UjetError(
                    f"Request {page} of the window {window} to {self._host} could not be sent "
                    f"({type(exc).__name__}): check {self._address_from}"
                ) from None
            else:
                status = response.status_code
                if status == 429:
                    counters.count(throttled=1)
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
                        f"or lower {self._rate_from}"
                    )
                raise UjetUnavailableError(
                    f"UJET at {self._host} could not be reached for request {page} of the "
                    f"window {window} after {self._max_retries} retries (last cause: {cause}): "
                    f"check {self._address_from} and this machine's network"
                )
            attempt += 1
            counters.count(retries=1)
            what = f"answered {cause}" if answered else f"request failed with {cause}"
            self._log.warning(
                f"UJET {what}; waiting {delay:.1f} s "
                f"(retry {attempt} of {self._max_retries}, request {page})"
            )
            self._sleep(delay)

    def _raise_for_client_error(self, status: int, page: int, window: str) -> NoReturn:
        """Turn a non-retryable status into the error that names what to fix."""
        if status == 401:
            raise UjetAuthError(f"UJET answered 401 Unauthorized: check {self._credentials_from}")
        if status == 403:
            raise UjetAuthError(
                "UJET answered 403 Forbidden: the company key lacks permission for the Manager "
                "API chats endpoint; check its permissions in the UJET console "
                "(Settings -> Developer Settings)"
            )
        if status == 404:
            raise UjetNotFoundError(
                f"UJET answered 404 Not Found at {self._host}: check {self._address_from} "
                "(the base must end at /manager/api/v1)"
            )
        if 300 <= status < 400:
            raise UjetError(
                f"UJET answered {_status_text(status)} on page {page} of the window {window}; "
                f"the API should not redirect: check {self._address_from} (scheme and host)"
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
