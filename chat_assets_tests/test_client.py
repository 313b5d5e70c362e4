"""UjetClient against the UJET emulator: a real HTTP server on 127.0.0.1 speaking the protocol.

Backoffs are shrunk (backoff_base=0.01) so faults cost milliseconds, but every sleep, timeout and
pacing interval is real, measured on the wall clock or from the emulator's request log.
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from chat_assets.source.client import (
    RequestPacer,
    UjetAuthError,
    UjetClient,
    UjetError,
    UjetNotFoundError,
    UjetResponseError,
    UjetUnavailableError,
    _next_link,
    pacer_for,
)
from chat_assets.source.emulator import UjetEmulator

KEY = "test-key"
SECRET = "s3cr3t-do-not-leak-7f3a"
PERSONAL = "alice.customer@example.com"
START = datetime(2026, 3, 8, 8, tzinfo=UTC)
END = START + timedelta(hours=1)


def stamp(moment: datetime) -> str:
    """UJET's wire format for times: milliseconds and a Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def chat(chat_id: int, updated: datetime, **extra: Any) -> dict[str, Any]:
    """A chat carrying a personal value, so tests can prove it never reaches logs or errors."""
    return {
        "id": chat_id,
        "status": "finished",
        "created_at": stamp(updated - timedelta(minutes=5)),
        "updated_at": stamp(updated),
        "end_user": {"id": 900 + chat_id, "identifier": PERSONAL, "out_contact_id": "crm-1"},
        **extra,
    }


def chats(count: int) -> list[dict[str, Any]]:
    """count chats spread over the test window, ids 1..count."""
    step = timedelta(hours=1) / (count + 1)
    return [chat(i, START + step * i) for i in range(1, count + 1)]


class ListLog:
    """Stands in for Dagster's context.log: anything with info/warning will do."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, msg: str) -> None:
        self.lines.append(("debug", msg))

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.lines.append(("error", msg))

    def at(self, level: str) -> list[str]:
        return [msg for lvl, msg in self.lines if lvl == level]


@pytest.fixture
def emulator() -> Iterator[UjetEmulator]:
    with UjetEmulator(company_key=KEY, company_secret=SECRET, records=chats(250)) as emu:
        yield emu


def make_client(base_url: str, log: Any = None, **options: Any) -> UjetClient:
    """A client with fast but real backoffs and a pace that never slows a test down."""
    settings: dict[str, Any] = {
        "requests_per_second": 500.0,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "log": log if log is not None else ListLog(),
        **options,
    }
    return UjetClient(base_url, KEY, settings.pop("secret", SECRET), **settings)


def chat_requests(emu: UjetEmulator) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith("/chats")]


def test_pages_by_link_header(emulator: UjetEmulator) -> None:
    log = ListLog()
    with make_client(emulator.base_url, log) as client:
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == list(range(1, 251))
    assert (result.pages, result.total, result.received, result.requests) == (3, 250, 250, 3)
    assert (result.retries, result.throttled, result.duplicates_dropped) == (0, 0, 0)
    first = chat_requests(emulator)[0].query
    assert first["updated_at[from]"] == "2026-03-08T08:00:00Z"
    assert first["updated_at[to]"] == "2026-03-08T09:00:00Z"
    assert (first["sort_column"], first["sort_direction"]) == ("id", "ASC")
    assert (str(first["per"]), str(first["page"])) == ("100", "1")
    assert [str(r.query["page"]) for r in chat_requests(emulator)] == ["1", "2", "3"]
    assert log.at("info")[:3] == [
        "UJET page 1 of 3: 100 records so far",
        "UJET page 2 of 3: 200 records so far",
        "UJET page 3 of 3: 250 records so far",
    ]


@pytest.mark.parametrize(("count", "pages"), [(250, 3), (200, 3), (0, 1)])
def test_pages_by_number_without_link_header(count: int, pages: int) -> None:
    """No links: a full page means "ask for more", so an exact multiple ends on an empty one."""
    with (
        UjetEmulator(
            company_key=KEY, company_secret=SECRET, records=chats(count), link_header=False
        ) as emu,
        make_client(emu.base_url) as client,
    ):
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == list(range(1, count + 1))
    assert result.pages == pages == result.requests
    assert [str(r.query["page"]) for r in chat_requests(emu)] == [
        str(n) for n in range(1, pages + 1)
    ]


def test_429_waits_for_retry_after_then_succeeds(emulator: UjetEmulator) -> None:
    emulator.inject("429", retry_after=1)
    log = ListLog()
    with make_client(emulator.base_url, log) as client:
        began = time.monotonic()
        result = client.fetch_window(START, END)
        elapsed = time.monotonic() - began

    assert elapsed >= 0.95
    assert len(result.records) == 250
    assert (result.throttled, result.retries, result.requests) == (1, 1, 4)
    assert [r.status for r in chat_requests(emulator)][:2] == [429, 200]
    assert any("429" in w and "waiting 1.0 s" in w for w in log.at("warning"))


@pytest.mark.parametrize("fault", ["500", "502", "503"])
def test_server_error_is_retried(emulator: UjetEmulator, fault: str) -> None:
    emulator.inject(fault)
    log = ListLog()
    with make_client(emulator.base_url, log) as client:
        result = client.fetch_window(START, END)

    assert len(result.records) == 250
    assert (result.retries, result.requests, result.throttled) == (1, 4, 0)
    assert [r.status for r in chat_requests(emulator)][:2] == [int(fault), 200]
    assert any(fault in w and "retry 1 of 5" in w for w in log.at("warning"))


def test_server_errors_exhaust_retries(emulator: UjetEmulator) -> None:
    emulator.inject("503", count=10)
    with (
        make_client(emulator.base_url, max_retries=2) as client,
        pytest.raises(UjetUnavailableError) as caught,
    ):
        client.fetch_window(START, END)

    assert len(chat_requests(emulator)) == 3
    assert "page 1" in str(caught.value)
    assert "503" in str(caught.value)


def test_401_fails_fast_without_leaking_the_secret(emulator: UjetEmulator) -> None:
    wrong = "wrong-secret-0b9e"
    with (
        make_client(emulator.base_url, secret=wrong) as client,
        pytest.raises(UjetAuthError) as caught,
    ):
        client.fetch_window(START, END)

    message = str(caught.value)
    assert "401" in message
    assert "UJET_COMPANY_KEY" in message
    assert wrong not in message
    assert SECRET not in message
    assert len(emulator.requests) <= 3
    assert caught.value.__cause__ is None


def test_404_names_the_host_to_check(emulator: UjetEmulator) -> None:
    wrong_base = emulator.base_url.replace("/manager/api/v1", "/manager/api/v9")
    with make_client(wrong_base) as client, pytest.raises(UjetNotFoundError) as caught:
        client.fetch_window(START, END)

    assert "UJET_BASE_URL" in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    assert len(emulator.requests) == 1


def test_read_timeout_is_retried(emulator: UjetEmulator) -> None:
    emulator.inject("slow", seconds=0.8)
    log = ListLog()
    with make_client(emulator.base_url, log, read_timeout=0.3) as client:
        result = client.fetch_window(START, END)

    assert len(result.records) == 250
    assert result.retries == 1
    assert any("ReadTimeout" in w for w in log.at("warning"))


def test_read_timeouts_exhaust_retries(emulator: UjetEmulator) -> None:
    emulator.inject("slow", count=3, seconds=0.6)
    with (
        make_client(emulator.base_url, read_timeout=0.3, max_retries=2) as client,
        pytest.raises(UjetUnavailableError) as caught,
    ):
        client.fetch_window(START, END)

    assert "page 1" in str(caught.value)
    assert "ReadTimeout" in str(caught.value)
    assert caught.value.__cause__ is None


def test_dropped_connection_is_retried(emulator: UjetEmulator) -> None:
    emulator.inject("drop")
    log = ListLog()
    with make_client(emulator.base_url, log) as client:
        result = client.fetch_window(START, END)

    assert len(result.records) == 250
    assert result.retries == 1
    assert any("ConnectionError" in w for w in log.at("warning"))


@pytest.mark.parametrize("fault", ["malformed", "not_array"])
def test_bad_body_names_the_page_and_hides_the_body(emulator: UjetEmulator, fault: str) -> None:
    emulator.inject(fault)
    raw = requests.get(f"{emulator.base_url}/chats", auth=(KEY, SECRET), timeout=5).text
    emulator.inject("slow", seconds=0)  # a no-op fault: page 1 is served normally
    emulator.inject(fault)
    with make_client(emulator.base_url) as client, pytest.raises(UjetResponseError) as caught:
        client.fetch_window(START, END)

    message = str(caught.value)
    assert "page 2" in message
    assert "not JSON" in message if fault == "malformed" else "not a JSON array" in message
    assert len(raw) > 20
    assert raw[:12] not in message
    assert raw[-12:] not in message
    assert caught.value.__cause__ is None


def test_records_without_id_or_updated_at_are_refused() -> None:
    records = [*chats(3), {"id": "x7", "updated_at": stamp(START)}, {"updated_at": stamp(END)}]
    with (
        UjetEmulator(company_key=KEY, company_secret=SECRET) as emu,
        make_client(emu.base_url) as client,
    ):
        emu.serve_records(records)
        with pytest.raises(UjetResponseError) as caught:
            client.fetch_window(START, END)

    assert "page 1" in str(caught.value)
    assert "2 of 5 records" in str(caught.value)
    assert "x7" not in str(caught.value)


def test_string_ids_are_normalised_to_int() -> None:
    with (
        UjetEmulator(company_key=KEY, company_secret=SECRET) as emu,
        make_client(emu.base_url) as client,
    ):
        emu.serve_records([{**chat(41, START + timedelta(minutes=1)), "id": "41"}])
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == [41]


def test_total_disagreeing_is_reported(emulator: UjetEmulator) -> None:
    emulator.inject("wrong_total", delta=5)
    log = ListLog()
    with make_client(emulator.base_url, log) as client:
        result = client.fetch_window(START, END)

    assert result.received == 250
    assert result.total is not None
    assert result.total != result.received
    assert any(str(result.total) in w and "250" in w for w in log.at("warning"))


def test_overlapping_pages_are_deduplicated(emulator: UjetEmulator) -> None:
    emulator.inject("slow", seconds=0)  # a no-op fault, so the overlap lands on page 2
    emulator.inject("overlap")
    with make_client(emulator.base_url) as client:
        result = client.fetch_window(START, END)

    assert result.duplicates_dropped == 1
    assert result.received == 251
    assert [r["id"] for r in result.records] == list(range(1, 251))


def test_duplicates_keep_newest_version_and_later_page_on_ties() -> None:
    """The emulator sorts string ids after integer ids, so "5" and "7" land on a later page.

    Page 2 holds 5 (newest) and 7; page 3 holds "5" (older) and "7" (same time): the client
    reads both as ids 5 and 7, keeps the newest 5 and, on the tie, page 3's 7.
    """
    same = START + timedelta(minutes=20)
    records = [
        *chats(3),
        chat(5, START + timedelta(minutes=30), version="newest"),
        chat(7, same, version="page 2"),
        chat(8, START + timedelta(minutes=40)),
        {**chat(5, START + timedelta(minutes=10), version="older"), "id": "5"},
        {**chat(7, same, version="page 3"), "id": "7"},
    ]
    with (
        UjetEmulator(company_key=KEY, company_secret=SECRET) as emu,
        make_client(emu.base_url, per_page=3) as client,
    ):
        emu.serve_records(records)
        result = client.fetch_window(START, END)

    by_id = {r["id"]: r for r in result.records}
    assert [r["id"] for r in result.records] == [1, 2, 3, 5, 7, 8]
    assert by_id[5]["version"] == "newest"
    assert by_id[7]["version"] == "page 3"
    assert (result.received, result.duplicates_dropped, result.pages) == (8, 2, 3)


def test_window_is_half_open() -> None:
    """The API's bounds are inclusive; a chat updated exactly at the end belongs to the next."""
    records = [
        chat(1, START - timedelta(seconds=1)),
        chat(2, START),
        chat(3, END - timedelta(milliseconds=1)),
        chat(4, END),
    ]
    log = ListLog()
    with (
        UjetEmulator(company_key=KEY, company_secret=SECRET) as emu,
        make_client(emu.base_url, log) as client,
    ):
        emu.serve_records(records)
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == [2, 3]
    assert result.outside_window == result.received - 2
    assert any("outside the window" in line for line in log.at("info"))


def test_naive_datetimes_are_refused(emulator: UjetEmulator) -> None:
    with make_client(emulator.base_url) as client, pytest.raises(ValueError):
        client.fetch_window(datetime(2026, 3, 8, 8), datetime(2026, 3, 8, 9))
    assert emulator.requests == []


def test_other_time_zones_are_sent_as_utc(emulator: UjetEmulator) -> None:
    seoul = timezone(timedelta(hours=9))
    with make_client(emulator.base_url) as client:
        result = client.fetch_window(START.astimezone(seoul), END.astimezone(seoul))

    assert len(result.records) == 250
    assert chat_requests(emulator)[0].query["updated_at[from]"] == "2026-03-08T08:00:00Z"


def test_base_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        UjetClient(f"https://{KEY}:{SECRET}@acme.ujet.co/manager/api/v1", KEY, SECRET)
    assert SECRET not in str(caught.value)


def test_pacer_spaces_requests_of_a_fetch() -> None:
    with (
        UjetEmulator(company_key=KEY, company_secret=SECRET, records=chats(55)) as emu,
        make_client(emu.base_url, requests_per_second=20, per_page=10) as client,
    ):
        began = time.monotonic()
        result = client.fetch_window(START, END)
        elapsed = time.monotonic() - began

    assert result.pages == 6
    assert elapsed >= 0.25
    times = [r.time for r in chat_requests(emu)]
    assert len(times) == 6
    # Arrival times at the server carry connection jitter (the first request also opens the
    # connection), so they are held to looser bounds than the client's own 0.25 s; unpaced,
    # six loopback requests arrive within a few milliseconds.
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.025
    assert times[-1] - times[0] >= 0.2


def test_pacer_is_shared_by_threads() -> None:
    pacer = RequestPacer(50)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            pacer.wait()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    before = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    starts.sort()
    assert len(starts) == 12
    # The k-th caller can start no sooner than k intervals after the first could.
    assert all(at >= before + k * 0.02 for k, at in enumerate(starts))


def test_pacer_registry_is_one_per_origin() -> None:
    one = pacer_for("https://acme.ujet.co/manager/api/v1", 1.0)
    same = pacer_for("HTTPS://acme.ujet.co:443/other/path", 2.0)
    other = pacer_for("https://acme.ujet.co:8443/manager/api/v1", 1.0)

    assert one is same
    assert one.requests_per_second == 2.0
    assert other is not one


def test_next_link_to_another_host_is_refused(emulator: UjetEmulator) -> None:
    """The emulator links to 127.0.0.1; a client that came via 'localhost' must not follow it."""
    aliased = emulator.base_url.replace("127.0.0.1", "localhost")
    with make_client(aliased) as client, pytest.raises(UjetResponseError) as caught:
        client.fetch_window(START, END)

    assert "another host" in str(caught.value)
    assert len(chat_requests(emulator)) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, (False, None)),
        ('<https://a.example/x?page=2>; rel="next"', (True, "https://a.example/x?page=2")),
        (
            '<https://a/x?page=1>; rel="prev", <https://a/x?page=3&q=a,b>; rel=next',
            (True, "https://a/x?page=3&q=a,b"),
        ),
        ('<https://a/x?page=9>; rel="last first"', (True, None)),
        ("<https://a/x?page=2>; REL='Next Last'", (True, "https://a/x?page=2")),
        ("garbage", (False, None)),
    ],
)
def test_link_header_parsing(header: str | None, expected: tuple[bool, str | None]) -> None:
    assert _next_link(header) == expected


def test_secret_and_record_values_never_logged(
    emulator: UjetEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    for fault, options in [("429", {"retry_after": 0}), ("500", {}), ("drop", {})]:
        emulator.inject(fault, **options)
    emulator.inject("slow", seconds=0.5)
    logger = logging.getLogger("chat_assets_tests.client")
    with caplog.at_level(logging.DEBUG):
        with make_client(emulator.base_url, logger, read_timeout=0.25) as client:
            result = client.fetch_window(START, END)
        with (
            make_client(emulator.base_url, logger, secret=SECRET + "-wrong") as client,
            pytest.raises(UjetError) as caught,
        ):
            client.fetch_window(START, END)

    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert result.retries == 4
    assert any(record.levelno == logging.WARNING for record in caplog.records)
    for secret_thing in (SECRET, basic, PERSONAL, "crm-1"):
        assert secret_thing not in logged
        assert secret_thing not in str(caught.value)
        assert secret_thing not in repr(client)


def test_nan_and_nul_characters_are_read_as_nothing() -> None:
    moment = (START + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    record = {"id": 1, "updated_at": moment, "rating": float("nan"), "sub_status": "a\x00b"}
    with (
        UjetEmulator(company_key=KEY, company_secret=SECRET, records=[record]) as emu,
        make_client(emu.base_url) as client,
    ):
        result = client.fetch_window(START, END)
    assert result.records[0]["rating"] is None
    assert result.records[0]["sub_status"] == "ab"
