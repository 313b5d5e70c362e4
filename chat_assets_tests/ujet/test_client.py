"""UjetClient against the UJET emulator: a real HTTP server on 127.0.0.1 speaking the protocol.

Every fetch test runs against every personality of the emulator (`PERSONALITIES`): each way the
vendor's documents allow a deployment to answer (links or none, header case, chats updated while
a window is read, strict and shared rate limits). Backoffs are shrunk (backoff_base=0.01) so
faults cost milliseconds, but every sleep, timeout and pacing interval is real.
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from chat_assets.ujet.client import UjetClient
from chat_assets.ujet.errors import (
    UjetAuthError,
    UjetError,
    UjetNotFoundError,
    UjetResponseError,
    UjetUnavailableError,
)
from chat_assets.ujet.pacer import RequestPacer, pacer_for
from chat_assets.ujet.resource import UjetResource
from chat_assets_demo.emulator import PERSONALITIES, StoredChat, UjetEmulator

KEY = "test-key"
SECRET = "s3cr3t-do-not-leak-7f3a"
PERSONAL = "alice.customer@example.com"
START = datetime(2026, 3, 8, 8, tzinfo=UTC)
END = START + timedelta(hours=1)
CROWDED = START + timedelta(minutes=30, seconds=7)  # one second holding more than a page


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


def window_chats() -> list[dict[str, Any]]:
    """A window with what makes paging hard: 250 spread chats, 150 chats within one second
    (more than a page), chats at both bounds and just outside them."""
    crowded = [chat(1000 + i, CROWDED + timedelta(milliseconds=3 * i)) for i in range(150)]
    edges = [
        chat(2001, START - timedelta(seconds=1)),
        chat(2002, START),
        chat(2003, END - timedelta(milliseconds=1)),
        chat(2004, END),
    ]
    return [*chats(250), *crowded, *edges]


IN_WINDOW = sorted([*range(1, 251), *range(1000, 1150), 2002, 2003])


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


@pytest.fixture(params=list(PERSONALITIES))
def personality(request: pytest.FixtureRequest) -> str:
    return request.param


def server(personality: str = "rfc8288", records: list[Any] | None = None) -> UjetEmulator:
    return UjetEmulator(
        company_key=KEY,
        company_secret=SECRET,
        personality=personality,
        records=window_chats() if records is None else records,
    )


def make_client(emu: UjetEmulator | str, log: Any = None, **options: Any) -> UjetClient:
    """A client with fast but real backoffs, paced at the emulator's limit where it has one."""
    base_url = emu if isinstance(emu, str) else emu.base_url
    limit = None
    if isinstance(emu, UjetEmulator):
        limit = emu.personality.strict_rate or emu.personality.budget_rate
    settings: dict[str, Any] = {
        "requests_per_second": limit or 500.0,
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


@pytest.fixture
def emulator() -> Iterator[UjetEmulator]:
    with server() as emu:
        yield emu


# Every personality ---------------------------------------------------------------------------


def test_every_chat_of_the_window(personality: str) -> None:
    log = ListLog()
    with server(personality) as emu, make_client(emu, log) as client:
        result = client.fetch_window(START, END)
        stored = {r["id"]: datetime.fromisoformat(r["updated_at"]) for r in emu.stored()}

    # Each chat in its newest version: for `updated_mid_read`, the one it was updated to while
    # the window was read (which may move it past the window's end, into the next day). Only
    # a chat updated after the last answer is seen as it was.
    unseen = set(emu.updated_ids[-1:])
    got = {r["id"]: datetime.fromisoformat(r["updated_at"]) for r in result.records}
    assert {i: t for i, t in got.items() if i not in unseen} == {
        i: t for i, t in stored.items() if START <= t < END and i not in unseen
    }
    if not emu.updated_ids:
        assert sorted(got) == IN_WINDOW
    assert (result.shortfall, result.left_out, result.reread) == (0, (), False)
    assert result.duplicates_dropped > 0  # the seams of tailing repeat chats
    progress = [line for line in log.at("info") if "chats so far" in line]
    assert progress and "s to go" in progress[0]
    pages = re.match(r"UJET: (\d+) (pages?), ", progress[0])
    assert pages and (pages[2] == "page") == (pages[1] == "1"), progress[0]


def test_a_one_page_window_is_counted_in_the_singular() -> None:
    log = ListLog()
    with server(records=chats(5)) as emu, make_client(emu, log, max_in_flight=1) as client:
        result = client.fetch_window(START, END)

    assert len(result.records) == 5
    progress, done = log.at("info")
    assert progress.startswith("UJET: 1 page, 5 of 5 chats so far, ")
    assert done.startswith("UJET window ")
    assert ": 1 request, 5 chats received, 0 duplicates dropped, " in done
    assert ", at most 1 in flight at once, " in done


def test_the_time_to_go_follows_the_pages_rate_not_only_the_pace() -> None:
    """A server taking 0.3 s a page, read one request at a time under a pace of 500/s: the
    first progress line counts the 9 pages left at the rate pages came, not 500 a second."""
    with (
        UjetEmulator(
            company_key=KEY,
            company_secret=SECRET,
            personality="rfc8288",
            records=chats(1000),
            latency=0.3,
        ) as emu,
        make_client(emu, log := ListLog(), max_in_flight=1) as client,
    ):
        client.fetch_window(START, END)

    progress = [line for line in log.at("info") if "chats so far" in line]
    seconds = int(re.search(r"about (\d+) s to go", progress[0]).group(1))
    assert seconds >= 2, progress[0]


def test_a_sink_gets_every_chat_page_by_page_and_each_version_once(personality: str) -> None:
    pages: list[list[dict[str, Any]]] = []
    with server(personality) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END, sink=pages.append)
        stored = {r["id"]: datetime.fromisoformat(r["updated_at"]) for r in emu.stored()}

    assert result.records == [] and len(pages) > 1
    versions = [(r["id"], r["updated_at"]) for page in pages for r in page]
    assert len(versions) == len(set(versions))  # the seams' repeats are left out
    # The newest version of each chat, kept if it lies in the window: what the landing keeps.
    newest: dict[int, datetime] = {}
    for chat_id, updated in versions:
        moment = datetime.fromisoformat(updated)
        newest[chat_id] = max(newest[chat_id], moment) if chat_id in newest else moment
    got = {i: t for i, t in newest.items() if START <= t < END}
    unseen = set(emu.updated_ids[-1:])
    assert {i: t for i, t in got.items() if i not in unseen} == {
        i: t for i, t in stored.items() if START <= t < END and i not in unseen
    }
    assert result.kept == len(got)


def test_reads_by_tailing_updated_at(personality: str) -> None:
    with server(personality) as emu, make_client(emu) as client:
        client.fetch_window(START, END)
        sent = [r.query for r in sorted(chat_requests(emu), key=lambda r: r.time)]
        answered = [r.query for r in chat_requests(emu) if r.status == 200]

    # The first request asks for the whole window (its total counts every chat of it).
    whole = {"updated_at[from]": "2026-03-08T08:00:00Z", "updated_at[to]": "2026-03-08T09:00:00Z"}
    assert sent[0].items() >= whole.items()
    assert all(
        (q["sort_column"], q["sort_direction"], q["per"]) == ("updated_at", "ASC", "100")
        for q in sent
    )
    # The cursor moves forward through the window (lanes read slices of it side by side).
    lower = {q["updated_at[from]"] for q in answered}
    assert len(lower) > 2 and all(stamp(START) <= b < stamp(END) for b in lower)
    # Page numbers only inside the crowded second, whose bounds are one second apart.
    stepped = [q for q in answered if q["page"] != "1"]
    assert stepped and all(q["updated_at[from]"] == "2026-03-08T08:30:07Z" for q in stepped)
    assert all(q["updated_at[to]"] == "2026-03-08T08:30:08Z" for q in stepped)


def test_one_bad_chat_never_costs_the_day(personality: str) -> None:
    """Repairable text is repaired; a chat without a usable id or updated_at is left out,
    counted and named by id or position, never by its values."""
    bad = [
        chat(1, START + timedelta(minutes=1), sub_status="lone \ud800 surrogate"),
        chat(2, START + timedelta(minutes=2), sub_status="literal \\u0000 text"),
        chat(3, START + timedelta(minutes=3), sub_status="nul\x00inside", **{"k\x00ey": 1}),
        {**chat(4, START + timedelta(minutes=4)), "id": "x-" + PERSONAL},
        StoredChat(START + timedelta(minutes=5), {**chat(5, START), "updated_at": None}),
        StoredChat(START + timedelta(minutes=6), {**chat(6, START), "updated_at": PERSONAL}),
        *[chat(10 + i, START + timedelta(minutes=10, seconds=i)) for i in range(120)],
    ]
    log = ListLog()
    with server(personality, bad) as emu, make_client(emu, log) as client:
        result = client.fetch_window(START, END)

    by_id = {r["id"]: r for r in result.records}
    assert sorted(by_id) == [1, 2, 3, *range(10, 130)]
    assert by_id[1]["sub_status"] == "lone \ufffd surrogate"
    assert by_id[2]["sub_status"] == "literal \\u0000 text"  # text, not a NUL: kept as sent
    assert by_id[3]["sub_status"] == "nulinside" and by_id[3]["key"] == 1
    assert result.repaired == 2
    # Named by id, or by its position in the first answer that held it (lanes' answers may
    # overlap while the first is on its way).
    named = sorted(result.left_out)
    assert named[:2] == ["id 5", "id 6"] and len(named) == 3
    assert re.fullmatch(r"request \d+ position \d+", named[2])
    assert result.shortfall == 0
    said = " ".join(line for _, line in log.lines) + " ".join(result.left_out)
    assert PERSONAL not in said and "x-" not in said


def test_a_chat_left_out_is_one_chat_however_many_answers_hold_it() -> None:
    """Lanes start while the first answer is on its way, so the whole window's first page and
    the later half's both hold a chat at 08:45; without a usable id it is still one chat: named
    once, by its place in the first answer, and not counted twice against the total."""
    good = [chat(i, START + timedelta(minutes=i)) for i in range(1, 41)]
    nameless = {**chat(99, START + timedelta(minutes=45)), "id": None}
    with server("slow_strict_10", [*good, nameless]) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END)
        asked = {r.query["updated_at[from]"] for r in chat_requests(emu)}

    assert [r["id"] for r in result.records] == list(range(1, 41))
    assert "2026-03-08T08:30:00Z" in asked  # the later half was asked for too
    assert result.left_out == ("request 1 position 41",)
    assert (result.total, result.shortfall) == (41, 0)


def test_a_window_short_of_total_is_read_once_more(personality: str) -> None:
    with server(personality, chats(250)) as emu, make_client(emu) as client:
        emu.inject("wrong_total", delta=3)  # the first answer promises 3 chats too many
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == list(range(1, 251))
    assert (result.reread, result.shortfall, result.total) == (True, 0, 250)


def test_a_shortfall_that_persists_is_reported(personality: str) -> None:
    with server(personality, chats(250)) as emu, make_client(emu) as client:
        # Far more than both reads ask for: every answer of the first read and of the second
        # promises 3 chats too many. (Faults left over go with the server.)
        emu.inject("wrong_total", count=200, delta=3)
        result = client.fetch_window(START, END)

    assert len(result.records) == 250
    assert (result.reread, result.shortfall, result.total) == (True, 3, 253)


def test_429_waits_for_retry_after_and_slows_down(personality: str) -> None:
    log = ListLog()
    with server(personality, chats(250)) as emu, make_client(emu, log) as client:
        emu.inject("429", retry_after=1)
        began = time.monotonic()
        result = client.fetch_window(START, END)
        elapsed = time.monotonic() - began

    assert elapsed >= 0.95
    assert [r["id"] for r in result.records] == list(range(1, 251))
    assert result.throttled >= 1 and result.retries >= 1
    assert any("429" in w and "waiting 1.0 s" in w for w in log.at("warning"))
    assert result.pace < client._pacer.requests_per_second


@pytest.mark.parametrize("fault", ["500", "502", "503", "drop"])
def test_server_errors_are_retried(personality: str, fault: str) -> None:
    log = ListLog()
    with server(personality, chats(250)) as emu, make_client(emu, log) as client:
        emu.inject(fault)
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == list(range(1, 251))
    assert result.retries >= 1
    assert any("retry 1 of 5" in w for w in log.at("warning"))


# What the personalities are there to catch -----------------------------------------------------


def test_paging_by_number_loses_a_chat_updated_mid_read() -> None:
    """The reason for tailing: a client that steps `page` while a chat it has seen is updated
    misses the chat that moved up into the page it already read."""
    with server("updated_mid_read", chats(250)) as emu, requests.Session() as http:
        seen: dict[int, dict[str, Any]] = {}
        page = 1
        while True:
            response = http.get(
                f"{emu.base_url}/chats",
                auth=(KEY, SECRET),
                params={
                    "updated_at[from]": "2026-03-08T08:00:00Z",
                    "updated_at[to]": "2026-03-08T09:00:00Z",
                    "sort_column": "updated_at",
                    "page": page,
                },
                timeout=5,
            )
            seen.update((r["id"], r) for r in response.json())
            if "next" not in response.links:
                break
            page += 1

    assert emu.updated_ids
    assert len(seen) < 250


def test_pacing_is_measured_where_the_server_measures_it() -> None:
    """Against a burst-1 limiter at 10/s, paced at 10/s: no two arrivals closer than the
    limit lets through, and so no 429."""
    with server("strict_10", chats(600)) as emu, make_client(emu, per_page=50) as client:
        result = client.fetch_window(START, END)
        times = [r.time for r in chat_requests(emu)]

    assert len(result.records) == 600
    assert len(times) >= 12
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.098
    assert result.throttled == 0


def test_a_slow_server_is_read_with_requests_in_flight() -> None:
    """A server taking 0.4 s to answer each page, behind a strict 10/s limit: requests go out
    an interval apart, not an answer apart, so the budget, not the latency, sets the pace.
    (A client that sends each request once the previous answer is in spaces them 0.4 s.)"""
    with server("slow_strict_10", chats(1500)) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END)
        arrivals = sorted(r.time for r in chat_requests(emu))

    assert [r["id"] for r in result.records] == list(range(1, 1501))
    assert result.throttled == 0 and result.lanes >= 3
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert gaps[len(gaps) // 2] < 0.2 < emu.personality.latency


def test_a_slow_servers_budget_is_busy_from_the_first_request_to_the_last() -> None:
    """While the first answer is on its way, lanes start on later slices of the window: the
    pacer never waits for an answer. (Waiting for the first answer alone leaves a gap of the
    server's time to answer.)"""
    with server("slow_strict_10", chats(2000)) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END)
        sent = sorted(chat_requests(emu), key=lambda r: r.time)

    assert [r["id"] for r in result.records] == list(range(1, 2001))
    assert (result.total, result.shortfall, result.throttled) == (2000, 0, 0)
    assert sent[0].query["updated_at[from]"] == "2026-03-08T08:00:00Z"  # the whole window
    assert sent[1].query["updated_at[from]"] == "2026-03-08T08:30:00Z"  # its later half
    assert sent[1].time - sent[0].time < emu.personality.latency
    # Each slice ends in a part-filled page: 20 pages would hold the window, one lane reads it
    # in 21 requests, slices in a few more.
    assert len(sent) <= 30


def test_the_last_pages_of_a_busy_slice_go_out_side_by_side() -> None:
    """All chats in the window's last minutes: the slice holding them is halved while more than
    the page in flight is left in it, so its pages are read side by side, not one answer after
    another while the pacer waits (halving only slices with three pages left, a slice's next
    page waits for its answer, and the read ran at 4.1 and 6.9 requests a second; this one at
    8.5 to 9.6, and at 6.6 once on a machine loaded six times over its cores)."""
    step = timedelta(minutes=6) / 401
    late = [chat(i, START + timedelta(minutes=54) + step * i) for i in range(1, 401)]
    with server("slow_strict_10", late) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END)
        sent = sorted(r.time for r in chat_requests(emu))

    assert [r["id"] for r in result.records] == list(range(1, 401)) and result.throttled == 0
    assert (len(sent) - 1) / (sent[-1] - sent[0]) >= 7.0  # of the 10 requests/s the API allows


# Errors that say what to check -----------------------------------------------------------------


def test_401_fails_fast_without_leaking_the_secret(emulator: UjetEmulator) -> None:
    wrong = "wrong-secret-0b9e"
    with make_client(emulator, secret=wrong) as client, pytest.raises(UjetAuthError) as caught:
        client.fetch_window(START, END)

    message = str(caught.value)
    assert "401" in message
    assert "UJET_COMPANY_KEY" in message
    assert wrong not in message
    assert SECRET not in message
    # Not retried: lanes started while the first answer was on its way (at the tests' 500
    # requests/s) asked once each, for slices of their own, and none after the 401.
    queries = [tuple(sorted(r.query.items())) for r in emulator.requests]
    assert len(queries) == len(set(queries)) and {r.status for r in emulator.requests} == {401}
    assert caught.value.__cause__ is None


def test_404_names_the_host_to_check(emulator: UjetEmulator) -> None:
    wrong_base = emulator.base_url.replace("/manager/api/v1", "/manager/api/v9")
    one_lane = make_client(wrong_base, max_in_flight=1)
    with one_lane as client, pytest.raises(UjetNotFoundError) as caught:
        client.fetch_window(START, END)

    assert "UJET_BASE_URL" in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    assert len(emulator.requests) == 1
    # A tenant's client names the tenant's own attributes, never the single-tenant settings.
    tenant = make_client(wrong_base, max_in_flight=1, address_from="tenant acme's ujet.base_url")
    with tenant as client, pytest.raises(UjetNotFoundError) as caught:
        client.fetch_window(START, END)
    assert "check tenant acme's ujet.base_url" in str(caught.value)
    assert "UJET_" not in str(caught.value)


def test_unreachable_ujet_names_the_host() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    base = f"http://127.0.0.1:{port}/manager/api/v1"
    with make_client(base, max_retries=1) as client, pytest.raises(UjetUnavailableError) as err:
        client.fetch_window(START, END)

    assert f"127.0.0.1:{port}" in str(err.value)
    assert "could not be reached" in str(err.value)
    assert "UJET_BASE_URL" in str(err.value)


@pytest.mark.parametrize(
    ("account", "named"),
    [
        ({"subdomain": "acme", "domain": "invalid"}, "check UJET_SUBDOMAIN and UJET_DOMAIN"),
        ({"base_url": "https://acme.invalid/manager/api/v1"}, "check UJET_BASE_URL"),
    ],
)
def test_a_host_that_does_not_resolve_fails_at_once_naming_its_settings(
    account: dict[str, str], named: str
) -> None:
    """Reserved `.invalid` names never resolve (RFC 6761): a setting to fix, not a timeout."""
    ujet = UjetResource(company_key=KEY, company_secret=SECRET, **account)
    log = ListLog()
    with ujet.open_client(log) as client, pytest.raises(UjetError) as caught:
        client.fetch_window(START, END)

    message = str(caught.value)
    assert message.startswith("UJET host acme.invalid did not resolve (")
    assert message.endswith(named) and "\n" not in message
    assert log.at("warning") == []  # not retried
    assert KEY not in message and SECRET not in message


def test_read_timeout_is_retried(emulator: UjetEmulator) -> None:
    emulator.inject("slow", seconds=0.8)
    log = ListLog()
    with make_client(emulator, log, read_timeout=0.3) as client:
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == IN_WINDOW
    assert result.retries == 1
    assert any("ReadTimeout" in w for w in log.at("warning"))


def test_read_timeouts_exhaust_retries(emulator: UjetEmulator) -> None:
    emulator.inject("slow", count=3, seconds=0.6)
    with (
        make_client(emulator, read_timeout=0.3, max_retries=2, max_in_flight=1) as client,
        pytest.raises(UjetUnavailableError) as caught,
    ):
        client.fetch_window(START, END)

    assert "request 1" in str(caught.value)
    assert "ReadTimeout" in str(caught.value)
    assert caught.value.__cause__ is None


def test_server_errors_exhaust_retries(emulator: UjetEmulator) -> None:
    emulator.inject("503", count=3)
    one_lane = make_client(emulator, max_retries=2, max_in_flight=1)
    with one_lane as client, pytest.raises(UjetUnavailableError) as e:
        client.fetch_window(START, END)

    assert len(chat_requests(emulator)) == 3
    assert "request 1" in str(e.value) and "503" in str(e.value)


@pytest.mark.parametrize("fault", ["malformed", "not_array"])
def test_bad_body_names_the_request_and_hides_the_body(emulator: UjetEmulator, fault: str) -> None:
    emulator.inject(fault)
    raw = requests.get(f"{emulator.base_url}/chats", auth=(KEY, SECRET), timeout=5).text
    emulator.inject("slow", seconds=0)  # a no-op fault: request 1 is served normally
    emulator.inject(fault)
    one_lane = make_client(emulator, max_in_flight=1)  # request 2 is the second sent
    with one_lane as client, pytest.raises(UjetResponseError) as caught:
        client.fetch_window(START, END)

    message = str(caught.value)
    assert "request 2" in message
    assert "not JSON" in message if fault == "malformed" else "not a JSON array" in message
    assert len(raw) > 20
    assert raw[:12] not in message
    assert raw[-12:] not in message
    assert caught.value.__cause__ is None
    assert message.endswith("check UJET_BASE_URL points at the Manager API")
    # A tenant's client names the tenant's own attributes, never the single-tenant settings.
    emulator.inject(fault)
    tenant = make_client(emulator, max_in_flight=1, address_from="tenant acme's ujet.base_url")
    with tenant as client, pytest.raises(UjetResponseError) as caught:
        client.fetch_window(START, END)
    assert str(caught.value).endswith("check tenant acme's ujet.base_url points at the Manager API")


def test_string_ids_are_normalised_to_int() -> None:
    records = [{**chat(41, START + timedelta(minutes=1)), "id": "41"}]
    with server(records=records) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == [41]


def test_naive_datetimes_are_refused(emulator: UjetEmulator) -> None:
    with make_client(emulator) as client, pytest.raises(ValueError):
        client.fetch_window(datetime(2026, 3, 8, 8), datetime(2026, 3, 8, 9))
    assert emulator.requests == []


def test_other_time_zones_are_sent_as_utc(emulator: UjetEmulator) -> None:
    seoul = timezone(timedelta(hours=9))
    with make_client(emulator) as client:
        result = client.fetch_window(START.astimezone(seoul), END.astimezone(seoul))

    assert [r["id"] for r in result.records] == IN_WINDOW
    first = min(chat_requests(emulator), key=lambda r: r.time)  # the log is in answer order
    assert first.query["updated_at[from]"] == "2026-03-08T08:00:00Z"


def test_base_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        UjetClient(f"https://{KEY}:{SECRET}@acme.ujet.co/manager/api/v1", KEY, SECRET)
    assert SECRET not in str(caught.value)
    assert "pass them as UJET_COMPANY_KEY and UJET_COMPANY_SECRET instead" in str(caught.value)


def test_a_tenants_missing_credentials_or_stray_ones_name_its_own_variables() -> None:
    tenant = "ACME_UJET_KEY and ACME_UJET_SECRET (tenant acme)"
    base = "https://acme.ujet.co/manager/api/v1"
    with pytest.raises(ValueError, match=re.escape(f"empty: set {tenant}")):
        UjetClient(base, KEY, "", credentials_from=tenant)
    with pytest.raises(ValueError) as caught:
        UjetClient(base.replace("//", f"//{KEY}:{SECRET}@"), KEY, SECRET, credentials_from=tenant)
    assert f"pass them as {tenant} instead" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_link_targets_are_never_followed() -> None:
    """Links name the next page; the client asks its own host for it, so a link to another
    host can never receive the credentials."""
    with server() as emu:
        aliased = emu.base_url.replace("127.0.0.1", "localhost")
        with make_client(aliased) as client:
            result = client.fetch_window(START, END)

    assert [r["id"] for r in result.records] == IN_WINDOW


def test_secret_and_record_values_never_logged(
    emulator: UjetEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    for fault, options in [("429", {"retry_after": 0}), ("500", {}), ("drop", {})]:
        emulator.inject(fault, **options)
    emulator.inject("slow", seconds=0.5)
    logger = logging.getLogger("chat_assets_tests.client")
    with caplog.at_level(logging.DEBUG):
        with make_client(emulator, logger, read_timeout=0.25) as client:
            result = client.fetch_window(START, END)
        with (
            make_client(emulator, logger, secret=SECRET + "-wrong") as client,
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


def test_nan_is_read_as_nothing() -> None:
    record = chat(1, START + timedelta(minutes=5), rating=float("nan"))
    with server(records=[record]) as emu, make_client(emu) as client:
        result = client.fetch_window(START, END)
    assert result.records[0]["rating"] is None


# The pacer ------------------------------------------------------------------------------------


class FakeTime:
    """A clock whose sleeps can oversleep, like a busy machine's."""

    def __init__(self, late: dict[int, float]) -> None:
        self.now = 100.0
        self.sleeps = 0
        self.late = late

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds + self.late.get(self.sleeps, 0.0)


def test_a_late_request_is_not_followed_by_an_early_one() -> None:
    fake = FakeTime(late={2: 0.05, 5: 0.12})
    pacer = RequestPacer(5, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(8):
        pacer.wait()
        starts.append(fake.now)
        pacer.sent()

    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.2  # measured from each actual start, never from a slot schedule
    assert max(gaps) >= 0.3  # the oversleeps happened


def test_a_request_written_late_pushes_the_next_one_back() -> None:
    fake = FakeTime(late={})
    pacer = RequestPacer(5, clock=fake.clock, sleep=fake.sleep)
    pacer.wait()
    fake.now += 0.15  # held up for 150 ms before the request went out
    written = fake.now
    pacer.sent()
    pacer.wait()
    assert fake.now - written >= 0.2  # a whole interval after the late one left


class Turns:
    """Another process's share of the account, as SharedTurns: its last start, on the clock."""

    def __init__(self, fake: FakeTime, last_start: float) -> None:
        self.fake = fake
        self.last_start = last_start
        self.calls: list[str] = []

    def begin(self, interval: float) -> None:
        self.calls.append("begin")
        self.fake.now = max(self.fake.now, self.last_start + interval)

    def end(self) -> None:
        self.calls.append("end")
        self.last_start = self.fake.now


def test_turns_space_this_process_after_another() -> None:
    """Requests of another process (its last start) push this one's back, and this one's
    starts are recorded for it, request by request."""
    fake = FakeTime(late={})
    pacer = RequestPacer(5, clock=fake.clock, sleep=fake.sleep)
    turns = Turns(fake, last_start=fake.now - 0.05)  # the other process sent 50 ms ago
    pacer.share(turns)
    began = fake.now
    pacer.wait()
    assert fake.now - (began - 0.05) >= pacer.interval - 1e-9  # an interval after the other
    pacer.sent()
    assert turns.calls == ["begin", "end"] and turns.last_start == fake.now


def test_no_second_request_starts_while_one_is_being_sent() -> None:
    """A thread let go by the pacer but not yet written holds back every other thread."""
    pacer = RequestPacer(1000)
    pacer.wait()
    other = threading.Thread(target=pacer.wait)
    other.start()
    other.join(timeout=0.1)
    assert other.is_alive()  # waiting for the first request to leave
    pacer.sent()
    other.join(timeout=2)
    assert not other.is_alive()
    pacer.sent()


def test_the_pacer_is_idle_only_when_no_request_waits_for_it() -> None:
    """What decides whether a window needs one more lane: how long the pacer could have let a
    request go with none waiting for it, negative until it may and while one is waiting or
    being sent."""
    pacer = RequestPacer(10)
    pacer.wait()
    assert pacer.idle_for() < 0  # being sent
    pacer.sent()
    assert -pacer.interval <= pacer.idle_for() < 0  # not yet due
    time.sleep(pacer.interval + 0.05)
    assert pacer.idle_for() >= 0.05  # due, and no one asked
    waiting = threading.Thread(target=pacer.wait)
    waiting.start()
    waiting.join()  # it was due: let go at once, and now being sent
    assert pacer.idle_for() == -pacer.interval
    pacer.sent()
    waiting = threading.Thread(target=pacer.wait)
    waiting.start()
    time.sleep(0.02)  # waiting for its moment, an interval after the last
    assert waiting.is_alive() and pacer.idle_for() == -pacer.interval
    waiting.join()
    pacer.sent()


def test_429s_slow_the_pace_and_successes_recover_it() -> None:
    pacer = RequestPacer(10)
    pacer.throttled()
    assert pacer.pace == pytest.approx(7.0)
    pacer.throttled()
    assert pacer.pace == pytest.approx(4.9)
    for _ in range(10):
        pacer.succeeded()
    assert 4.9 < pacer.pace < 7.0  # gradually, not at once
    for _ in range(2000):
        pacer.succeeded()
    assert pacer.pace == 10.0  # never beyond the configured rate
    assert pacer.throttles == 2
    for _ in range(100):
        pacer.throttled()
    assert pacer.pace == pytest.approx(0.5)  # a floor, so a storm cannot stop a fetch


def test_pacer_is_shared_by_threads() -> None:
    pacer = RequestPacer(50)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            pacer.wait()
            with lock:
                starts.append(time.monotonic())
            pacer.sent()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    starts.sort()
    assert len(starts) == 12
    # Twelve starts span at least eleven intervals, whichever thread took each.
    assert starts[-1] - starts[0] >= 11 * 0.02


def test_pacer_registry_is_one_per_origin() -> None:
    one = pacer_for("https://acme.ujet.co/manager/api/v1", 1.0)
    same = pacer_for("HTTPS://acme.ujet.co:443/other/path", 2.0)
    other = pacer_for("https://acme.ujet.co:8443/manager/api/v1", 1.0)

    assert one is same
    assert one.requests_per_second == 2.0
    assert other is not one
