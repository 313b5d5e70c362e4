"""A local HTTP server speaking UJET's `GET /manager/api/v1/chats` protocol.

Why: the client, the pipeline and the benchmarks must be exercised against real sockets (Basic
auth, paging headers, absolute `link` URLs, 429/5xx, dropped connections, slow answers, bad
bodies) without a UJET account. Stdlib only, so it starts anywhere the package imports.

Run it standalone: ``python -m chat_assets.source.emulator --port 8765 [--rps 1]``.
"""

import argparse
import base64
import binascii
import contextlib
import hmac
import json
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from chat_assets.source import demo_data

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
# Generated windows are capped so a careless query cannot make the emulator build millions of keys.
MAX_GENERATED_VERSIONS = 3_000_000
RATE_GRACE_SECONDS = 0.1  # loopback jitter allowance for a client paced exactly at the limit
_CACHE_SIZE = 8


@dataclass(frozen=True, slots=True)
class RequestLog:
    """One request as the emulator saw it (never the Authorization header or any record)."""

    method: str
    path: str
    query: dict[str, str]  # last value per key, brackets decoded: {"updated_at[from]": ...}
    status: int  # 0 when the connection was dropped without an answer
    time: float  # time.monotonic() when the request arrived
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class _Fault:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


class _Row(NamedTuple):
    """A sortable stand-in for a record; generated records are built only when served."""

    id_key: tuple[int, Any]
    updated_us: int | None
    created_us: int | None
    source: demo_data.ChatVersionKey | dict[str, Any]


class _BadRequest(Exception):
    """A query parameter the emulator refuses, answered with 400."""


class _TokenBucket:
    """Requests-per-second limit with a one-second burst, like the vendor's ~1 rps limit."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.grace = RATE_GRACE_SECONDS * rate
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1.0 - self.grace:
                return False
            self.tokens -= 1.0
            return True


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


def _record_instant(record: dict[str, Any], name: str) -> int | None:
    """A served record's timestamp as epoch microseconds, or None when absent or unreadable."""
    value = record.get(name)
    if not isinstance(value, str):
        return None
    try:
        return _parse_instant(name, value)
    except (_BadRequest, ValueError):
        return None


def _id_key(value: Any) -> tuple[int, Any]:
    """Ids sort numerically when numeric; anything else after them, as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _rows_from_records(records: list[dict[str, Any]]) -> list[_Row]:
    return [
        _Row(
            _id_key(record.get("id")),
            _record_instant(record, "updated_at"),
            _record_instant(record, "created_at"),
            record,
        )
        for record in records
    ]


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


def _instant(value: int | None) -> tuple[int, int]:
    """Missing instants sort first instead of breaking the comparison."""
    return (0, 0) if value is None else (1, value)


def _by_updated(row: _Row) -> tuple[Any, ...]:
    return (_instant(row.updated_us), row.id_key)


def _by_created(row: _Row) -> tuple[Any, ...]:
    return (_instant(row.created_us), row.id_key)


def _by_id(row: _Row) -> tuple[Any, ...]:
    return (row.id_key, _instant(row.updated_us))


_SORT_KEYS: dict[str, Callable[[_Row], tuple[Any, ...]]] = {
    "id": _by_id,
    "updated_at": _by_updated,
    "created_at": _by_created,
}


def _filter_rows(rows: list[_Row], from_us: int | None, to_us: int | None) -> list[_Row]:
    """Inclusive updated_at bounds; without bounds every given record is served."""
    if from_us is None and to_us is None:
        return rows
    low = -(2**63) if from_us is None else from_us
    high = 2**63 if to_us is None else to_us
    return [row for row in rows if row.updated_us is not None and low <= row.updated_us <= high]


def _sort_rows(rows: list[_Row], column: str, descending: bool) -> list[_Row]:
    """Sort with the id as tie-breaker, so pages are stable between requests."""
    return sorted(rows, key=_SORT_KEYS[column], reverse=descending)


class _Server(ThreadingHTTPServer):
    """Threads per connection; tracks open sockets so stop() can end idle keep-alives."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: "UjetEmulator") -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

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
    server_version = "UjetEmulator/1.0"
    timeout = 60  # idle keep-alive connections are closed after a minute

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

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


class UjetEmulator:
    """A real HTTP server imitating UJET's chats endpoint, with injectable faults.

    Data are the records given (``records`` / ``serve_records``) or else the deterministic demo
    chats of ``demo_data`` for the requested ``updated_at`` window.
    """

    def __init__(
        self,
        *,
        company_key: str = "demo-key",
        company_secret: str = "demo-secret",
        chats_per_day: int = 48,
        requests_per_second: float | None = None,
        records: list[dict[str, Any]] | None = None,
        link_header: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.company_key = company_key
        self.company_secret = company_secret
        self.chats_per_day = chats_per_day
        self.requests_per_second = requests_per_second
        self.link_header = link_header
        self.host = host
        self.port = port
        self.requests: list[RequestLog] = []
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._bucket = None if requests_per_second is None else _TokenBucket(requests_per_second)
        self._record_rows: list[_Row] | None = None
        self._generation = 0  # bumped by serve_records so cached pages never go stale
        self._sorted_cache: OrderedDict[tuple[Any, ...], list[_Row]] = OrderedDict()
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

    def start(self) -> "UjetEmulator":
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

    def __enter__(self) -> "UjetEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Control ---------------------------------------------------------------------------------

    def inject(self, fault: str, count: int = 1, **options: Any) -> None:
        """Queue `count` faults; each is consumed, in order, by the next chats request.

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

    def serve_records(self, records: list[dict[str, Any]]) -> None:
        """Serve exactly these records (filtered, sorted and paged) instead of generated data."""
        rows = _rows_from_records(list(records))
        with self._lock:
            self._record_rows = rows
            self._generation += 1
            self._sorted_cache.clear()

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
        arrived = time.monotonic()
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        reply = _Reply(self, handler, path, query, arrived)
        if self._bucket is not None and not self._bucket.take():
            reply.send(429, _error("Too Many Requests"), {"Retry-After": "1"})
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

    def _serve_fault(self, fault: _Fault, reply: "_Reply") -> bool:
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

    def _generated_window(self, query: _Query) -> tuple[int, int]:
        """Bounds for generated data: missing ones default to the last 24 hours, never open."""
        to_us = query.to_us
        if to_us is None:
            to_us = demo_data.to_epoch_us(datetime.now(UTC))
        from_us = query.from_us
        if from_us is None:
            from_us = to_us - 86_400_000_000
        days = max(0, to_us - from_us) // 86_400_000_000 + 2
        if days * self.chats_per_day * (1 + demo_data.REOPEN_SHARE) > MAX_GENERATED_VERSIONS:
            raise _BadRequest(
                "updated_at window too large for the emulator's generated data; "
                "narrow updated_at[from]/updated_at[to]"
            )
        return from_us, to_us

    def _sorted_rows(self, query: _Query) -> list[_Row]:
        """The window's rows in the requested order, cached so paging does not redo the work."""
        with self._lock:
            record_rows, generation = self._record_rows, self._generation
        generated = self._generated_window(query) if record_rows is None else None
        window = generated or (query.from_us, query.to_us)
        cache_key = (generation, window, query.sort_column, query.descending)
        with self._lock:
            cached = self._sorted_cache.get(cache_key)
            if cached is not None:
                self._sorted_cache.move_to_end(cache_key)
                return cached
        if generated is not None:
            rows = self._generated_rows(*generated)
        else:
            rows = _filter_rows(record_rows or [], query.from_us, query.to_us)
        rows = _sort_rows(rows, query.sort_column, query.descending)
        with self._lock:
            self._sorted_cache[cache_key] = rows
            while len(self._sorted_cache) > _CACHE_SIZE:
                self._sorted_cache.popitem(last=False)
        return rows

    def _generated_rows(self, from_us: int, to_us: int) -> list[_Row]:
        """Keys only: records are built when their page is served."""
        if from_us > to_us:
            return []
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        keys = demo_data.chat_version_keys(
            epoch + timedelta(microseconds=from_us),
            epoch + timedelta(microseconds=to_us),
            self.chats_per_day,
        )
        return [
            _Row((0, key.chat_id), key.updated_ms * 1000, key.created_ms * 1000, key)
            for key in keys
        ]

    def _chats(
        self, handler: _Handler, query: _Query, fault: _Fault | None
    ) -> tuple[bytes, dict[str, str]]:
        """Filter, sort and page; headers carry total, per-page and the next page's link."""
        rows = self._sorted_rows(query)
        total = len(rows)
        start = (query.page - 1) * query.per
        page_rows = rows[start : start + query.per]
        if fault is not None and fault.name == "overlap" and 0 < start <= total:
            page_rows = [rows[start - 1], *page_rows]
        records = [
            row.source if isinstance(row.source, dict) else demo_data.build_chat(row.source)
            for row in page_rows
        ]
        body = json.dumps(records, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        shown_total = total
        if fault is not None and fault.name == "wrong_total":
            shown_total = max(0, total + int(fault.options.get("delta", 5)))
        headers = {"total": str(shown_total), "per-page": str(query.per)}
        if self.link_header and start + query.per < total:
            pairs = [(k, v) for k, v in query.pairs if k != "page"]
            pairs.append(("page", str(query.page + 1)))
            host = self._public_host(handler.headers.get("Host"))
            url = f"http://{host}:{self.port}{CHATS_PATH}?{urlencode(pairs)}"
            headers["link"] = f'<{url}>; rel="next"'
        return body, headers


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
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rps", type=float, default=None, help="requests per second limit")
    parser.add_argument("--chats-per-day", type=int, default=48)
    parser.add_argument("--no-link", action="store_true", help="omit the link header")
    args = parser.parse_args(argv)
    emulator = UjetEmulator(
        chats_per_day=args.chats_per_day,
        requests_per_second=args.rps,
        link_header=not args.no_link,
        host=args.host,
        port=args.port,
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


if __name__ == "__main__":
    main()
