"""The emulator must speak UJET's chats protocol over real HTTP, faults included."""

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from benchmarks.fetch_rate import served_summary
from chat_assets_demo import demo_data
from chat_assets_demo.emulator import Personality, StoredChat, UjetEmulator

AUTH = ("demo-key", "demo-secret")
DAY = datetime(2024, 3, 5, tzinfo=UTC)
WINDOW = {"updated_at[from]": "2024-03-05T00:00:00Z", "updated_at[to]": "2024-03-05T23:59:59Z"}


def _bounds(low: str, high: str) -> dict[str, str]:
    return {"updated_at[from]": low, "updated_at[to]": high}


def _expected(chats_per_day: int = 48) -> list[dict[str, Any]]:
    return demo_data.chats_updated_between(
        DAY, DAY + timedelta(hours=23, minutes=59, seconds=59), chats_per_day
    )


def _pages(per: int) -> int:
    """How many pages of `per` the default emulator's day fills."""
    return -(-len(_expected()) // per)


@pytest.fixture(scope="module")
def emulator() -> Iterator[UjetEmulator]:
    with UjetEmulator() as emu:
        yield emu


@pytest.fixture()
def emu(emulator: UjetEmulator) -> Iterator[UjetEmulator]:
    """The shared emulator, with a clean request log and no leftover faults."""
    emulator.requests.clear()
    yield emulator
    assert emulator.pending_faults() == 0, "a test left injected faults unserved"


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = AUTH
        yield session


def _chats(emu: UjetEmulator, http: requests.Session, **params: Any) -> requests.Response:
    return http.get(f"{emu.base_url}/chats", params=params, timeout=10)


def _pull_all(emu: UjetEmulator, http: requests.Session, **params: Any) -> list[dict[str, Any]]:
    """Follow link headers to the end, the way a client should."""
    response = _chats(emu, http, **params)
    records = response.json()
    while "next" in response.links:
        response = http.get(response.links["next"]["url"], timeout=10)
        assert response.status_code == 200
        records.extend(response.json())
    return records


def test_auth_is_required(emu: UjetEmulator) -> None:
    url = f"{emu.base_url}/chats"
    missing = requests.get(url, params=WINDOW, timeout=10)
    wrong = requests.get(url, params=WINDOW, auth=("demo-key", "nope"), timeout=10)
    right = requests.get(url, params=WINDOW, auth=AUTH, timeout=10)
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert "error" in response.json()
    assert right.status_code == 200
    assert [r.status for r in emu.requests] == [401, 401, 200]
    assert "demo-secret" not in repr(emu.requests)
    assert "nope" not in repr(emu.requests)


def test_paging_headers_and_absolute_next_link(emu: UjetEmulator, http: requests.Session) -> None:
    expected = _expected()
    first = _chats(emu, http, per=20, **WINDOW)
    assert first.status_code == 200
    assert first.headers["total"] == str(len(expected))
    assert first.headers["per-page"] == "20"
    assert len(first.json()) == 20
    next_url = first.links["next"]["url"]
    assert next_url.startswith(f"{emu.base_url}/chats?")
    assert "page=2" in next_url and "per=20" in next_url
    assert "updated_at%5Bfrom%5D=2024-03-05T00%3A00%3A00Z" in next_url
    records = _pull_all(emu, http, per=20, **WINDOW)
    by_id = sorted(expected, key=lambda r: (r["id"], r["updated_at"]))
    assert records == by_id  # default sort is by id; data are demo_data's for the window
    last_page = emu.requests[-1]
    assert last_page.query["page"] == str(_pages(20))


def test_rfc8288_links_first_prev_next_last_in_any_order(
    emu: UjetEmulator, http: requests.Session
) -> None:
    pages = _pages(10)
    first = _chats(emu, http, per=10, **WINDOW)
    middle = _chats(emu, http, per=10, page=3, **WINDOW)
    last = _chats(emu, http, per=10, page=pages, **WINDOW)
    assert set(first.links) == {"first", "next", "last"}
    assert set(middle.links) == {"first", "prev", "next", "last"}
    assert set(last.links) == {"first", "prev", "last"}  # no next on the last page
    assert f"page={pages}" in first.links["last"]["url"]
    assert "page=4" in middle.links["next"]["url"]
    orders = {
        tuple(_chats(emu, http, per=10, page=page, **WINDOW).links) for page in range(2, pages)
    }
    assert len(orders) > 1  # entries come in any order


def test_lone_next_and_header_case(http: requests.Session) -> None:
    with UjetEmulator(personality="lone_next") as emu:
        response = _chats(emu, http, per=10, **WINDOW)
        assert set(response.links) == {"next"}
        assert "Link" not in _chats(emu, http, per=10, page=_pages(10), **WINDOW).headers
    with UjetEmulator(personality="header_case") as emu:
        response = _chats(emu, http, per=10, **WINDOW)
        sent = list(response.raw.headers.keys())
        assert {"TOTAL", "pEr-PaGe", "LINK"} <= set(sent)
        assert response.headers["total"] == str(len(_expected()))  # names are case-insensitive


def test_a_chat_updated_mid_read_moves_to_the_end(http: requests.Session) -> None:
    records = [
        {"id": i, "updated_at": f"2024-03-05T10:00:{i:02d}.000Z", "created_at": "2024-03-05"}
        for i in range(1, 31)
    ]
    with UjetEmulator(personality="updated_mid_read", records=records) as emu:
        first = _chats(emu, http, per=10, sort_column="updated_at", **WINDOW).json()
        second = _chats(emu, http, per=10, page=2, sort_column="updated_at", **WINDOW).json()
    assert [r["id"] for r in first] == list(range(1, 11))
    # Chat 1 was updated after page 1: everything shifted up, so page 2 starts at 12.
    assert [r["id"] for r in second] == list(range(12, 22))
    assert emu.updated_ids == [1, 2]
    assert {r["id"]: r["updated_at"] for r in emu.stored()}[1] > "2024-03-05T10:00:30"


def test_a_stored_chat_can_carry_a_broken_updated_at(http: requests.Session) -> None:
    broken = StoredChat(DAY + timedelta(hours=1), {"id": 7, "updated_at": None})
    with UjetEmulator(records=[broken]) as emu:
        assert _chats(emu, http, **WINDOW).json() == [{"id": 7, "updated_at": None}]


def test_no_link_header(http: requests.Session) -> None:
    with UjetEmulator(personality="no_link") as emu:
        first = _chats(emu, http, per=25, **WINDOW)
        assert "link" not in first.headers
        total = int(first.headers["total"])
        records = first.json()
        page = 2
        while len(records) < total:
            response = _chats(emu, http, per=25, page=page, **WINDOW)
            assert "link" not in response.headers
            records.extend(response.json())
            page += 1
    assert len(records) == total == len(_expected())


def test_per_is_clamped_to_100(http: requests.Session) -> None:
    with UjetEmulator(chats_per_day=300) as emu:
        response = _chats(emu, http, per=500, **WINDOW)
    assert response.headers["per-page"] == "100"
    assert len(response.json()) == 100
    assert int(response.headers["total"]) == len(_expected(300)) > 300


def test_updated_at_bounds_filter_inclusively(emu: UjetEmulator, http: requests.Session) -> None:
    records = _expected()
    low, high = records[5]["updated_at"], records[15]["updated_at"]
    served = _pull_all(emu, http, sort_column="updated_at", **_bounds(low, high))
    assert served == records[5:16]
    # The same instants written with an offset select the same records.
    kst = datetime.fromisoformat(low).astimezone(timezone(timedelta(hours=9))).isoformat()
    assert kst.endswith("+09:00")
    served_kst = _pull_all(emu, http, sort_column="updated_at", **_bounds(kst, high))
    assert served_kst == served


def test_sorting_by_column_and_direction(emu: UjetEmulator, http: requests.Session) -> None:
    desc = _chats(emu, http, sort_column="updated_at", sort_direction="DESC", **WINDOW).json()
    stamps = [r["updated_at"] for r in desc]
    assert stamps == sorted(stamps, reverse=True)
    created = _chats(emu, http, sort_column="created_at", **WINDOW).json()
    assert [r["created_at"] for r in created] == sorted(r["created_at"] for r in created)


def test_bad_parameters_answer_400(emu: UjetEmulator, http: requests.Session) -> None:
    for params in (
        {"page": "0"},
        {"per": "abc"},
        {"sort_column": "rating"},
        {"sort_direction": "sideways"},
        {"updated_at[from]": "yesterday"},
    ):
        response = _chats(emu, http, **params)
        assert response.status_code == 400, params
        assert "error" in response.json()


def test_unknown_paths_answer_404_json(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("500")
    response = http.get(f"{emu.base_url}/calls", timeout=10)
    assert response.status_code == 404
    assert "error" in response.json()
    # The fault is kept for the next chats request, not spent on the 404.
    assert _chats(emu, http, **WINDOW).status_code == 500


def test_brackets_arrive_encoded_and_are_logged_decoded(emu: UjetEmulator) -> None:
    url = (
        f"{emu.base_url}/chats?updated_at%5Bfrom%5D=2024-03-05T10%3A00%3A00Z"
        "&updated_at%5Bto%5D=2024-03-05T11%3A00%3A00Z"
    )
    response = requests.get(url, auth=AUTH, timeout=10)
    assert response.status_code == 200
    for record in response.json():
        assert "2024-03-05T10:00" <= record["updated_at"] <= "2024-03-05T11:00:00.000Z"
    entry = emu.requests[-1]
    assert entry.path == "/manager/api/v1/chats"
    assert entry.query["updated_at[from]"] == "2024-03-05T10:00:00Z"
    assert entry.status == 200 and entry.time <= time.monotonic()


def test_status_faults_in_order(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("429", retry_after=7)
    emu.inject("500")
    emu.inject("502")
    emu.inject("503", retry_after=2)
    too_many = _chats(emu, http, **WINDOW)
    assert too_many.status_code == 429 and too_many.headers["Retry-After"] == "7"
    assert _chats(emu, http, **WINDOW).status_code == 500
    gateway = _chats(emu, http, **WINDOW)
    assert gateway.status_code == 502 and gateway.headers["Content-Type"] == "text/html"
    unavailable = _chats(emu, http, **WINDOW)
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "2"
    assert _chats(emu, http, **WINDOW).status_code == 200
    assert [r.fault for r in emu.requests] == ["429", "500", "502", "503", None]


def test_fault_count_repeats(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("500", count=3)
    codes = [_chats(emu, http, **WINDOW).status_code for _ in range(4)]
    assert codes == [500, 500, 500, 200]


def test_drop_closes_without_answer(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("drop")
    with pytest.raises(requests.ConnectionError):
        _chats(emu, http, **WINDOW)
    assert emu.requests[-1].status == 0
    assert _chats(emu, http, **WINDOW).status_code == 200


def test_slow_trips_a_read_timeout(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("slow", seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        http.get(f"{emu.base_url}/chats", params=WINDOW, timeout=(2, 0.3))
    assert time.monotonic() - started < 0.9
    assert _chats(emu, http, **WINDOW).status_code == 200


def test_slow_answers_normally_after_the_delay(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("slow", seconds=0.3)
    started = time.monotonic()
    response = _chats(emu, http, per=5, **WINDOW)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200 and len(response.json()) == 5


def test_bad_bodies(emu: UjetEmulator, http: requests.Session) -> None:
    emu.inject("malformed")
    emu.inject("not_array")
    malformed = _chats(emu, http, **WINDOW)
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.text)
    not_array = _chats(emu, http, **WINDOW)
    assert not_array.status_code == 200
    assert isinstance(not_array.json(), dict) and "error" in not_array.json()


def test_wrong_total(emu: UjetEmulator, http: requests.Session) -> None:
    real = len(_expected())
    emu.inject("wrong_total")
    emu.inject("wrong_total", delta=-3)
    assert _chats(emu, http, **WINDOW).headers["total"] == str(real + 5)
    assert _chats(emu, http, **WINDOW).headers["total"] == str(real - 3)
    assert _chats(emu, http, **WINDOW).headers["total"] == str(real)


def test_overlap_repeats_the_previous_pages_last_record(
    emu: UjetEmulator, http: requests.Session
) -> None:
    page1 = _chats(emu, http, per=10, **WINDOW).json()
    emu.inject("overlap")
    page2 = _chats(emu, http, per=10, page=2, **WINDOW).json()
    assert len(page2) == 11
    assert page2[0] == page1[-1]
    assert page2[1:] == _chats(emu, http, per=10, page=2, **WINDOW).json()


def test_unknown_fault_is_refused(emu: UjetEmulator) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        emu.inject("teapot")
    with pytest.raises(ValueError, match="option"):
        emu.inject("500", seconds=3)


def test_strict_limiter_refuses_any_request_sooner_than_one_interval(
    http: requests.Session,
) -> None:
    with UjetEmulator(personality=Personality("strict_2", strict_rate=2.0)) as emu:
        bad_auth = requests.get(f"{emu.base_url}/chats", params=WINDOW, timeout=10)
        assert bad_auth.status_code == 401  # counts like any request
        time.sleep(0.51)
        assert _chats(emu, http, **WINDOW).status_code == 200
        limited = _chats(emu, http, **WINDOW)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        assert "error" in limited.json()
        time.sleep(0.51)  # measured from the last request let through, not the refused one
        assert _chats(emu, http, **WINDOW).status_code == 200


def test_a_shared_budget_refuses_beyond_the_share_left(http: requests.Session) -> None:
    """10/s with 20% taken by another integration: a burst spends the one-second bucket, then
    only about 8 requests a second go through."""
    with UjetEmulator(personality="shared_budget") as emu:
        began = time.monotonic()
        codes = [_chats(emu, http, per=1, **WINDOW).status_code for _ in range(40)]
        elapsed = time.monotonic() - began
    passed = codes.count(200)
    assert 429 in codes
    assert passed <= 10 + 8 * elapsed + 1


def test_serve_records_serves_exactly_those(http: requests.Session) -> None:
    records = [
        {"id": 3, "updated_at": "2024-01-02T00:00:00.000Z", "created_at": "2024-01-01T00:00:00Z"},
        {"id": 1, "updated_at": "2024-01-03T00:00:00.000Z", "created_at": "2024-01-01T00:00:00Z"},
        {"id": 2, "updated_at": "2024-01-04T00:00:00.000Z", "created_at": "2024-01-01T00:00:00Z"},
    ]
    with UjetEmulator(records=records[:1]) as emu:
        assert _chats(emu, http).json() == records[:1]
        emu.serve_records(records)
        assert [r["id"] for r in _chats(emu, http).json()] == [1, 2, 3]
        window = _chats(emu, http, **_bounds("2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"))
        assert [r["id"] for r in window.json()] == [1, 2]
        assert window.headers["total"] == "2"


def test_missing_bounds_serve_the_last_day(emu: UjetEmulator, http: requests.Session) -> None:
    before = datetime.now(UTC)
    records = _pull_all(emu, http)
    after = datetime.now(UTC)
    widest = demo_data.chats_updated_between(before - timedelta(days=1, seconds=1), after)
    assert 0 < len(records) <= len(widest)
    for record in records:
        updated = datetime.fromisoformat(record["updated_at"])
        assert before - timedelta(days=1, seconds=1) <= updated <= after


def test_huge_generated_window_is_refused(http: requests.Session) -> None:
    with UjetEmulator(chats_per_day=100_000) as big:
        response = _chats(big, http, **_bounds("2000-01-01T00:00:00Z", "2024-01-01T00:00:00Z"))
    assert response.status_code == 400
    assert "window" in response.json()["error"]


def test_days_read_at_once_are_generated_once_each(http: requests.Session) -> None:
    """A backfill's days are read side by side: their requests take turns, and each day is
    generated once, not again whenever another day's request came between two of its own."""
    days = [_bounds(f"2024-03-0{n}T00:00:00Z", f"2024-03-0{n + 1}T00:00:00Z") for n in (1, 3)]
    with UjetEmulator(chats_per_day=48) as emu:
        answers = [_chats(emu, http, **days[n % 2]).json() for n in range(6)]
    assert answers[0] == answers[2] == answers[4] and answers[1] == answers[3] == answers[5]
    assert answers[0] and answers[1] and answers[0] != answers[1]
    assert emu.generations == 2


def test_concurrent_clients_get_consistent_pages(emu: UjetEmulator) -> None:
    expected = sorted(_expected(), key=lambda r: (r["id"], r["updated_at"]))
    results: dict[int, list[dict[str, Any]]] = {}

    def client(number: int) -> None:
        with requests.Session() as session:
            session.auth = AUTH
            results[number] = _pull_all(emu, session, per=7, **WINDOW)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(results) == 8
    assert all(records == expected for records in results.values())


def test_stop_is_quick_with_busy_and_idle_connections(http: requests.Session) -> None:
    emu = UjetEmulator().start()
    url = f"{emu.base_url}/chats"
    assert http.get(url, params=WINDOW, timeout=5).status_code == 200  # leaves a keep-alive
    emu.inject("slow", seconds=30)
    outcome: list[BaseException] = []

    def hung_client() -> None:
        try:
            requests.get(url, auth=AUTH, timeout=40)
        except requests.RequestException as exc:
            outcome.append(exc)

    hung = threading.Thread(target=hung_client)
    hung.start()
    time.sleep(0.2)
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 2
    hung.join(timeout=5)
    assert not hung.is_alive()
    assert outcome and isinstance(outcome[0], requests.ConnectionError)
    with pytest.raises(requests.ConnectionError):
        http.get(url, params=WINDOW, timeout=2)  # neither a new nor a kept-alive connection


def test_the_demo_rhythm_follows_the_emulators_time_zone(http: requests.Session) -> None:
    with UjetEmulator(chats_per_day=100, timezone="Asia/Seoul") as seoul:
        served = _pull_all(seoul, http, **WINDOW)
    expected = demo_data.chats_updated_between(
        DAY, DAY + timedelta(hours=23, minutes=59, seconds=59), 100, timezone="Asia/Seoul"
    )
    assert sorted(served, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    utc = _expected(100)
    assert {r["created_at"] for r in served} != {r["created_at"] for r in utc}  # another zone


def test_a_window_holding_two_versions_of_a_chat_serves_the_newest(
    http: requests.Session,
) -> None:
    """A local day straddles two UTC days, so it can hold a chat and its next-day update."""
    start, end = datetime(2026, 1, 11, 15, tzinfo=UTC), datetime(2026, 1, 12, 15, tzinfo=UTC)
    versions = demo_data.chats_updated_between(start, end, 400)
    ids = Counter(r["id"] for r in versions)
    assert max(ids.values()) == 2, "the window must catch some chat twice"
    params = _bounds("2026-01-11T15:00:00Z", "2026-01-12T15:00:00Z")
    with UjetEmulator(chats_per_day=400) as emu:
        first = _chats(emu, http, per=100, **params)
        served = _pull_all(emu, http, per=100, **params)
    assert int(first.headers["total"]) == len(ids) == len(served)
    newest = {r["id"]: r for r in versions}  # in updated_at order: the last one is the newest
    assert sorted(served, key=lambda r: r["id"]) == sorted(newest.values(), key=lambda r: r["id"])


def test_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chat_assets_demo.emulator",
            "--port",
            str(port),
            "--personality",
            "strict_5",
            "--chats-per-day",
            "100",
            "--timezone",
            "Asia/Seoul",
            "--no-seasonal",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        credentials = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/manager/api/v1" in banner
        assert "demo-key" in credentials and "demo-secret" in credentials
        response = requests.get(
            f"http://127.0.0.1:{port}/manager/api/v1/chats", auth=AUTH, params=WINDOW, timeout=5
        )
        assert response.status_code == 200
        assert response.headers["total"] == "120"  # 100 new chats, 20 later versions
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=5)
        assert process.returncode == 0
    assert "emulator: 1 request for chats, 0 answered 429;" in out
    # benchmarks.fetch_rate reads the rate and the counts from that line.
    served = served_summary(out)
    assert served["requests"] == 1 and served["answered_429"] == 0 and served["rate"] == 0


def test_prepared_days_serve_the_same_bytes_without_building_them(
    http: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day prepared ahead answers every page byte for byte as one built while it is read,
    without building a chat or generating the day again."""
    start = datetime(2024, 3, 1, 15, tzinfo=UTC)
    window = _bounds("2024-03-01T15:00:00Z", "2024-03-02T15:00:00Z")
    pages = [dict(window, page=str(n), per="20") for n in (1, 2, 3)]
    with UjetEmulator(chats_per_day=48) as built:
        expected = [_chats(built, http, **page).content for page in pages]
    with UjetEmulator(chats_per_day=48) as prepared:
        assert prepared.prepare(start, start + timedelta(days=1)) >= 48
        generations = prepared.generations
        monkeypatch.setattr(demo_data, "build_chat", _never_built)
        answers = [_chats(prepared, http, **page).content for page in pages]
    assert answers == expected and all(json.loads(page) for page in answers)
    assert prepared.generations == generations


def _never_built(key: object) -> dict[str, Any]:
    raise AssertionError("a prepared chat was built again")
