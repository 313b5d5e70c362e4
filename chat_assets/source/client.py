"""Client for UJET's Manager API `chats` endpoint: one half-open `updated_at` window at a time.

The endpoint is slow, rate limited (about one request per second) and pages by `page`/`per`, so
the client paces every request process-wide, retries what is transient (429, 5xx, dropped or slow
connections), fails at once on what is not (401/403/404), and validates each page before it
trusts it. Records are returned as parsed JSON objects; nothing here logs or raises with record
contents or credentials, because chats carry personal data and the secret opens them all.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

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
_DIGITS = re.compile(r"[0-9]+")
_LINK_ENTRY = re.compile(r"<([^>]*)>([^<]*)")
_PAGE_GUARD_MARGIN = 2
"""Extra pages allowed beyond ceil(total/per): records may shift between pages while we read."""

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
    pages: int
    total: int | None
    received: int
    duplicates_dropped: int
    requests: int
    retries: int
    throttled: int
    outside_window: int = 0


Origin = tuple[str, str, int]


def _origin(url: str) -> Origin:
    """(scheme, host, port) with default ports filled in, so equal origins compare equal."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


class RequestPacer:
    """Spaces request starts at least 1/rps apart for everyone sharing it, with no bursts.

    Each caller reserves the next free slot under a lock and then sleeps outside it, so threads
    queue in order without holding the lock while they wait. An idle pacer lets the next request
    go at once, but never two within one interval.
    """

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
        self._next_start = -math.inf
        self._interval = 0.0
        self.set_rate(requests_per_second)

    @property
    def requests_per_second(self) -> float:
        """The current rate; callers sharing the pacer all see the same one."""
        return 1.0 / self._interval

    def set_rate(self, requests_per_second: float) -> None:
        """Change the rate for all sharers; slots already handed out keep their times."""
        if not math.isfinite(requests_per_second) or requests_per_second <= 0:
            raise ValueError("requests_per_second must be a positive number")
        with self._lock:
            self._interval = 1.0 / requests_per_second

    def wait(self) -> None:
        """Block until this caller may start its request."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        delay = start - now
        if delay > 0:
            self._sleep(delay)


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


def _next_link(header: str | None) -> tuple[bool, str | None]:
    """(whether a link header with any rel was sent, the rel="next" target if one was)."""
    if not header:
        return False, None
    saw_rel = False
    for match in _LINK_ENTRY.finditer(header):
        target, params = match.group(1).strip(), match.group(2)
        for param in params.split(";"):
            name, sep, value = param.partition("=")
            if not sep or name.strip().lower() != "rel":
                continue
            saw_rel = True
            rels = value.strip().strip("\"'").lower().split()
            if "next" in rels:
                return True, target
    return saw_rel, None


def _url_key(url: str) -> tuple[Origin, str, tuple[tuple[str, str], ...]]:
    """A form of url that ignores percent-encoding and parameter order, to spot repeats."""
    parts = urlsplit(url)
    query = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return _origin(url), parts.path.rstrip("/"), query


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON and no column can hold them: read them as null."""
    return None


def _parse_time(value: object) -> datetime | None:
    """UJET's ISO-8601 times as aware UTC datetimes; None when the value is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # The API documents its times as UTC; an offset-less value is read that way.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _normalise_id(value: object) -> int | None:
    """An int id from an int or a string of ASCII digits; None otherwise (bools are not ids)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
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
    if raw is None or not _DIGITS.fullmatch(raw.strip()):
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


@dataclass
class _Counters:
    """Request accounting for one fetch_window call."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0


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
        requests_per_second: float = 1.0,
        per_page: int = MAX_PER_PAGE,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_retry_after: float = 300.0,
        max_pages: int = 10_000,
        log: logging.Logger | Any | None = None,
        session: requests.Session | None = None,
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
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
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
        """Close the HTTP session if this client created it; a lent session stays open."""
        if self._owns_session:
            self._session.close()

    def fetch_window(self, start: datetime, end: datetime) -> FetchResult:
        """All chats whose updated_at lies in [start, end), newest version of each, by id."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("fetch_window needs timezone-aware start and end datetimes")
        if end <= start:
            raise ValueError("fetch_window needs start before end")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        window = f"{_utc_param(start, round_up=False)} to {_utc_param(end, round_up=False)}"
        counters = _Counters()

        url: str = f"{self._base_url}/chats"
        params: dict[str, str | int] | None = {
            "updated_at[from]": _utc_param(start, round_up=False),
            "updated_at[to]": _utc_param(end, round_up=True),
            "sort_column": "id",
            "sort_direction": "ASC",
            "per": self._per_page,
            "page": 1,
        }
        per = self._per_page
        total: int | None = None
        page_limit = self._max_pages
        server_links = False
        fetched: set[tuple[Origin, str, tuple[tuple[str, str], ...]]] = set()
        previous_ids: list[int] | None = None
        received: list[tuple[dict, datetime]] = []
        page = 0

        while True:
            page += 1
            if page > page_limit:
                raise UjetResponseError(
                    f"UJET kept offering pages past page {page_limit} of the window {window} "
                    f"(total {total if total is not None else 'unknown'}, {per} per page); "
                    "stopped to avoid an endless loop: the API's paging looks broken"
                )
            response = self._get(url, params, page, window, counters)
            fetched.add(_url_key(response.url or url))
            batch = self._parse_page(response, page, window)

            if page == 1:
                total = _int_header(response, "total")
                server_per = _int_header(response, "per-page")
                if server_per:
                    # A server that caps the page lower than asked still pages "full" pages.
                    per = min(per, server_per)
                if total is not None:
                    page_limit = min(
                        self._max_pages, max(1, math.ceil(total / per)) + _PAGE_GUARD_MARGIN
                    )
            received.extend(batch)
            of = str(max(1, math.ceil(total / per))) if total is not None else "?"
            self._log.info(f"UJET page {page} of {of}: {len(received)} records so far")

            ids = [record["id"] for record, _ in batch]
            if len(ids) > 1 and ids == previous_ids:
                raise UjetResponseError(
                    f"UJET page {page} of the window {window} repeated page {page - 1} exactly; "
                    "the API seems to ignore the page parameter, stopped to avoid an endless loop"
                )
            previous_ids = ids

            has_links, next_url = _next_link(response.headers.get("link"))
            server_links = server_links or has_links
            if next_url is not None:
                url = self._checked_next(next_url, response.url or url, page, window, fetched)
                params = None
            elif server_links or params is None or len(batch) < per:
                break
            else:
                params = {**params, "page": page + 1}

        return self._result(received, page, total, start, end, window, counters)

    def _checked_next(
        self,
        next_url: str,
        current_url: str,
        page: int,
        window: str,
        fetched: set[tuple[Origin, str, tuple[tuple[str, str], ...]]],
    ) -> str:
        """The absolute next link, if it stays on our host and has not been fetched before."""
        absolute = urljoin(current_url, next_url)
        if _origin(absolute) != self._origin:
            # Following it would send the company credentials to someone else.
            raise UjetResponseError(
                f"UJET page {page} of the window {window} has a next link that points to another "
                f"host than {self._host}; refused to follow it with our credentials"
            )
        if _url_key(absolute) in fetched:
            raise UjetResponseError(
                f"UJET page {page} of the window {window} has a next link to a page already "
                "fetched; stopped to avoid an endless loop: the API's paging looks broken"
            )
        return absolute

    def _result(
        self,
        received: list[tuple[dict, datetime]],
        pages: int,
        total: int | None,
        start: datetime,
        end: datetime,
        window: str,
        counters: _Counters,
    ) -> FetchResult:
        """Keep the newest version of each id, then drop what falls outside [start, end)."""
        newest: dict[int, tuple[dict, datetime]] = {}
        for record, updated in received:
            kept = newest.get(record["id"])
            if kept is None or updated >= kept[1]:
                newest[record["id"]] = (record, updated)
        duplicates = len(received) - len(newest)
        inside = [
            record for _, (record, updated) in sorted(newest.items()) if start <= updated < end
        ]
        outside = len(newest) - len(inside)
        if total is not None and total not in (len(received), len(newest)):
            self._log.warning(
                f"UJET said total {total} for the window {window} but {len(received)} records "
                f"arrived ({len(newest)} distinct ids); records may have changed while paging, "
                "or the API's count is off"
            )
        self._log.info(
            f"UJET window {window}: {pages} pages, {len(received)} records received, "
            f"{duplicates} duplicates dropped, {outside} outside the window, {len(inside)} kept"
        )
        return FetchResult(
            records=inside,
            pages=pages,
            total=total,
            received=len(received),
            duplicates_dropped=duplicates,
            requests=counters.requests,
            retries=counters.retries,
            throttled=counters.throttled,
            outside_window=outside,
        )

    def _get(
        self,
        url: str,
        params: dict[str, str | int] | None,
        page: int,
        window: str,
        counters: _Counters,
    ) -> requests.Response:
        """One page, paced and retried; returns only a 2xx response, raises on anything else."""
        attempt = 0
        while True:
            self._pacer.wait()
            counters.requests += 1
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
                    f"TLS with {self._host} failed on page {page} of the window {window} "
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
                    f"Request for UJET page {page} of the window {window} could not be sent "
                    f"({type(exc).__name__}): check UJET_BASE_URL"
                ) from None
            else:
                status = response.status_code
                if status == 429:
                    counters.throttled += 1
                    cause, answered = _status_text(status), True
                    delay = self._retry_after(response, attempt)
                elif status >= 500:
                    cause, answered = _status_text(status), True
                    delay = self._backoff(attempt)
                elif 200 <= status < 300:
                    return response
                else:
                    self._raise_for_client_error(status, page, window)

            if attempt >= self._max_retries:
                raise UjetUnavailableError(
                    f"UJET page {page} of the window {window} still failed after "
                    f"{self._max_retries} retries; last cause: {cause}. Check UJET's status, "
                    "or lower requests_per_second / raise max_retries"
                )
            attempt += 1
            counters.retries += 1
            what = f"answered {cause}" if answered else f"request failed with {cause}"
            self._log.warning(
                f"UJET {what}; waiting {delay:.1f} s "
                f"(retry {attempt} of {self._max_retries}, page {page})"
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
        self, response: requests.Response, page: int, window: str
    ) -> list[tuple[dict, datetime]]:
        """Records of one page with parsed updated_at; raises without quoting the body."""
        if response.status_code == 204 or not response.content:
            if response.status_code == 204:
                return []
            body: Any = None
        else:
            try:
                # PostgreSQL text cannot hold NUL characters: drop them before anything else.
                content = response.content.replace(b"\\u0000", b"")
                body = json.loads(content, parse_constant=_no_constant)
            except ValueError:
                # from None: JSONDecodeError keeps the whole body in .doc.
                content_type = response.headers.get("content-type", "unknown").split(";")[0]
                raise UjetResponseError(
                    f"UJET page {page} of the window {window} was not JSON (content type "
                    f"{content_type[:60]!r}): check UJET_BASE_URL points at the Manager API"
                ) from None
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            got = "an array holding non-objects" if isinstance(body, list) else _json_kind(body)
            raise UjetResponseError(
                f"UJET page {page} of the window {window} was not a JSON array of chat objects "
                f"(got {got}): check UJET_BASE_URL points at the Manager API"
            )
        parsed: list[tuple[dict, datetime]] = []
        bad = 0
        for record in body:
            record_id = _normalise_id(record.get("id"))
            updated = _parse_time(record.get("updated_at"))
            if record_id is None or updated is None:
                bad += 1
                continue
            record["id"] = record_id
            # One canonical form, so every later reader parses the same instant the same way.
            record["updated_at"] = updated.isoformat().replace("+00:00", "Z")
            parsed.append((record, updated))
        if bad:
            raise UjetResponseError(
                f"UJET page {page} of the window {window} had {bad} of {len(body)} records "
                "without an integer id or a readable updated_at; the API's format may have changed"
            )
        return parsed
