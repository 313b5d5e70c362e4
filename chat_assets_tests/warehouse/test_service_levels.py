"""queue_service_levels and queue_intervals against a real PostgreSQL: always equal to a
recomputation of their facts, and the intervals of a day adding up to the day.

The reference aggregation here is written in Python from the definitions (README, issue terms),
independently of the SQL the declarations compile to.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_assets.checks import declared, reconciliation, uniqueness
from chat_assets.tables import (
    CHAT_QUEUE_DURATIONS,
    CHATS,
    DERIVED_TABLES,
    QUEUE_INTERVALS,
    QUEUE_SERVICE_LEVELS,
    RAW_CHATS,
    Table,
    rolled_up,
)
from chat_assets.warehouse import aggregates, bookkeeping, ddl, newest_wins, windows
from chat_assets.warehouse.connection import WarehouseError
from chat_assets_tests.reference_flattening import newest_versions
from chat_assets_tests.windows import day_window, landing_frame

FIRST = date(2026, 3, 6)  # America/New_York springs forward on 2026-03-08
DAYS = 4
_schemas = itertools.count()


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def segment(n: int, started: datetime | None, queue: int | None, **fields: Any) -> dict:
    return {
        "id": n,
        "menu_path_id": queue,
        "menu_path": None if queue is None else f"Support/Queue {queue}",
        "started_at": None if started is None else stamp(started),
        "queue_duration": 30,
        "event": "answered",
        "service_level_event": "in_sla",
        "service_level_target_time": 60,
        "service_level_target_percent": 80,
        **fields,
    }


def chat(chat_id: int, updated: datetime, segments: list[dict], **fields: Any) -> dict:
    return {"id": chat_id, "updated_at": stamp(updated), "queue_durations": segments, **fields}


def rated(created: datetime, rating: Any, materialized_path: str | None) -> dict[str, Any]:
    """A chat's own fields that place its rating in a queue's CSAT."""
    menu = None if materialized_path is None else {"materialized_path": materialized_path}
    return {"created_at": stamp(created), "rating": rating, "menu_path": menu}


def land_day(engine, schema: str, timezone: str, versions: list[dict], day: date) -> None:
    """raw_chats' partition of `day`: the versions updated in its window, newest per chat."""
    start, end = day_window(day, timezone)
    inside = [
        v
        for v in versions
        if start <= datetime.fromisoformat(v["updated_at"].replace("Z", "+00:00")) < end
    ]
    frame = landing_frame(newest_versions(inside), timezone, "k1:test")
    windows.replace_window(engine, schema, RAW_CHATS, frame, start, end)


def apply_day(
    engine, schema: str, timezone: str, day: date, interval_minutes: int = 30
) -> list[newest_wins.Applied]:
    start, end = day_window(day, timezone)
    return newest_wins.apply_newest(
        engine,
        schema,
        DERIVED_TABLES,
        start,
        end,
        timezone=timezone,
        interval_minutes=interval_minutes,
    )


def _value(value: Any) -> Any:
    return None if value is None or pd.isna(value) else value


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _queue_of_chat(materialized_path: Any) -> int | None:
    """The last id of the chat's menu path: the digits after the last non-digit."""
    text = _value(materialized_path)
    if text is None:
        return None
    digits = len(text) - len(text.rstrip("0123456789"))
    return int(text[-digits:]) if 0 < digits <= 18 else None


def _abandon(s: Any) -> str | None:
    """'short' or 'long' for a segment the customer abandoned, else None."""
    if _value(s.event) != "abandoned":
        return None
    queue, threshold = _value(s.queue_duration), _value(s.service_level_abandon_time_threshold)
    return "short" if queue is not None and threshold is not None and queue < threshold else "long"


def interval_of(moment: datetime, zone: ZoneInfo, minutes: int) -> datetime:
    """The start of the interval an instant falls in: whole intervals of `minutes` counted from
    the local midnight of its local day."""
    midnight = datetime.combine(moment.astimezone(zone).date(), time(), zone).astimezone(UTC)
    return midnight + (moment - midnight) // timedelta(minutes=minutes) * timedelta(minutes=minutes)


def reference(
    segments: pd.DataFrame, chats: pd.DataFrame, timezone: str, interval_minutes: int | None = None
) -> pd.DataFrame:
    """The definitions, applied row by row to the stored segments and chats: per queue and
    local day, or with `interval_minutes`, per queue and interval."""
    zone = ZoneInfo(timezone)

    def period(moment: datetime) -> date | datetime:
        if interval_minutes is None:
            return moment.astimezone(zone).date()
        return interval_of(moment, zone, interval_minutes)

    groups: dict[tuple[Any, int | None], list[Any]] = {}
    ratings: dict[tuple[Any, int | None], list[float]] = {}
    for s in segments.itertuples(index=False):
        if pd.isna(s.started_at):
            continue
        key = (period(s.started_at), _value(s.menu_path_id))
        groups.setdefault(key, []).append(s)
    for c in chats.itertuples(index=False):
        rating = _value(c.rating)
        if pd.isna(c.created_at) or rating is None or not 1 <= rating <= 5:
            continue
        key = (period(c.created_at), _queue_of_chat(c.menu_path_materialized_path))
        ratings.setdefault(key, []).append(rating)
    rows = []
    for when, queue in groups.keys() | ratings.keys():
        day = when if interval_minutes is None else None
        group, rates = groups.get((when, queue), []), ratings.get((when, queue), [])
        latest = max(group, key=lambda s: (s.started_at, s.chat_id, s.position), default=None)
        verdicts = [_value(s.service_level_event) for s in group]
        in_sla, not_in_sla = verdicts.count("in_sla"), verdicts.count("not_in_sla")
        durations = [int(s.queue_duration) for s in group if _value(s.queue_duration) is not None]
        answered_waits = [
            int(s.queue_duration)
            for s in group
            if _value(s.event) == "answered" and _value(s.queue_duration) is not None
        ]
        answered = sum(_value(s.event) == "answered" for s in group)
        abandons = [_abandon(s) for s in group]
        target = None if latest is None else _value(latest.service_level_target_percent)
        counted = in_sla + not_in_sla
        satisfied = sum(r >= 4 for r in rates)
        key = (
            {"service_day": day}
            if interval_minutes is None
            else {"interval_start": when, "interval_minutes": interval_minutes}
        )
        rows.append(
            {
                **key,
                "menu_path_id": queue,
                "menu_path": None if latest is None else _value(latest.menu_path),
                "offered": len(group),
                "answered": answered,
                "in_sla": in_sla,
                "not_in_sla": not_in_sla,
                "excluded": verdicts.count("excluded"),
                "unclassified": sum(
                    v not in ("in_sla", "not_in_sla", "excluded") for v in verdicts
                ),
                "abandoned": abandons.count("long"),
                "short_abandoned": abandons.count("short"),
                "not_answered": len(group) - answered,
                "avg_queue_seconds": sum(durations) / len(durations) if durations else None,
                "asa_seconds": sum(answered_waits) / len(answered_waits)
                if answered_waits
                else None,
                "max_queue_seconds": max(durations) if durations else None,
                "target_time": None if latest is None else _value(latest.service_level_target_time),
                "target_percent": target,
                "target_settings": len(
                    {
                        (
                            _value(s.service_level_target_time),
                            _value(s.service_level_target_percent),
                        )
                        for s in group
                    }
                ),
                "rated_chats": len(rates),
                "mean_rating": sum(rates) / len(rates) if rates else None,
                "rated_4_or_5": satisfied,
                "service_level": _share(in_sla, counted),
                "met_target": None
                if not counted or target is None
                else in_sla * 100 >= target * counted,
                "abandon_rate": _share(abandons.count("long"), answered + abandons.count("long")),
                "rated_4_or_5_share": _share(satisfied, len(rates)),
            }
        )
    table = QUEUE_SERVICE_LEVELS if interval_minutes is None else QUEUE_INTERVALS
    return _comparable(pd.DataFrame(rows, columns=table.column_names), table)


def _comparable(frame: pd.DataFrame, table: Table = QUEUE_SERVICE_LEVELS) -> pd.DataFrame:
    """Rows as plain Python values in key order, doubles rounded for comparison."""
    records = [{k: _value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    for record in records:
        for name in (
            "avg_queue_seconds",
            "asa_seconds",
            "mean_rating",
            "service_level",
            "abandon_rate",
            "rated_4_or_5_share",
        ):
            if record[name] is not None:
                record[name] = round(float(record[name]), 9)
        for name, value in record.items():
            if hasattr(value, "item"):
                record[name] = value.item()
        if isinstance(record.get("interval_start"), datetime):
            record["interval_start"] = record["interval_start"].astimezone(UTC)
    records.sort(
        key=lambda r: (
            r[table.time_column],
            r["menu_path_id"] is not None,
            r["menu_path_id"] or 0,
        )
    )
    return pd.DataFrame(records, columns=table.column_names)


def everything(engine, schema: str, table) -> pd.DataFrame:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    return windows.load_window(engine, schema, table, start, start + timedelta(days=20_000))


def assert_mart_equals_facts(
    engine, schema: str, timezone: str, interval_minutes: int = 30
) -> None:
    """Both marts equal the reference from the facts, and every row counter is exact."""
    facts = everything(engine, schema, CHAT_QUEUE_DURATIONS)
    chats = everything(engine, schema, CHATS)
    mart = _comparable(everything(engine, schema, QUEUE_SERVICE_LEVELS))
    pd.testing.assert_frame_equal(mart, reference(facts, chats, timezone), check_dtype=False)
    intervals = _comparable(everything(engine, schema, QUEUE_INTERVALS), QUEUE_INTERVALS)
    pd.testing.assert_frame_equal(
        intervals, reference(facts, chats, timezone, interval_minutes), check_dtype=False
    )
    # Every write keeps its table's row counter exact.
    with engine.connect() as connection:
        for table in (RAW_CHATS, *DERIVED_TABLES, QUEUE_SERVICE_LEVELS, QUEUE_INTERVALS):
            counted = connection.exec_driver_sql(
                f'SELECT count(*) FROM "{schema}"."{table.name}"'
            ).scalar()
            assert bookkeeping.row_count(engine, schema, table) == counted, table.name


def local(day: date, hour: float, timezone: str) -> datetime:
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(timezone))
    return (midnight.astimezone(UTC) + timedelta(hours=hour)).astimezone(UTC)


@st.composite
def histories(draw) -> tuple[str, int, list[dict]]:
    """A few chats, each with versions updated on increasing days; segments start on the
    update's day or the one before, near local midnight or at odd minutes of the day, in two
    queues or none; the marts count intervals of 15, 30 or 60 minutes."""
    timezone = draw(st.sampled_from(["UTC", "America/New_York", "Asia/Seoul"]))
    interval_minutes = draw(st.sampled_from([15, 30, 60]))
    versions = []
    for chat_id in range(1, draw(st.integers(1, 5)) + 1):
        # All but the first chat have later versions, which may move segments between days.
        versions_of = 1 if chat_id == 1 else 2
        days = sorted(draw(st.sets(st.integers(0, DAYS - 1), min_size=versions_of, max_size=3)))
        for n, offset in enumerate(days):
            updated = local(FIRST + timedelta(days=offset), 20 + n * 0.01, timezone)
            segments = []
            for k in range(draw(st.integers(0, 3) if n else st.integers(1, 3))):
                # Hours after midnight: near it, on an interval's edge, and between edges.
                back = draw(st.sampled_from([-0.5, 0.25, 1, 23.5, 2.4, 13.999, 14.25]))
                started = (
                    None
                    if draw(st.integers(0, 9)) == 0
                    else local(
                        FIRST + timedelta(days=offset - draw(st.integers(0, 1))), back, timezone
                    )
                )
                segments.append(
                    segment(
                        k + 1,
                        started,
                        draw(st.sampled_from([1, 2, None])),
                        event=draw(st.sampled_from(["answered", "abandoned", "expired", None])),
                        service_level_abandon_time_threshold=draw(st.sampled_from([10, 45, None])),
                        service_level_event=draw(
                            st.sampled_from(["in_sla", "not_in_sla", "excluded", None, "other"])
                        ),
                        queue_duration=draw(st.sampled_from([0, 45, 300, None])),
                        service_level_target_percent=draw(st.sampled_from([80, 90.5, None])),
                        service_level_target_time=draw(st.sampled_from([20, 60])),
                    )
                )
            created = local(
                FIRST + timedelta(days=offset - draw(st.integers(0, 1))),
                draw(st.sampled_from([-0.5, 0.25, 23.5, 9.7])),
                timezone,
            )
            own = rated(
                created,
                draw(st.sampled_from([None, 0, 1, 3, 4, 5, "4"])),
                draw(st.sampled_from([None, "9/1", "2", "x", "9/"])),
            )
            versions.append(chat(chat_id, updated, segments, **own))
    return timezone, interval_minutes, versions


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(), order=st.lists(st.integers(0, DAYS - 1), min_size=1, max_size=7))
def test_in_any_order_of_applies_both_marts_equal_their_recomputation(
    engine, schema, history, order
):
    timezone, minutes, versions = history
    example = f"{schema}_{next(_schemas)}"
    marts = {QUEUE_SERVICE_LEVELS: lambda d: d, QUEUE_INTERVALS: _local_day(timezone)}
    try:
        for offset in range(DAYS):
            land_day(engine, example, timezone, versions, FIRST + timedelta(days=offset))
        for offset in order:
            before = {m: _comparable(everything(engine, example, m), m) for m in marts}
            apply_day(engine, example, timezone, FIRST + timedelta(days=offset), minutes)
            assert_mart_equals_facts(engine, example, timezone, minutes)
            for mart, day_of in marts.items():
                after = _comparable(everything(engine, example, mart), mart)
                changed = _days_changed(before[mart], after, mart.time_column, day_of)
                marked = {day for day, _ in aggregates.days_to_refresh(engine, example, mart)}
                assert changed <= marked, mart.name
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{example}" CASCADE')


def _local_day(timezone: str):
    return lambda instant: instant.astimezone(ZoneInfo(timezone)).date()


def _days_changed(before: pd.DataFrame, after: pd.DataFrame, time_column: str, day_of) -> set[date]:
    def by_day(frame: pd.DataFrame) -> dict[date, list]:
        days: dict[date, list] = {}
        for row in frame.to_dict(orient="records"):
            days.setdefault(day_of(row[time_column]), []).append(row)
        return days

    old, new = by_day(before), by_day(after)
    return {day for day in old.keys() | new.keys() if old.get(day) != new.get(day)}


def test_an_update_that_moves_a_segment_changes_both_service_days(engine, schema):
    timezone = "UTC"
    day1, day3 = FIRST, FIRST + timedelta(days=2)
    first = chat(7, local(day1, 12, timezone), [segment(1, local(day1, 9, timezone), 1)])
    # UJET's later version puts the (re-queued) segment on the third day instead.
    moved = chat(7, local(day3, 12, timezone), [segment(1, local(day3, 9, timezone), 1)])
    for day in (day1, day3):
        land_day(engine, schema, timezone, [first, moved], day)
    apply_day(engine, schema, timezone, day1)
    rows = everything(engine, schema, QUEUE_SERVICE_LEVELS)
    assert rows["service_day"].tolist() == [day1]
    applied = apply_day(engine, schema, timezone, day3)
    rows = everything(engine, schema, QUEUE_SERVICE_LEVELS)
    assert rows["service_day"].tolist() == [day3]
    facts = DERIVED_TABLES.index(CHAT_QUEUE_DURATIONS)
    assert applied[facts].days_recomputed == (day1, day3)
    marked = [day for day, _ in aggregates.days_to_refresh(engine, schema, QUEUE_SERVICE_LEVELS)]
    assert marked == [day1, day3]
    # Materializing a day clears its mark; the other stays for the catch-up sensor.
    start, end = day_window(day1, timezone)
    aggregates.recompute_window(
        engine, schema, QUEUE_SERVICE_LEVELS, timezone, start, end, interval_minutes=30
    )
    marked = [day for day, _ in aggregates.days_to_refresh(engine, schema, QUEUE_SERVICE_LEVELS)]
    assert marked == [day3]


def test_daylight_saving_days_hold_their_local_hours(engine, schema):
    timezone = "America/New_York"
    # 2026-11-01 has 25 hours: 01:30 happens twice (EDT, then EST).
    fall = date(2026, 11, 1)
    edt = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    est = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    last = datetime(2026, 11, 2, 4, 59, tzinfo=UTC)  # 23:59 EST, still Nov 1
    before = datetime(2026, 11, 1, 3, 59, tzinfo=UTC)  # 23:59 EDT on Oct 31
    versions = [
        chat(1, last, [segment(1, edt, 5), segment(2, est, 5), segment(3, last, 5)]),
        chat(2, last, [segment(1, before, 5)]),
    ]
    land_day(engine, schema, timezone, versions, fall)
    apply_day(engine, schema, timezone, fall)
    rows = everything(engine, schema, QUEUE_SERVICE_LEVELS).set_index("service_day")
    assert rows.loc[fall, "offered"] == 3
    assert rows.loc[date(2026, 10, 31), "offered"] == 1
    assert_mart_equals_facts(engine, schema, timezone)


def test_checks_fail_on_crafted_rows_and_pass_on_the_stored_ones(engine, schema):
    timezone = "UTC"
    day = FIRST
    versions = [
        chat(
            1,
            local(day, 12, timezone),
            [
                segment(1, local(day, 9, timezone), 1),
                segment(2, local(day, 10, timezone), 1, service_level_event="not_in_sla"),
                segment(3, local(day, 11, timezone), 2, service_level_event="excluded"),
            ],
        )
    ]
    land_day(engine, schema, timezone, versions, day)
    apply_day(engine, schema, timezone, day)
    start, end = day_window(day, timezone)
    stored = windows.load_window(engine, schema, QUEUE_SERVICE_LEVELS, start, end)
    assert stored.set_index("menu_path_id").loc[1, "service_level"] == 0.5
    assert reconciliation.reconciled(
        engine, schema, QUEUE_SERVICE_LEVELS, timezone, start, end, interval_minutes=30
    ).passed
    assert declared.counts_add_up(QUEUE_SERVICE_LEVELS, stored).passed
    assert declared.service_level_in_range(QUEUE_SERVICE_LEVELS, stored).passed
    assert uniqueness.unique_in_partition(QUEUE_SERVICE_LEVELS, stored).passed

    with engine.begin() as connection:
        connection.exec_driver_sql(
            f'UPDATE "{schema}".queue_service_levels SET offered = offered + 1,'
            " service_level = 1.5 WHERE menu_path_id = 1"
        )
    tampered = windows.load_window(engine, schema, QUEUE_SERVICE_LEVELS, start, end)
    result = reconciliation.reconciled(
        engine, schema, QUEUE_SERVICE_LEVELS, timezone, start, end, interval_minutes=30
    )
    assert not result.passed
    assert result.metadata["menu_path_ids"].value == [1]
    added = declared.counts_add_up(QUEUE_SERVICE_LEVELS, tampered)
    assert not added.passed and added.metadata["verdicts_not_offered"].value == 1
    level = declared.service_level_in_range(QUEUE_SERVICE_LEVELS, tampered)
    assert not level.passed and level.metadata["out_of_range"].value == 1
    doubled = pd.concat([tampered, tampered.head(1)])
    assert not uniqueness.unique_in_partition(QUEUE_SERVICE_LEVELS, doubled).passed
    # A fact changed behind the mart's back (no apply) is caught too.
    aggregates.recompute_window(
        engine, schema, QUEUE_SERVICE_LEVELS, timezone, start, end, interval_minutes=30
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE \"{schema}\".chat_queue_durations SET service_level_event = 'in_sla'"
            " WHERE position = 1"
        )
    assert not reconciliation.reconciled(
        engine, schema, QUEUE_SERVICE_LEVELS, timezone, start, end, interval_minutes=30
    ).passed


def test_a_table_older_than_its_row_counter_is_counted_once(engine, schema):
    timezone = "UTC"
    versions = [chat(1, local(FIRST, 12, timezone), [segment(1, local(FIRST, 9, timezone), 1)])]
    land_day(engine, schema, timezone, versions, FIRST)
    apply_day(engine, schema, timezone, FIRST)
    with engine.begin() as connection:  # as a deployment from before the counters
        connection.exec_driver_sql(f'DELETE FROM "{schema}"._row_counts')
    ddl._prepared.clear()
    apply_day(engine, schema, timezone, FIRST)
    assert bookkeeping.row_count(engine, schema, CHAT_QUEUE_DURATIONS) == 1
    assert bookkeeping.row_count(engine, schema, RAW_CHATS) == 1


def test_a_mart_of_an_earlier_shape_is_named_with_what_it_lacks_and_how_to_redo_it(engine, schema):
    timezone = "UTC"
    versions = [chat(1, local(FIRST, 12, timezone), [segment(1, local(FIRST, 9, timezone), 1)])]
    land_day(engine, schema, timezone, versions, FIRST)
    apply_day(engine, schema, timezone, FIRST)
    with engine.begin() as connection:  # as an earlier version made it
        connection.exec_driver_sql(
            f'ALTER TABLE "{schema}".queue_service_levels DROP COLUMN short_abandoned,'
            " DROP COLUMN asa_seconds"
        )
    ddl._prepared.clear()
    with pytest.raises(WarehouseError) as refused:
        apply_day(engine, schema, timezone, FIRST)
    assert str(refused.value) == (
        f"{schema}.queue_service_levels was created by an earlier version of chat_assets and"
        " lacks the columns short_abandoned, asa_seconds; its rows are computed from the chat"
        f' tables: DROP TABLE "{schema}"."queue_service_levels", then materialize'
        " queue_service_levels again for the days it should hold"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP TABLE "{schema}".queue_service_levels')
    ddl._prepared.clear()
    apply_day(engine, schema, timezone, FIRST)  # made anew, it takes the day's figures again
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f'SELECT count(*) FROM "{schema}".queue_service_levels'
        ).scalar_one()
    assert rows > 0


def test_counts_follow_ujets_definitions_of_answers_abandons_and_csat(engine, schema):
    """One queue's day with every outcome, and ratings of chats in two queues."""
    timezone = "UTC"
    day = FIRST

    def at(hour: float) -> datetime:
        return local(day, hour, timezone)

    def waited(n: int, seconds: int | None, event: str | None, **fields: Any) -> dict:
        return segment(
            n,
            at(9 + n / 10),
            1,
            **{
                "queue_duration": seconds,
                "event": event,
                "service_level_abandon_time_threshold": 10,
                **fields,
            },
        )

    segments = [
        waited(1, 30, "answered"),
        waited(2, 90, "answered", service_level_event="not_in_sla"),
        waited(3, 5, "abandoned", service_level_event="excluded"),  # short: under 10 s
        waited(4, 10, "abandoned", service_level_event="not_in_sla"),  # at the threshold
        waited(5, 50, "abandoned", service_level_abandon_time_threshold=None),
        waited(6, 300, "expired", service_level_event="not_in_sla"),  # a timeout
        waited(7, None, None, service_level_event=None),  # still waiting
    ]
    versions = [
        chat(1, at(12), segments, **rated(at(9), 5, "9/1")),
        chat(2, at(12), [], **rated(at(10), 3, "1")),
        chat(3, at(12), [], **rated(at(10), 0, "1")),  # the model's placeholder: no rating
        chat(4, at(12), [], **rated(at(11), None, "1")),
        chat(5, at(12), [], **rated(at(11), 4, "9/2")),  # a queue with ratings only
        chat(6, at(12), [], **rated(local(day, -1, timezone), 4, "1")),  # the day before
    ]
    land_day(engine, schema, timezone, versions, day)
    apply_day(engine, schema, timezone, day)
    rows = everything(engine, schema, QUEUE_SERVICE_LEVELS).set_index(
        ["service_day", "menu_path_id"]
    )
    queue = rows.loc[(day, 1)]
    assert (queue["offered"], queue["answered"], queue["not_answered"]) == (7, 2, 5)
    assert (queue["abandoned"], queue["short_abandoned"]) == (2, 1)
    assert queue["asa_seconds"] == 60.0  # answered only; avg_queue_seconds counts every wait
    assert queue["avg_queue_seconds"] == (30 + 90 + 5 + 10 + 50 + 300) / 6
    assert queue["abandon_rate"] == 2 / (2 + 2)
    assert (queue["rated_chats"], queue["rated_4_or_5"]) == (2, 1)
    assert (queue["mean_rating"], queue["rated_4_or_5_share"]) == (4.0, 0.5)
    ratings_only = rows.loc[(day, 2)]
    assert (ratings_only["offered"], ratings_only["answered"], ratings_only["rated_chats"]) == (
        0,
        0,
        1,
    )
    assert pd.isna(ratings_only["asa_seconds"]) and pd.isna(ratings_only["abandon_rate"])
    assert pd.isna(ratings_only["service_level"]) and ratings_only["rated_4_or_5_share"] == 1.0
    assert rows.loc[(day - timedelta(days=1), 1), "rated_chats"] == 1
    assert_mart_equals_facts(engine, schema, timezone)
    start, end = day_window(day, timezone)
    stored = windows.load_window(engine, schema, QUEUE_SERVICE_LEVELS, start, end)
    assert declared.counts_add_up(QUEUE_SERVICE_LEVELS, stored).passed

    tampered = stored.copy()
    tampered.loc[tampered["menu_path_id"] == 1, "short_abandoned"] = 4
    tampered.loc[tampered["menu_path_id"] == 2, "rated_4_or_5"] = 2
    tampered.loc[tampered["menu_path_id"] == 2, "answered"] = 1
    added = declared.counts_add_up(QUEUE_SERVICE_LEVELS, tampered).metadata
    assert added["abandons_over_not_answered"].value == 1
    assert added["abandons_over_not_answered_menu_path_ids"].value == [1]
    assert added["rated_4_or_5_over_rated"].value == 1
    assert added["outcomes_not_offered"].value == 1


def test_a_verdict_either_way_at_exactly_the_target_is_consistent():
    """UJET does not document whether a wait of exactly the target is in or out of SLA."""
    rows = pd.DataFrame(
        {
            "chat_id": [1, 2, 3, 4, 5],
            "event": ["answered", "answered", "answered", "answered", "abandoned"],
            "queue_duration": [60, 60, 59, 61, 30],
            "service_level_event": ["not_in_sla", "in_sla", "not_in_sla", "in_sla", "not_in_sla"],
            "service_level_target_time": [60] * 5,
            "service_level_target_percent": [80.0] * 5,
        }
    )
    result = declared.sla_consistent(CHAT_QUEUE_DURATIONS, rows).metadata
    assert result["not_in_sla_within_target"].value == 1
    assert result["not_in_sla_within_target_chat_ids"].value == [3]
    assert result["in_sla_over_target"].value == 1
    assert result["in_sla_over_target_chat_ids"].value == [4]


def partition_window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """A day's partition window as Dagster gives it: local midnights in the partitions' zone."""
    zone = ZoneInfo(timezone)
    return tuple(instant.astimezone(zone) for instant in day_window(day, timezone))


def test_a_days_intervals_add_up_to_its_row_and_a_tampered_interval_fails_the_checks(
    engine, schema
):
    timezone = "Asia/Seoul"
    day = FIRST

    def at(hour: float) -> datetime:
        return local(day, hour, timezone)

    outcomes = [
        {"event": "answered"},
        {"event": "answered", "service_level_event": "not_in_sla", "queue_duration": 400},
        {"event": "abandoned", "queue_duration": 5, "service_level_abandon_time_threshold": 10},
        {"event": "abandoned", "queue_duration": 90, "service_level_event": "not_in_sla"},
        {"event": None, "service_level_event": None, "queue_duration": None},
    ]
    # 60 segments over the day, at odd minutes, in three queues and none; ratings too.
    versions = [
        chat(
            n,
            at(23.9),
            [segment(1, at(n * 0.39), [1, 2, 3, None][n % 4], **outcomes[n % 5])],
            **rated(at(n * 0.37), [None, 2, 4, 5][n % 4], f"9/{n % 3 + 1}"),
        )
        for n in range(1, 61)
    ]
    land_day(engine, schema, timezone, versions, day)
    apply_day(engine, schema, timezone, day, interval_minutes=15)
    start, end = partition_window(day, timezone)
    daily = windows.load_window(engine, schema, QUEUE_SERVICE_LEVELS, start, end)
    intervals = windows.load_window(engine, schema, QUEUE_INTERVALS, start, end)
    assert len(intervals) > 3 * len(daily)
    assert set(intervals["interval_minutes"]) == {15}
    local_starts = intervals["interval_start"].dt.tz_convert(timezone)
    assert (local_starts.dt.date == day).all() and (local_starts.dt.minute % 15 == 0).all()
    # Every count of a queue's day is the sum over its intervals, the longest wait their longest.
    summed = intervals.groupby("menu_path_id", dropna=False).agg(
        {name: how for name, how in rolled_up(QUEUE_INTERVALS).items()}
    )
    expected = daily.set_index("menu_path_id")[list(summed.columns)]
    pd.testing.assert_frame_equal(
        summed.sort_index().astype("Int64"), expected.sort_index().astype("Int64")
    )
    assert {"offered", "rated_chats", "max_queue_seconds"} <= set(summed.columns)
    assert reconciliation.adds_up_to_day(
        engine, schema, QUEUE_INTERVALS, timezone, start, end
    ).passed
    assert reconciliation.reconciled(
        engine, schema, QUEUE_INTERVALS, timezone, start, end, interval_minutes=15
    ).passed
    assert all(r.passed for r in declared.partition_checks(QUEUE_INTERVALS, intervals))
    assert_mart_equals_facts(engine, schema, timezone, interval_minutes=15)
    # Recounted in other intervals than the stored ones, the day no longer reconciles.
    assert not reconciliation.reconciled(
        engine, schema, QUEUE_INTERVALS, timezone, start, end, interval_minutes=30
    ).passed

    with engine.begin() as connection:
        connection.exec_driver_sql(
            f'UPDATE "{schema}".queue_intervals SET answered = answered + 1,'
            " in_sla = in_sla + 1, offered = offered + 1 WHERE interval_start ="
            f' (SELECT min(interval_start) FROM "{schema}".queue_intervals'
            " WHERE menu_path_id = 2) AND menu_path_id = 2"
        )
    added = reconciliation.adds_up_to_day(engine, schema, QUEUE_INTERVALS, timezone, start, end)
    assert not added.passed
    assert added.metadata["menu_path_ids"].value == [2]
    assert (added.metadata["rows_missing"].value, added.metadata["rows_unexpected"].value) == (1, 1)
    fresh = reconciliation.reconciled(
        engine, schema, QUEUE_INTERVALS, timezone, start, end, interval_minutes=15
    )
    assert not fresh.passed and fresh.metadata["menu_path_ids"].value == [2]
    # The other days are not concerned.
    other = partition_window(day + timedelta(days=1), timezone)
    assert reconciliation.adds_up_to_day(engine, schema, QUEUE_INTERVALS, timezone, *other).passed


@pytest.mark.parametrize(
    ("timezone", "spring", "fall"),
    [
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),  # at 02:00 and 02:00
        # Midnight itself skipped (the day begins at 01:00), and repeated the day before.
        ("America/Santiago", date(2026, 9, 6), date(2026, 4, 4)),
        # Midnight skipped, and the hour after midnight repeated.
        ("America/Havana", date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_a_daylight_saving_day_has_46_or_50_half_hours(engine, schema, timezone, spring, fall):
    """A day of 23 hours and one of 25: their intervals start at the day's first instant and
    follow each other without gap or overlap, a repeated hour's twice."""
    versions = []
    for n, day in enumerate((spring, fall)):
        start, end = day_window(day, timezone)
        minutes = int((end - start).total_seconds() // 60)
        assert minutes == (23 if day == spring else 25) * 60
        # A segment every 10 minutes of the day's real time, the first at its first instant.
        segments = [
            segment(k + 1, start + timedelta(minutes=m), 1)
            for k, m in enumerate(range(0, minutes, 10))
        ]
        versions.append(chat(n + 1, end - timedelta(minutes=1), segments))
    for day in (spring, fall):
        land_day(engine, schema, timezone, versions, day)
    for minutes, spring_count, fall_count in ((30, 46, 50), (15, 92, 100), (60, 23, 25)):
        for day in (spring, fall):
            apply_day(engine, schema, timezone, day, interval_minutes=minutes)
        for day, count in ((spring, spring_count), (fall, fall_count)):
            first, _ = day_window(day, timezone)
            rows = windows.load_window(
                engine, schema, QUEUE_INTERVALS, *partition_window(day, timezone)
            )
            assert len(rows) == count, (minutes, day)
            assert rows["offered"].sum() == (23 if day == spring else 25) * 6
            assert rows["interval_start"].iloc[0] == pd.Timestamp(first)
            steps = rows["interval_start"].diff().dropna().unique()
            assert list(steps) == [pd.Timedelta(minutes=minutes)]
            local = rows["interval_start"].dt.tz_convert(timezone)
            assert (local.dt.date == day).all() and (local.dt.minute % minutes == 0).all()
            # The repeated hour's clock times start two intervals each.
            clocks = local.dt.strftime("%H:%M")
            assert clocks.nunique() == (count if day == spring else count - 60 // minutes)
        assert_mart_equals_facts(engine, schema, timezone, interval_minutes=minutes)
