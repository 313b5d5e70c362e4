"""The synthetic chats must look like the vendor's model and stay a pure function of the day."""

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from statistics import mean
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from chat_assets.checks import declared
from chat_assets.tables import CHAT_QUEUE_DURATIONS
from chat_assets_demo import demo_data
from chat_assets_tests.windows import day_window

DAY = datetime(2024, 3, 5, tzinfo=UTC)
DAY_END = DAY + timedelta(days=1) - timedelta(milliseconds=1)
# Three weeks of partitions in a zone far from UTC, to see the rhythm follow local time.
SEOUL = ZoneInfo("Asia/Seoul")
FIRST_MONDAY = date(2024, 3, 4)
WEEKS = 3

# Field lists written from the vendor's page (seed/000_e75b38adc4257749.txt), model and sample.
TOP_LEVEL = {
    "id", "lang", "chat_type", "status", "sub_status", "created_at", "assigned_at", "ends_at",
    "updated_at", "first_msg_sent_at", "last_msg_sent_at", "wait_duration", "queue_duration",
    "chat_duration", "verified", "rating", "has_feedback", "out_ticket_id", "out_ticket_url",
    "finish_reason", "fail_reason", "message_count", "average_response_time",
    "longest_response_time", "selected_menu", "menu_path", "agent_info", "end_user", "photos",
    "videos", "transfers", "handle_durations", "queue_durations", "participants",
    "consumer_handle_durations", "consumer_event_durations", "virtual_agent",
    "virtual_agent_deflected_escalations", "virtual_agent_handle_durations", "offer_type",
    "offer_events",
}  # fmt: skip
AGENT = {"id", "name", "last_name", "first_name", "agent_number", "avatar_url"}
MENU_OBJECT = {"items_count", "name", "materialized_path"}
OBJECTS = {
    "selected_menu": {
        "id", "name", "parent_id", "position", "deleted", "hidden", "menu_type", "output_msg",
    },
    "menu_path": MENU_OBJECT,
    "agent_info": AGENT,
    "end_user": {"id", "identifier", "out_contact_id"},
    "virtual_agent": {"id", "name"},
}  # fmt: skip
LISTS = {
    "photos": {"id", "photo_type", "url"},
    "videos": {"id", "url"},
    "transfers": {
        "id", "status", "fail_reason", "created_at", "from_menu", "to_menu", "from_agent",
        "to_agent",
    },
    "handle_durations": {
        "id", "agent_id", "acw_duration", "chat_duration", "wait_duration", "menu_path_id",
        "menu_path", "lang", "transfer", "transfer_id", "started_at", "ended_at", "event",
        "response_count", "response_time_total", "response_time_max", "response_time_avg",
        "assigned_connection_duration",
    },
    "queue_durations": {
        "id", "agent_id", "queue_duration", "menu_path_id", "menu_path", "lang", "transfer",
        "transfer_id", "transfer_cold", "started_at", "ended_at",
        "service_level_abandon_time_threshold", "service_level_event",
        "service_level_target_percent", "service_level_target_time", "event",
    },
    "participants": {
        "id", "type", "status", "call_id", "user_id", "end_user_id", "call_duration",
        "hold_duration", "connected_at", "ended_at", "fail_reason",
    },
    "consumer_handle_durations": {
        "id", "chat_duration", "message_count", "response_count", "response_time_total",
        "response_time_max", "response_time_avg", "started_at", "ended_at",
    },
    "consumer_event_durations": {
        "id", "type", "event", "duration", "menu_path_id", "menu_path", "lang", "started_at",
        "ended_at",
    },
    "virtual_agent_deflected_escalations": {
        "id", "deflection", "escalation_reason", "escalated_at", "menu_path_id", "menu_path",
        "lang", "virtual_agent",
    },
    "virtual_agent_handle_durations": {
        "id", "virtual_agent", "chat_duration", "escalation_reason", "response_count",
        "response_time_total", "response_time_max", "response_time_avg",
        "fallback_response_count", "initiated_by", "menu_path_id", "menu_path", "lang",
        "transfer", "transfer_id", "started_at", "ended_at",
    },
    "offer_events": {"casting_time", "group"},
}  # fmt: skip
STATUSES = {"queued", "assigned", "finished", "canceled", "failed", "no_response"}
CHAT_TYPES = {
    "Messaging Inbound (App Chat)",
    "Messaging Inbound (Web Chat)",
    "Messaging (SMS)",
}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _day(chats_per_day: int = 500, day: datetime = DAY) -> list[dict[str, Any]]:
    return demo_data.chats_updated_between(
        day, day + timedelta(days=1) - timedelta(milliseconds=1), chats_per_day
    )


def _ms(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@pytest.fixture(scope="module")
def day500() -> list[dict[str, Any]]:
    return _day(500)


def test_same_window_twice_gives_identical_records() -> None:
    start, end = DAY + timedelta(hours=3), DAY + timedelta(hours=30)
    first = demo_data.chats_updated_between(start, end, 100)
    second = demo_data.chats_updated_between(start, end, 100)
    assert first == second
    assert len(first) > 100


def test_a_sub_window_is_the_filtered_day(day500: list[dict[str, Any]]) -> None:
    """A pure function of the day: narrowing the window only filters, never regenerates."""
    start, end = DAY + timedelta(hours=6), DAY + timedelta(hours=9, minutes=30)
    window = demo_data.chats_updated_between(start, end, 500)
    expected = [r for r in day500 if start <= _ms(r["updated_at"]) <= end]
    assert window == expected
    assert 0 < len(window) < len(day500)


def test_bounds_are_inclusive(day500: list[dict[str, Any]]) -> None:
    target = day500[len(day500) // 2]
    moment = _ms(target["updated_at"])
    exact = demo_data.chats_updated_between(moment, moment, 500)
    assert target in exact
    assert all(r["updated_at"] == target["updated_at"] for r in exact)


def test_sorted_by_updated_at_then_id_and_within_the_day(day500: list[dict[str, Any]]) -> None:
    keys = [(_ms(r["updated_at"]), r["id"]) for r in day500]
    assert keys == sorted(keys)
    assert all(DAY <= moment <= DAY_END for moment, _ in keys)
    assert len(set(keys)) == len(keys)


def test_every_model_field_is_present(day500: list[dict[str, Any]]) -> None:
    non_empty: Counter[str] = Counter()
    non_null: Counter[str] = Counter()
    for record in day500:
        assert set(record) == TOP_LEVEL
        for name, fields in OBJECTS.items():
            if record[name] is not None:
                non_null[name] += 1
                assert set(record[name]) == fields, name
        for name, fields in LISTS.items():
            assert isinstance(record[name], list)
            assert len(record[name]) <= 3, name
            non_empty[name] += bool(record[name])
            for item in record[name]:
                assert set(item) == fields, name
        for transfer in record["transfers"]:
            assert set(transfer["from_menu"]) == set(transfer["to_menu"]) == MENU_OBJECT
            assert set(transfer["from_agent"]) == set(transfer["to_agent"]) == AGENT
    assert set(non_null) == set(OBJECTS), "every nullable object must also appear filled"
    assert set(non_empty) == set(LISTS), "every nested list must appear non-empty somewhere"


def test_timestamps_look_like_the_vendors(day500: list[dict[str, Any]]) -> None:
    stamps = 0
    for record in day500:
        for name in ("created_at", "updated_at", "assigned_at", "ends_at", "last_msg_sent_at"):
            if record[name] is not None:
                assert ISO_MS.match(record[name]), record[name]
                stamps += 1
        for item in record["handle_durations"] + record["queue_durations"]:
            assert ISO_MS.match(item["started_at"])
        assert record["created_at"] <= record["updated_at"]
    assert stamps > 4 * len(day500)


def test_types_and_nulls_follow_the_model(day500: list[dict[str, Any]]) -> None:
    statuses = Counter(r["status"] for r in day500)
    assert set(statuses) <= STATUSES
    assert statuses.most_common(1)[0][0] == "finished"
    assert {r["chat_type"] for r in day500} == CHAT_TYPES
    for record in day500:
        assert isinstance(record["id"], int)
        if record["status"] in ("queued", "canceled"):
            assert record["agent_info"] is None
        if record["status"] in ("assigned", "finished"):
            assert record["agent_info"] is not None
        assert (record["selected_menu"] is None) == (record["menu_path"] is None)
        for item in record["handle_durations"]:
            assert isinstance(item["menu_path"], str)
            assert item["transfer"] in (0, 1)
        if record["menu_path"] is not None:
            assert isinstance(record["menu_path"], dict)
        assert record["wait_duration"] == record["queue_duration"]
    for name in ("selected_menu", "agent_info", "virtual_agent", "rating", "fail_reason"):
        values = [r[name] for r in day500]
        assert None in values and any(v is not None for v in values), name
    assert {r["fail_reason"] for r in day500} >= {None, "no_response", "expired"}


def test_service_level_event_agrees_with_queue_time(day500: list[dict[str, Any]]) -> None:
    seen: Counter[str] = Counter()
    for record in day500:
        for item in record["queue_durations"]:
            event = item["service_level_event"]
            seen[event] += 1
            assert item["service_level_target_percent"] in (80, 90)
            if event == "in_sla":
                assert item["queue_duration"] <= item["service_level_target_time"]
            elif event == "not_in_sla" and item["event"] == "answered":
                assert item["queue_duration"] > item["service_level_target_time"]
            elif event == "excluded":
                assert item["event"] != "answered"
            elif event is None:  # still waiting: no outcome and no end yet
                assert item["event"] is None and item["ended_at"] is None
                assert record["status"] == "queued"
    assert set(seen) == {"in_sla", "not_in_sla", "excluded", None}


def test_child_ids_unique_across_chats(
    day500: list[dict[str, Any]],
) -> None:
    for name in (
        "handle_durations",
        "queue_durations",
        "transfers",
        "participants",
        "consumer_handle_durations",
        "consumer_event_durations",
        "virtual_agent_handle_durations",
        "virtual_agent_deflected_escalations",
    ):
        owners: dict[int, set[int]] = {}
        for record in day500:
            ids = [item["id"] for item in record[name]]
            assert len(ids) == len(set(ids)), (name, record["id"])
            for child_id in ids:
                owners.setdefault(child_id, set()).add(record["id"])
        assert owners and all(len(chats) == 1 for chats in owners.values()), name


def test_every_list_holds_what_a_contact_center_sends(day500: list[dict[str, Any]]) -> None:
    """Bot sessions that escalate, CSAT surveys after rated chats, offer cascades, short and
    long abandons, timeouts, segments still waiting (one in each chat still queued, none
    after), and participants who join the chat's own pseudonymous ids."""
    outcomes: Counter[str] = Counter()
    cascades = 0
    for record in day500:
        sessions = record["virtual_agent_handle_durations"]
        escalations = record["virtual_agent_deflected_escalations"]
        assert len(sessions) == len(escalations) == (record["virtual_agent"] is not None)
        for session, escalation in zip(sessions, escalations, strict=True):
            assert session["ended_at"] == escalation["escalated_at"]
            assert session["escalation_reason"] == escalation["escalation_reason"]
        surveys = [e for e in record["consumer_event_durations"] if e["type"] == "csat"]
        assert len(surveys) == (record["rating"] is not None), record["id"]
        cascades += len(record["offer_events"]) > 1
        waiting = [item for item in record["queue_durations"] if item["event"] is None]
        assert len(waiting) == (record["status"] == "queued"), record["id"]
        for item in record["queue_durations"]:
            if item["event"] == "abandoned":
                short = item["queue_duration"] < item["service_level_abandon_time_threshold"]
                outcomes["short abandon" if short else "abandon"] += 1
            else:
                outcomes[item["event"]] += 1
        for person in record["participants"]:
            if person["type"] == "end_user":
                assert person["end_user_id"] == record["end_user"]["id"]
            else:
                agents = {h["agent_id"] for h in record["handle_durations"]}
                if record["agent_info"] is not None:
                    agents.add(record["agent_info"]["id"])
                assert person["user_id"] in agents
    assert cascades > 0
    assert set(outcomes) >= {"answered", "abandon", "short abandon", "expired", None}, outcomes


def test_second_versions_arrive_one_to_five_days_later() -> None:
    today = _day(400)
    earlier = [_day(400, DAY - timedelta(days=n)) for n in range(1, 6)]
    created_before = {
        r["id"]: r
        for day in earlier
        for r in day
        if _ms(r["created_at"]) >= DAY - timedelta(days=5)
    }
    seconds = [r for r in today if _ms(r["created_at"]) < DAY]
    assert seconds and all(r["id"] in created_before for r in seconds)
    days_later = Counter(
        (_ms(r["updated_at"]).date() - _ms(r["created_at"]).date()).days for r in seconds
    )
    assert set(days_later) == {1, 2, 3, 4, 5}
    assert days_later[1] > days_later[2] > days_later[5] > 0  # most the next day, some later
    for second in seconds:
        first = created_before[second["id"]]
        assert second["created_at"] == first["created_at"]
        assert _ms(second["updated_at"]) > _ms(first["updated_at"])
        assert _ms(second["updated_at"]) >= DAY
        assert first["status"] in ("queued", "assigned")
        assert second["status"] in ("finished", "canceled", "no_response")
        # Only the writing is late: the chat ended soon after version 1, or when reopened.
        assert _ms(first["updated_at"]) <= _ms(second["ends_at"]) <= _ms(second["updated_at"])
        if first["status"] == "queued":  # its waiting segment ended: the customer gave up
            (waiting,) = first["queue_durations"]
            assert waiting["event"] is None
            (ended,) = [
                q for q in second["queue_durations"] if q["started_at"] == waiting["started_at"]
            ]
            assert ended["event"] == "abandoned" and ended["ended_at"] is not None
    changed_lists = Counter(
        name
        for second in seconds
        for name in LISTS
        if len(second[name]) != len(created_before[second["id"]][name])
    )
    assert changed_lists["handle_durations"] > 0
    assert any(
        len(s[name]) < len(created_before[s["id"]][name])
        for s in seconds
        for name in ("photos", "offer_events")
    ), "some second versions must have fewer children"
    assert any(s["rating"] is not None for s in seconds)
    assert any(len(s["transfers"]) > len(created_before[s["id"]]["transfers"]) for s in seconds)


def test_ids_do_not_collide_across_days() -> None:
    tuesday, wednesday = _day(300, DAY), _day(300, DAY + timedelta(days=1))
    new_tuesday = [r["id"] for r in tuesday if _ms(r["created_at"]) >= DAY]
    new_wednesday = [r["id"] for r in wednesday if _ms(r["created_at"]) >= DAY + timedelta(days=1)]
    assert len(set(new_tuesday)) == len(new_tuesday) > 200
    assert len(set(new_wednesday)) == len(new_wednesday) > 200
    assert not set(new_tuesday) & set(new_wednesday)


def test_a_version_builds_from_its_key_alone() -> None:
    keys = demo_data.chat_version_keys(DAY, DAY_END, 60)
    records = demo_data.chats_updated_between(DAY, DAY_END, 60)
    assert [(k.chat_id, demo_data.iso_ms(k.updated_ms)) for k in keys] == [
        (r["id"], r["updated_at"]) for r in records
    ]
    second = next(k for k in keys if k.version == 2)
    assert demo_data.build_chat(second) == records[keys.index(second)]
    assert demo_data.build_chat(second) is not demo_data.build_chat(second)


def test_personal_looking_values_are_present(day500: list[dict[str, Any]]) -> None:
    identifiers = [r["end_user"]["identifier"] for r in day500]
    patterns = {
        "korean mobile": r"^010-\d{4}-\d{4}$",
        "e164": r"^\+1415555\d{4}$",
        "formatted us": r"^\(415\) 555-\d{4}$",
        "email": r"^[a-z]+\.[a-z]+\d*@example\.com$",
        "korean name": r"^[가-힣]{3}$",
    }
    for label, pattern in patterns.items():
        assert any(re.match(pattern, i) for i in identifiers), label
    agent_names = {r["agent_info"]["name"] for r in day500 if r["agent_info"]}
    assert any(re.match(r"^[가-힣]{3}$", n) for n in agent_names)
    assert any(re.match(r"^[A-Z][a-z]+ [A-Z][a-z]+$", n) for n in agent_names)
    photo_urls = [p["url"] for r in day500 for p in r["photos"]]
    assert photo_urls
    assert all("X-Amz-Signature=" in url for url in photo_urls)
    assert any(r["end_user"]["out_contact_id"] for r in day500)
    tickets = [r["out_ticket_url"] for r in day500 if r["out_ticket_url"]]
    assert tickets and all(
        re.match(r"^https://support\.example\.test/tickets/\d+$", t) for t in tickets
    )


def test_only_reserved_domains_are_used(day500: list[dict[str, Any]]) -> None:
    urls = re.findall(r"https?://[^\s\"?]+", repr(day500))
    hosts = {urlsplit(url).hostname or "" for url in urls}
    assert hosts
    assert all(h.endswith((".test", "example.com")) for h in hosts), hosts
    emails = [r["end_user"]["identifier"] for r in day500 if "@" in r["end_user"]["identifier"]]
    assert emails and all(e.endswith("@example.com") for e in emails)


def test_without_seasons_a_day_holds_exactly_its_chats_and_second_versions() -> None:
    """What the benchmarks rely on for a fixed size."""
    records = demo_data.chats_updated_between(DAY, DAY_END, 2000, seasonal=False)
    assert len(records) == 2400  # 2,000 new chats and 400 second versions of earlier days
    assert len({r["id"] for r in records}) == 2400
    assert sum(_ms(r["created_at"]) >= DAY for r in records) == 2000
    hours = Counter(_ms(r["created_at"]).hour for r in records if _ms(r["created_at"]) >= DAY)
    assert min(hours.values()) > 2000 / 24 * 0.8  # evenly over the day


def test_rejects_naive_datetimes_and_absurd_volumes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        demo_data.chats_updated_between(datetime(2024, 1, 1), DAY)
    with pytest.raises(ValueError, match="chats_per_day"):
        demo_data.chats_updated_between(DAY, DAY_END, 2_000_000)
    assert demo_data.chats_updated_between(DAY_END, DAY) == []


Days = dict[date, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def seoul_weeks() -> Days:
    """Each local day's records, as its partition fetches them (200 chats a day on average)."""
    days: Days = {}
    for offset in range(7 * WEEKS):
        day = FIRST_MONDAY + timedelta(days=offset)
        start, end = day_window(day, "Asia/Seoul")
        days[day] = demo_data.chats_updated_between(
            start, end - timedelta(milliseconds=1), 200, timezone="Asia/Seoul"
        )
    return days


def _created_that_day(day: date, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if _ms(r["created_at"]).astimezone(SEOUL).date() == day]


def _week(number: int) -> list[date]:
    return [FIRST_MONDAY + timedelta(days=7 * number + n) for n in range(7)]


def _in_sla_rate(items: list[dict[str, Any]]) -> float:
    events = Counter(item["service_level_event"] for item in items)
    return events["in_sla"] / (events["in_sla"] + events["not_in_sla"])


def test_weekdays_are_busier_than_weekends_and_days_differ(seoul_weeks: Days) -> None:
    new = {day: len(_created_that_day(day, records)) for day, records in seoul_weeks.items()}
    for number in range(WEEKS):
        week = [new[day] for day in _week(number)]
        assert min(week[:5]) > 1.3 * max(week[5:]), week
    for weekday in range(7):
        same = [new[_week(number)[weekday]] for number in range(WEEKS)]
        assert max(same) > 1.03 * min(same), f"weekday {weekday} is flat across weeks: {same}"
    assert 0.85 * 200 < mean(new.values()) < 1.15 * 200  # chats_per_day is the average


def test_daytime_is_busier_than_night_in_local_time(seoul_weeks: Days) -> None:
    created = [
        _ms(r["created_at"])
        for day, records in seoul_weeks.items()
        for r in _created_that_day(day, records)
    ]
    local = Counter(moment.astimezone(SEOUL).hour for moment in created)
    daytime = mean(local[hour] for hour in range(9, 17))
    night = mean(local[hour] for hour in range(0, 6))
    assert daytime > 5 * night
    assert 9 <= max(local, key=local.__getitem__) <= 15
    utc = Counter(moment.astimezone(UTC).hour for moment in created)
    assert 0 <= max(utc, key=utc.__getitem__) <= 6  # Seoul's late morning, not UTC's


def test_each_queue_has_its_own_targets(seoul_weeks: Days) -> None:
    targets: defaultdict[str, set[tuple[int, int, int, int]]] = defaultdict(set)
    for records in seoul_weeks.values():
        for record in records:
            for item in record["queue_durations"]:
                targets[item["menu_path"]].add(
                    (
                        item["menu_path_id"],
                        item["service_level_target_time"],
                        item["service_level_target_percent"],
                        item["service_level_abandon_time_threshold"],
                    )
                )
    assert all(len(found) == 1 for found in targets.values()), targets
    target = {path: next(iter(found))[1:] for path, found in targets.items()}
    seconds = {path: found[0] for path, found in target.items()}
    assert seconds["Sales/New order"] < seconds["Support/Billing"]
    assert seconds["Support/Billing"] < seconds["Support/Technical issue"]
    assert seconds["VIP/Priority"] == min(seconds.values())
    assert target["VIP/Priority"][1] == max(found[1] for found in target.values()) == 90
    assert len(set(target.values())) >= 5


def test_a_bad_afternoon_every_week_misses_the_targets(seoul_weeks: Days) -> None:
    """One weekday afternoon a week, waits balloon: the in-SLA rate falls, abandons rise."""
    for number in range(WEEKS):
        afternoon_rate, abandoned, partition_rate = {}, {}, {}
        for day in _week(number)[:5]:
            afternoon = [
                r
                for r in _created_that_day(day, seoul_weeks[day])
                if 12 <= _ms(r["created_at"]).astimezone(SEOUL).hour < 18
            ]
            queued = [item for r in afternoon for item in r["queue_durations"]]
            afternoon_rate[day] = _in_sla_rate(queued)
            abandoned[day] = sum(r["status"] == "canceled" for r in afternoon) / len(afternoon)
            partition_rate[day] = _in_sla_rate(
                [q for r in seoul_weeks[day] for q in r["queue_durations"]]
            )
        bad = min(afternoon_rate, key=afternoon_rate.__getitem__)
        others = [day for day in afternoon_rate if day != bad]
        assert afternoon_rate[bad] < 0.6
        assert min(afternoon_rate[day] for day in others) > 0.8
        assert abandoned[bad] > 2 * mean(abandoned[day] for day in others)
        # What the UI plots per partition dips that day too.
        assert partition_rate[bad] < min(partition_rate[day] for day in others) - 0.05


# The generator caps a queue wait at an hour (bad afternoons included) and a conversation with
# an agent at an hour and a half; a minute of margin on each.
LONGEST_WAIT = timedelta(hours=1, minutes=1)
LONGEST_LEG = timedelta(hours=1, minutes=31)


def _span(item: dict[str, Any], record: dict[str, Any]) -> timedelta:
    """How long a segment lasted; one still going, until its chat's version was written."""
    return _ms(item["ended_at"] or record["updated_at"]) - _ms(item["started_at"])


def test_no_wait_or_agent_leg_lasts_for_days_even_when_written_days_later(
    seoul_weeks: Days,
) -> None:
    """A chat whose second version comes days later keeps waits and legs of minutes: the
    lateness is in the writing, and a reopened chat queues anew shortly before its update."""
    records = [r for day in seoul_weeks.values() for r in day]
    versions: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        versions[record["id"]].append(record)
        for item in record["queue_durations"]:
            assert timedelta(0) <= _span(item, record) <= LONGEST_WAIT, (record["id"], item)
            assert item["queue_duration"] == _span(item, record) // timedelta(seconds=1), item
        for item in record["handle_durations"]:
            assert timedelta(0) <= _span(item, record) <= LONGEST_LEG, (record["id"], item)
            assert item["chat_duration"] == _span(item, record) // timedelta(seconds=1), item
        assert record["wait_duration"] == record["queue_duration"]
        assert timedelta(seconds=record["queue_duration"]) <= LONGEST_WAIT, record["id"]
        assert timedelta(seconds=record["chat_duration"]) <= LONGEST_LEG, record["id"]
    pairs = [sorted(found, key=lambda r: r["updated_at"]) for found in versions.values()]
    pairs = [pair for pair in pairs if len(pair) == 2]
    assert len(pairs) > 300  # both versions of many chats, some late by days
    assert max(_ms(b["updated_at"]) - _ms(a["updated_at"]) for a, b in pairs) > timedelta(days=4)
    near = LONGEST_WAIT + LONGEST_LEG
    requeued = 0
    for first, second in pairs:
        written = _ms(first["updated_at"]), _ms(second["updated_at"])
        for item in second["queue_durations"] + second["handle_durations"]:
            started = _ms(item["started_at"])
            assert started <= written[0] + near or written[1] - near <= started, item
            requeued += started > written[0] + near
    assert requeued > 50  # reopened chats queue again near their second version


def _assert_sla_follows_the_targets(records: list[dict[str, Any]]) -> None:
    """UJET's definition: answered within the target time is in_sla, later not_in_sla; an
    abandon shorter than the abandon threshold is excluded, a longer one not_in_sla; a segment
    still waiting has no verdict yet."""
    for record in records:
        for item in record["queue_durations"]:
            wait, event = item["queue_duration"], item["event"]
            if event == "answered":
                expected = "in_sla" if wait <= item["service_level_target_time"] else "not_in_sla"
            elif event == "abandoned":
                short = wait < item["service_level_abandon_time_threshold"]
                expected = "excluded" if short else "not_in_sla"
            elif event is None:
                expected = None
            else:
                expected = "excluded"
            assert item["service_level_event"] == expected, (record["id"], item)


def test_the_sla_outcome_follows_wait_and_target_on_bad_days_too(seoul_weeks: Days) -> None:
    records = [r for day in seoul_weeks.values() for r in day]
    _assert_sla_follows_the_targets(records)
    rows = pd.DataFrame(
        [{"chat_id": r["id"], **item} for r in records for item in r["queue_durations"]]
    )
    result = declared.sla_consistent(CHAT_QUEUE_DURATIONS, rows)
    assert result.passed, result.metadata
    assert set(rows["event"].dropna()) == {"answered", "abandoned", "failed", "expired"}
    assert rows["event"].isna().any()  # segments still waiting


def test_a_day_is_the_same_in_another_process() -> None:
    """No salted hash, clock or process state leaks into the data."""
    code = (
        "import hashlib, json, sys\n"
        "from datetime import datetime, timedelta, UTC\n"
        "from chat_assets_demo import demo_data\n"
        "day = datetime(2024, 3, 8, tzinfo=UTC)\n"
        "records = demo_data.chats_updated_between(\n"
        "    day, day + timedelta(days=1), 300, timezone='Asia/Seoul')\n"
        "print(hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest())\n"
    )
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    day = datetime(2024, 3, 8, tzinfo=UTC)
    records = demo_data.chats_updated_between(
        day, day + timedelta(days=1), 300, timezone="Asia/Seoul"
    )
    here = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
    assert other.stdout.strip() == here
