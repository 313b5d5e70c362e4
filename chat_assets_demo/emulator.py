"""A local HTTP server speaking UJET's `GET /manager/api/v1/chats` protocol, as documented.

Written from the vendor's documents and the RFCs (see ``../shared/ujet-api.md``), never from our
client: HTTP Basic auth, `page`/`per` paging, `sort_column`/`sort_direction`, inclusive
`updated_at[from]`/`[to]` filters, `total` and `per-page` headers, and, where a deployment sends
one, an RFC 8288 `Link` list. Each behaviour the documents allow is a *personality*
(`PERSONALITIES`), so a client can be tested against all of them:

- `rfc8288`: `<…>; rel="first", <…>; rel="prev", <…>; rel="next", <…>; rel="last"`, in any order;
- `no_link`: no `Link` header at all, only `total` ("doesn't explicitly indicate more records");
- `lone_next`: a `Link` header holding only `rel="next"`;
- `header_case`: the same headers with names in other cases (names are case-insensitive);
- `updated_mid_read`: a chat already served is updated while the window is read, so it moves to
  the end of an `updated_at` ordering and every later chat shifts up one place;
- `strict_5` / `strict_10`: a limiter with a burst of one: two requests arriving closer than
  1/rate apart draw a 429 with `Retry-After`;
- `shared_budget`: the tenant's 10 requests/s shared with another integration that takes 20%;
- `storm`: that other integration bursts now and then and drains the budget: 429 storms;
- `slow_strict_10`: a real API's time to answer, 0.4 s a page once admitted, behind a strict
  10/s limiter: requests are in flight together, and a client that waits for each answer
  before sending the next uses a fraction of its budget. (`latency=` gives any personality a
  time to answer.)

Run it standalone: ``python -m chat_assets_demo.emulator --port 8765 [--personality NAME]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import hmac
import json
import math
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from chat_assets.plural import counted
from chat_assets_demo import demo_data

API_PREFIX = "/manager/api/v1"
CHATS_PATH = f"{API_PREFIX}/chats"
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 100
SORT_COLUMNS = ("id", "updated_at", "created_at")
FAULTS = (
    "429",
    "500",
    "502",
    "503",
    "drop",
    "slow",
    "malformed",
    "not_array",
    "wrong_total",
    "overlap",
)
# Linux's socket option for receive times in nanoseconds (Python's socket module lacks the name).
_SO_TIMESTAMPNS = 35
# Generated windows are capped so a careless query cannot make the emulator build millions of keys.
MAX_GENERATED_VERSIONS = 3_000_000
# Generated spans kept for the requests after theirs (each two days), up to a million versions.
KEPT_SPANS = 8
KEPT_VERSIONS = 1_000_000


@dataclass(frozen=True)
class Personality:
    """One documented way a UJET deployment may answer."""

    name: str
    links: str = "rfc8288"  # rfc8288 | lone_next | none
    header_names: tuple[str, str, str] = ("Total", "Per-Page", "Link")
    strict_rate: float | None = None  # burst-1 limiter, requests per second
    budget_rate: float | None = None  # token bucket with a one-second burst
    other_share: float = 0.0  # share of budget_rate taken steadily by another integration
    storm_every: float | None = None  # seconds between the other integration's bursts
    updates_mid_read: int = 0  # chats updated while the window is read (one per answer)
    latency: float = 0.0  # seconds each admitted request takes to answer


PERSONALITIES: dict[str, Personality] = {
    p.name: p
    for p in (
        Personality("rfc8288"),
        Personality("no_link", links="none"),
        Personality("lone_next", links="lone_next", header_names=("total", "per-page", "link")),
        Personality("header_case", header_names=("TOTAL", "pEr-PaGe", "LINK")),
        Personality("updated_mid_read", updates_mid_read=3),
        Personality("strict_5", strict_rate=5.0),
        Personality("strict_10", strict_rate=10.0),
        Personality("shared_budget", budget_rate=10.0, other_share=0.2),
        Personality("storm", budget_rate=10.0, other_share=0.2, storm_every=3.0),
        Personality("slow_strict_10", strict_rate=10.0, latency=0.4),
    )
}


class StoredChat(NamedTuple):
    """A chat as the server's database holds it: the instant it filters and sorts on, and the
    body it sends. Lets a test serve a body whose own `updated_at` is broken on the wire."""

    updated_at: datetime
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestLog:
    """One request as the emulator saw it (never the Authorization header or any record)."""

    method: str
    path: str
    query: dict[str, str]  # last value per key, brackets decoded: {"updated_at[from]": ...}
    status: int  # 0 when the connection was dropped without an answer
    time: float  # time.monotonic() when the request line arrived
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class _Fault:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


class _BadRequest(Exception):
    """A query parameter the emulator refuses, answered with 400."""


class _StrictLimiter:
    """Burst of one: a request is refused when it arrives sooner than 1/rate after, or before,
    an accepted one. Refused requests do not count against the next. Requests are judged by
    when they arrived, though their threads may come to judge them in another order."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.accepted: list[float] = []  # arrival times, in order, of the last few seconds
        self.lock = threading.Lock()

    def admit(self, now: float) -> float | None:
        """None when admitted, else the seconds until a request would be."""
        with self.lock:
            del self.accepted[: bisect.bisect_left(self.accepted, now - 10 * self.interval)]
            at = bisect.bisect_left(self.accepted, now)
            before = self.accepted[at - 1] if at else -math.inf
            after = self.accepted[at] if at < len(self.accepted) else math.inf
            if after - now < self.interval:
                return after + self.interval - now
            if now - before < self.interval:
                return before + self.interval - now
            self.accepted.insert(at, now)
            return None


class _SharedBudget:
    """A token bucket of `rate` per second with a one-second burst, drawn on by someone else too:
    steadily (`other_share` of the rate) and, with `storm_every`, in bursts that empty it."""

    def __init__(self, rate: float, other_share: float, storm_every: float | None) -> None:
        self.rate = rate
        self.other = rate * other_share
        self.storm_every = storm_every
        self.tokens = rate
        self.stamp = time.monotonic()
        self.origin = self.stamp
        self.lock = threading.Lock()

    def admit(self, now: float) -> float | None:
        with self.lock:
            elapsed = max(0.0, now - self.stamp)
            if (
                self.storm_every
                and (now - self.origin) // self.storm_every
                != (self.stamp - self.origin) // self.storm_every
            ):
                self.tokens = 0.0  # the other integration's burst has spent the budget
            self.tokens = min(self.rate, self.tokens + elapsed * (self.rate - self.other))
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return None
            return (1.0 - self.tokens) / (self.rate - self.other)


def _parse_instant(name: str, value: str) -> int:
    """ISO-8601 (Z or offset; naive means UTC) -> epoch microseconds."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise _BadRequest(
            f"{name} must be an ISO-8601 time such as 2024-01-31T00:00:00Z (encode '+' as %2B)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return demo_data.to_epoch_us(moment)


def _parse_positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise _BadRequest(f"{name} must be a positive integer") from exc
    if number < 1:
        raise _BadRequest(f"{name} must be a positive integer")
    return number


def _wire_instant(record: dict[str, Any], name: str) -> int | None:
    """A body's timestamp as epoch microseconds, or None when absent or unreadable."""
    value = record.get(name)
    if not isinstance(value, str):
        return None
    try:
        return _parse_instant(name, value)
    except _BadRequest:
        return None


def _id_key(value: Any) -> tuple[int, Any]:
    """Ids sort numerically when numeric; anything else after them, as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


class _Row:
    """One stored chat: sort keys plus its body (or the key to build a generated one from)."""

    __slots__ = ("created_us", "encoded", "id_key", "source", "updated_us")

    def __init__(
        self,
        id_key: tuple[int, Any],
        updated_us: int | None,
        created_us: int | None,
        source: demo_data.ChatVersionKey | dict[str, Any],
    ) -> None:
        self.id_key = id_key
        self.updated_us = updated_us
        self.created_us = created_us
        self.source = source
        self.encoded: bytes | None = None  # a generated body built ahead (`prepare`)

    def body(self) -> dict[str, Any]:
        if isinstance(self.source, dict):
            return self.source
        return demo_data.build_chat(self.source)

    def wire(self) -> bytes:
        """The body as it goes out in a page's list."""
        return _encode(self.body()) if self.encoded is None else self.encoded

    def sort_key(self, column: str) -> tuple[Any, ...]:
        """The column's value first (missing ones first), the id as the tie-break."""
        if column == "id":
            return (self.id_key,)
        value = self.updated_us if column == "updated_at" else self.created_us
        return ((0, 0) if value is None else (1, value), self.id_key)


def _stored_row(item: dict[str, Any] | StoredChat) -> _Row:
    if isinstance(item, StoredChat):
        body = item.body
        updated = demo_data.to_epoch_us(item.updated_at)
    else:
        body, updated = item, _wire_instant(item, "updated_at")
    return _Row(_id_key(body.get("id")), updated, _wire_instant(body, "created_at"), body)


class _Query(NamedTuple):
    page: int
    per: int
    sort_column: str
    descending: bool
    from_us: int | None
    to_us: int | None
    pairs: list[tuple[str, str]]


def _parse_query(raw: str) -> _Query:
    pairs = parse_qsl(raw, keep_blank_values=True)
    values = dict(pairs)
    page = _parse_positive_int("page", values.get("page", "1"))
    per = min(_parse_positive_int("per", values.get("per", str(DEFAULT_PER_PAGE))), MAX_PER_PAGE)
    sort_column = values.get("sort_column", "id")
    if sort_column not in SORT_COLUMNS:
        raise _BadRequest(f"sort_column must be one of {', '.join(SORT_COLUMNS)}")
    direction = values.get("sort_direction", "ASC").upper()
    if direction not in ("ASC", "DESC"):
        raise _BadRequest("sort_direction must be ASC or DESC")
    from_raw = values.get("updated_at[from]")
    to_raw = values.get("updated_at[to]")
    from_us = None if from_raw is None else _parse_instant("updated_at[from]", from_raw)
    to_us = None if to_raw is None else _parse_instant("updated_at[to]", to_raw)
    return _Query(page, per, sort_column, direction == "DESC", from_us, to_us, pairs)


def _in_bounds(row: _Row, from_us: int | None, to_us: int | None) -> bool:
    """Both bounds inclusive; a chat without an updated_at never matches a bound."""
    if from_us is None and to_us is None:
        return True
    if row.updated_us is None:
        return False
    return (from_us is None or row.updated_us >= from_us) and (
        to_us is None or row.updated_us <= to_us
    )


def _encode(value: Any) -> bytes:
    """UTF-8 JSON; a lone surrogate goes out as its `\\uXXXX` escape, as JSON allows."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", "backslashreplace")


class _Server(ThreadingHTTPServer):
    """Threads per connection; tracks open sockets so stop() can end idle keep-alives."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: UjetEmulator) -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Receive times stamped by the kernel on every connection from its first byte on (the
        option passes from the listening socket to those it accepts)."""
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up; report other errors by type only."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        print(f"ujet emulator: {type(exc).__name__} while serving", file=sys.stderr)

    def close_open_sockets(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One connection; routes to the emulator and writes the answer."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its load balancer
    server_version = "UjetEmulator/2.0"
    timeout = 60  # idle keep-alive connections are closed after a minute
    arrived = 0.0

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)
        self.kernel_stamps = sys.platform == "linux"

    def handle_one_request(self) -> None:
        try:
            self.arrived = self._arrival()
        except TimeoutError:
            self.close_connection = True
            return
        super().handle_one_request()

    def _arrival(self) -> float:
        """When the next request's first bytes reached this machine, on the monotonic clock.

        A limiter stamps each request as it arrives. A thread of this server can look at the
        clock only once it holds the interpreter, which another thread encoding a page keeps for
        milliseconds while requests overlap: so the kernel's receive time of the waiting bytes
        is read (SO_TIMESTAMPNS, peeking, nothing consumed), where the kernel offers one."""
        if not self.kernel_stamps:
            return time.monotonic()
        _, ancillary, _, _ = self.connection.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                return time.monotonic() - (time.time() - seconds - nanoseconds / 1e9)
        return time.monotonic()

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default access log would be noise and could leak query details."""

    def do_GET(self) -> None:
        self.server.emulator._handle(self)

    def _other_method(self) -> None:
        """Only GET exists; drain any body so the keep-alive connection stays usable."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.emulator._handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = _other_method

    def send_body(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def drop(self) -> None:
        """Hang up without a byte of response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _Generated:
    """One span of generated chat versions, in (updated_at, id) order, each with when its chat's
    next version is updated.

    UJET holds one record per chat: of a chat's versions in a window, the newest answers. That
    is the chat's newest version up to the upper bound, when it lies within the lower bound
    (if it does not, no older one does): the versions in the window whose next version comes
    after the upper bound. Any window within the span is answered from it, so lanes reading
    slices of a day cost the server no more than one reader."""

    def __init__(self, span: tuple[int, int], rows: list[_Row]) -> None:
        self.span = span
        self.rows = rows
        self.updated = [row.updated_us or 0 for row in rows]
        self.next_us = [math.inf] * len(rows)
        later: dict[tuple[int, Any], int] = {}
        for at in range(len(rows) - 1, -1, -1):
            key = rows[at].id_key
            self.next_us[at] = later.get(key, math.inf)
            later[key] = self.updated[at]

    def covers(self, span: tuple[int, int]) -> bool:
        return self.span[0] <= span[0] and span[1] <= self.span[1]

    def newest_within(self, from_us: int, to_us: int) -> list[_Row]:
        """The newest version up to to_us of each chat that has one in [from_us, to_us], in
        updated_at order."""
        low = bisect.bisect_left(self.updated, from_us)
        high = bisect.bisect_right(self.updated, to_us)
        rows, next_us = self.rows, self.next_us
        return [rows[at] for at in range(low, high) if next_us[at] > to_us]


class UjetEmulator:
    """A real HTTP server imitating UJET's chats endpoint, with a personality and faults.

    Data are the chats given (``records`` / ``serve_records``) or else the deterministic demo
    chats of ``demo_data`` for the requested ``updated_at`` window, each chat once in its newest
    version there. Their daily and weekly rhythm follows local time in ``timezone``
    (``seasonal=False``: exactly ``chats_per_day`` new chats a day).
    """

    def __init__(
        self,
        *,
        company_key: str = "demo-key",
        company_secret: str = "demo-secret",
        chats_per_day: int = 48,
        timezone: str = "UTC",
        seasonal: bool = True,
        personality: str | Personality = "rfc8288",
        records: Iterable[dict[str, Any] | StoredChat] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float | None = None,
    ) -> None:
        if isinstance(personality, str):
            if personality not in PERSONALITIES:
                raise ValueError(
                    f"unknown personality {personality!r}; one of {', '.join(PERSONALITIES)}"
                )
            personality = PERSONALITIES[personality]
        if latency is not None:
            personality = replace(personality, latency=latency)
        self.personality = personality
        self.company_key = company_key
        self.company_secret = company_secret
        self.chats_per_day = chats_per_day
        self.timezone = timezone
        self.seasonal = seasonal
        self.host = host
        self.port = port
        self.requests: list[RequestLog] = []
        self.updated_ids: list[Any] = []  # chats the `updated_mid_read` personality moved
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._limiter: _StrictLimiter | _SharedBudget | None = None
        if personality.strict_rate:
            self._limiter = _StrictLimiter(personality.strict_rate)
        elif personality.budget_rate:
            self._limiter = _SharedBudget(
                personality.budget_rate, personality.other_share, personality.storm_every
            )
        self._rows: list[_Row] | None = None
        self._served: set[tuple[int, Any]] = set()
        self._horizon = -1  # the highest updated_at[to] asked for, as epoch microseconds
        # The spans generated last, newest first: the days of a backfill are read at once.
        self._generated: list[_Generated] = []
        self.generations = 0  # spans generated so far
        self._generating = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if records is not None:
            self.serve_records(records)

    # Lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root clients are configured with, e.g. http://127.0.0.1:8765/manager/api/v1."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self._public_host(None)}:{self.port}{API_PREFIX}"

    def start(self) -> UjetEmulator:
        """Bind and serve in a daemon thread (port 0 picks a free port)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ujet-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end open connections and free the port; quick even mid-'slow'."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_open_sockets()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> UjetEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Control ---------------------------------------------------------------------------------

    def inject(self, fault: str, count: int = 1, **options: Any) -> None:
        """Queue `count` faults; each is consumed, in order, by the next admitted chats request.

        Options: ``retry_after`` (429, 503), ``seconds`` (slow), ``delta`` (wrong_total).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        allowed = {"429": {"retry_after"}, "503": {"retry_after"}, "slow": {"seconds"}}
        allowed["wrong_total"] = {"delta"}
        unknown = set(options) - allowed.get(fault, set())
        if unknown:
            raise ValueError(f"fault {fault!r} takes no option(s) {', '.join(sorted(unknown))}")
        with self._lock:
            self._faults.extend(_Fault(fault, dict(options)) for _ in range(count))

    def pending_faults(self) -> int:
        """How many injected faults have not been served yet."""
        with self._lock:
            return len(self._faults)

    def prepare(self, start: datetime, end: datetime) -> int:
        """Generate the demo chats of the window [start, end] and build every version's body
        now, so that serving the window later costs no more than joining prepared bytes (UJET's
        servers do not share the client's cores). Returns the versions prepared."""
        if self._rows is not None:
            raise ValueError("prepare() is for generated demo chats, not served records")
        generated = self._generated_span(demo_data.to_epoch_us(start), demo_data.to_epoch_us(end))
        for row in generated.rows:
            if row.encoded is None:
                row.encoded = row.wire()
        return len(generated.rows)

    def serve_records(self, records: Iterable[dict[str, Any] | StoredChat]) -> None:
        """Serve exactly these chats (filtered, sorted and paged) instead of generated data."""
        rows = [_stored_row(item) for item in records]
        with self._lock:
            self._rows = rows
            self._served.clear()

    def stored(self) -> list[dict[str, Any]]:
        """The served chats as they are now (after any update mid-read)."""
        with self._lock:
            return [row.body() for row in self._rows or []]

    def summary(self) -> str:
        """One line on the chats requests served: counts, 429s, and the rate they came at."""
        with self._lock:
            served = [r for r in self.requests if r.path == CHATS_PATH]
        throttled = sum(r.status == 429 for r in served)
        span = served[-1].time - served[0].time if len(served) > 1 else 0.0
        rate = (len(served) - 1) / span if span > 0 else 0.0
        return (
            f"emulator: {counted(len(served), 'request')} for chats, {throttled} answered 429;"
            f" {rate:.3f} a second over {span:.1f} s"
        )

    # Request handling ------------------------------------------------------------------------

    def _public_host(self, host_header: str | None) -> str:
        """Host for absolute URLs: the listening address, or the Host header for 0.0.0.0."""
        if self.host in ("", "0.0.0.0"):
            if host_header:
                return urlsplit(f"//{host_header}").hostname or "127.0.0.1"
            return "127.0.0.1"
        return self.host

    def _handle(self, handler: _Handler) -> None:
        """Rate limit, then an injected fault, then auth, routing and the chats answer."""
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        reply = _Reply(self, handler, path, query, handler.arrived)
        if self._limiter is not None:
            wait = self._limiter.admit(handler.arrived)
            if wait is not None:
                retry = str(max(1, math.ceil(wait)))
                reply.send(429, _error("Too Many Requests"), {"Retry-After": retry})
                return
        # Admitted: the time a real API takes to answer, while other requests are let in.
        if self.personality.latency and self._stopping.wait(self.personality.latency):
            reply.hang_up()
            return
        is_chats = path == CHATS_PATH and handler.command == "GET"
        fault: _Fault | None = None
        if is_chats:
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            reply.fault = None if fault is None else fault.name
        if fault is not None and self._serve_fault(fault, reply):
            return
        if not self._auth_ok(handler.headers.get("Authorization")):
            reply.send(
                401,
                _error("Unauthorized: invalid company key or secret"),
                {"WWW-Authenticate": 'Basic realm="UJET"'},
            )
            return
        if not is_chats:
            reply.send(404, _error(f"Not found: {handler.command} {path}"))
            return
        try:
            parsed = _parse_query(split.query)
            body, headers = self._chats(handler, parsed, fault)
        except _BadRequest as exc:
            reply.send(400, _error(str(exc)))
            return
        except Exception as exc:  # a bug here must still answer, like a real 500
            print(f"ujet emulator: {type(exc).__name__} building a page", file=sys.stderr)
            reply.send(500, _error("Internal Server Error"))
            return
        reply.send(200, body, headers)
        self._update_mid_read(parsed.to_us)

    def _auth_ok(self, header: str | None) -> bool:
        """Constant-time check of HTTP Basic credentials."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        key, _, secret = decoded.partition(":")
        key_ok = hmac.compare_digest(key.encode(), self.company_key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self.company_secret.encode())
        return key_ok and secret_ok

    def _serve_fault(self, fault: _Fault, reply: _Reply) -> bool:
        """Serve a fault that replaces the answer; False when normal handling should go on."""
        name, options = fault.name, fault.options
        if name == "429":
            retry = str(int(options.get("retry_after", 1)))
            reply.send(429, _error("Too Many Requests"), {"Retry-After": retry})
        elif name == "500":
            reply.send(500, _error("Internal Server Error"))
        elif name == "502":
            html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            reply.send(502, html, content_type="text/html")
        elif name == "503":
            headers = {}
            if "retry_after" in options:
                headers["Retry-After"] = str(int(options["retry_after"]))
            reply.send(503, _error("Service Unavailable"), headers)
        elif name == "drop":
            reply.hang_up()
        elif name == "slow":
            if self._stopping.wait(float(options.get("seconds", 3.0))):
                reply.hang_up()
                return True
            return False
        elif name == "malformed":
            reply.send(200, b'[{"id": 1, "status": "finished", "created_at": "2019-07-17T07:2')
        elif name == "not_array":
            reply.send(200, _error("unexpected upstream response"))
        else:  # wrong_total, overlap: applied while building the normal answer
            return False
        return True

    def _window_rows(self, query: _Query) -> list[_Row]:
        """The rows matching the query's bounds: the stored chats, or the generated window."""
        with self._lock:
            rows = self._rows
            if rows is not None:
                return [row for row in rows if _in_bounds(row, query.from_us, query.to_us)]
        to_us = query.to_us
        if to_us is None:
            to_us = demo_data.to_epoch_us(datetime.now(UTC))
        from_us = query.from_us if query.from_us is not None else to_us - 86_400_000_000
        days = max(0, to_us - from_us) // 86_400_000_000 + 2
        if days * self.chats_per_day * (1 + demo_data.REOPEN_SHARE) > MAX_GENERATED_VERSIONS:
            raise _BadRequest(
                "updated_at window too large for the emulator's generated data; "
                "narrow updated_at[from]/updated_at[to]"
            )
        return self._generated_rows(from_us, to_us)

    def _generated_rows(self, from_us: int, to_us: int) -> list[_Row]:
        """Keys only (records are built when their page is served)."""
        return self._generated_span(from_us, to_us).newest_within(from_us, to_us)

    def _generated_span(self, from_us: int, to_us: int) -> _Generated:
        """The whole days around [from_us, to_us], generated or kept. The spans generated last
        are kept, since a client reads one window in many requests, of slices of it, and a
        backfill reads several days' windows at once."""
        day_us = 86_400_000_000
        span = (from_us // day_us * day_us, (to_us // day_us + 1) * day_us)
        with self._generating:  # one thread generates; the others wait for its rows
            with self._lock:
                cached = next((g for g in self._generated if g.covers(span)), None)
            if cached is None:
                cached = self._generate(span)
        return cached

    def _generate(self, span: tuple[int, int]) -> _Generated:
        """The chat versions of whole days [span), kept for the requests after this one."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        keys = demo_data.chat_version_keys(
            epoch + timedelta(microseconds=span[0]),
            epoch + timedelta(microseconds=span[1] - 1),
            self.chats_per_day,
            timezone=self.timezone,
            seasonal=self.seasonal,
        )
        rows = [
            _Row((0, key.chat_id), key.updated_ms * 1000, key.created_ms * 1000, key)
            for key in keys
        ]
        generated = _Generated(span, rows)
        with self._lock:
            self.generations += 1
            kept, size = [generated], len(rows)
            for older in self._generated:
                if len(kept) == KEPT_SPANS or size + len(older.rows) > KEPT_VERSIONS:
                    break
                kept.append(older)
                size += len(older.rows)
            self._generated = kept
        return generated

    def _chats(
        self, handler: _Handler, query: _Query, fault: _Fault | None
    ) -> tuple[bytes, dict[str, str]]:
        """Filter, sort and page; headers carry total, per-page and, by personality, links."""
        rows = sorted(
            self._window_rows(query),
            key=lambda row: row.sort_key(query.sort_column),
            reverse=query.descending,
        )
        total = len(rows)
        start = (query.page - 1) * query.per
        page_rows = rows[start : start + query.per]
        if fault is not None and fault.name == "overlap" and 0 < start <= total:
            page_rows = [rows[start - 1], *page_rows]
        with self._lock:
            self._served.update(row.id_key for row in page_rows)
        body = b"[" + b",".join(row.wire() for row in page_rows) + b"]"
        shown_total = total
        if fault is not None and fault.name == "wrong_total":
            shown_total = max(0, total + int(fault.options.get("delta", 5)))
        total_name, per_name, link_name = self.personality.header_names
        headers = {total_name: str(shown_total), per_name: str(query.per)}
        link = self._link(handler, query, total)
        if link:
            headers[link_name] = link
        return body, headers

    def _link(self, handler: _Handler, query: _Query, total: int) -> str | None:
        """The RFC 8288 list for this page, shaped by the personality."""
        last = max(1, math.ceil(total / query.per))
        host = self._public_host(handler.headers.get("Host"))
        others = [(k, v) for k, v in query.pairs if k != "page"]

        def target(page: int) -> str:
            return f"http://{host}:{self.port}{CHATS_PATH}?{urlencode([*others, ('page', page)])}"

        rels: list[tuple[str, int]] = []
        if self.personality.links == "rfc8288":
            rels.append(("first", 1))
            if query.page > 1:
                rels.append(("prev", min(query.page - 1, last)))
            if query.page < last:
                rels.append(("next", query.page + 1))
            rels.append(("last", last))
            # Entries come in any order: rotate them by page, so no position can be relied on.
            shift = query.page % len(rels)
            rels = rels[shift:] + rels[:shift]
        elif self.personality.links == "lone_next" and query.page < last:
            rels.append(("next", query.page + 1))
        if not rels:
            return None
        return ", ".join(f'<{target(page)}>; rel="{rel}"' for rel, page in rels)

    def _update_mid_read(self, to_us: int | None) -> None:
        """Personality `updated_mid_read`: after an answer, the earliest-updated chat already
        served is updated, as a chat of a day still being read is: it moves behind every other
        chat of the window in updated_at order (halfway from the newest to the upper bound).
        The window's upper bound is the highest any query asked for: a client reading slices
        of the window side by side asks for parts of it."""
        if len(self.updated_ids) >= self.personality.updates_mid_read:
            return
        with self._lock:
            if to_us is not None:
                self._horizon = to_us = max(to_us, self._horizon)
            rows = self._rows or []
            served = [
                row
                for row in rows
                if row.id_key in self._served
                and row.updated_us is not None
                and row.source.get("id") not in self.updated_ids
            ]
            stamps = [r.updated_us for r in rows if r.updated_us is not None]
            if to_us is not None:
                stamps = [us for us in stamps if us < to_us]
            if not served or not stamps:
                return
            newest = max(stamps)
            moved_to = newest + max(1000, ((to_us or newest) - newest) // 2000 * 1000)
            row = min(served, key=lambda r: r.sort_key("updated_at"))
            row.updated_us = moved_to
            body = dict(row.source)
            body["updated_at"] = demo_data.iso_ms(moved_to // 1000)
            row.source = body
            self.updated_ids.append(body.get("id"))


class _Reply:
    """Sends one answer and logs it first, so a client that has its answer sees the log entry."""

    def __init__(
        self,
        emulator: UjetEmulator,
        handler: _Handler,
        path: str,
        query: dict[str, str],
        arrived: float,
    ) -> None:
        self.emulator = emulator
        self.handler = handler
        self.path = path
        self.query = query
        self.arrived = arrived
        self.fault: str | None = None

    def _log(self, status: int) -> None:
        entry = RequestLog(
            self.handler.command, self.path, self.query, status, self.arrived, self.fault
        )
        with self.emulator._lock:
            self.emulator.requests.append(entry)

    def send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self._log(status)
        self.handler.send_body(status, body, headers, content_type)

    def hang_up(self) -> None:
        self._log(0)
        self.handler.drop()


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description="Local emulator of UJET's chats endpoint")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (8765)")
    parser.add_argument(
        "--personality",
        default="rfc8288",
        choices=sorted(PERSONALITIES),
        help="how the API pages, limits and fails (rfc8288: Link headers, no limit)",
    )
    parser.add_argument(
        "--chats-per-day", type=int, default=48, help="new chats a day, averaged over weeks (48)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        help="seconds to answer each admitted request (the personality's own: none but "
        "slow_strict_10's 0.4)",
    )
    parser.add_argument(
        "--timezone",
        default="UTC",
        help="IANA zone whose local time the demo data's rhythm follows (UTC)",
    )
    parser.add_argument(
        "--seasonal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="weekly and daily rhythm in the volume (on; --no-seasonal: exactly --chats-per-day "
        "a day)",
    )
    args = parser.parse_args(argv)
    emulator = UjetEmulator(
        chats_per_day=args.chats_per_day,
        timezone=args.timezone,
        seasonal=args.seasonal,
        personality=args.personality,
        host=args.host,
        port=args.port,
        latency=args.latency,
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with emulator:
        print(f"UJET emulator at {emulator.base_url}", flush=True)
        print(
            f"company key: {emulator.company_key}  company secret: {emulator.company_secret}",
            flush=True,
        )
        print("Ctrl-C to stop", flush=True)
        done.wait()
    print(emulator.summary(), flush=True)


if __name__ == "__main__":
    main()
