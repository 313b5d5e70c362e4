"""Newest-wins writes against a real PostgreSQL, in any order, including a property test."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_assets.tables import CHAT_TRANSFERS, CHATS, DERIVED_TABLES, RAW_CHATS, Table
from chat_assets.warehouse import newest_wins, windows
from chat_assets_tests.reference_flattening import flatten, newest_versions
from chat_assets_tests.windows import landing_frame

DAY0 = datetime(2026, 2, 1, tzinfo=UTC)
_examples = itertools.count()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def version(chat_id: int, moment: datetime, transfers: int, status: str = "finished") -> dict:
    return {
        "id": chat_id,
        "updated_at": stamp(moment),
        "status": status,
        "queue_duration": transfers * 7,
        "transfers": [{"id": 100 + k, "status": f"v{moment.hour}"} for k in range(transfers)],
        "queue_durations": [{"id": 1, "queue_duration": 5, "service_level_event": "in_sla"}][
            : transfers % 2
        ],
        "handle_durations": [{"id": k, "chat_duration": moment.hour} for k in range(transfers)],
    }


def window(day: int) -> tuple[datetime, datetime]:
    start = DAY0 + timedelta(days=day)
    return start, start + timedelta(days=1)


def apply_partition(engine, schema: str, records: list[dict], day: int) -> None:
    """Land the day's versions in raw_chats (a window holds a chat once, in its newest
    version, as UJET serves it), then flatten and apply them in the warehouse."""
    start, end = window(day)
    frame = landing_frame(newest_versions(records), "UTC", "k1:test")
    windows.replace_window(engine, schema, RAW_CHATS, frame, start, end)
    newest_wins.apply_newest(
        engine, schema, DERIVED_TABLES, start, end, timezone="UTC", interval_minutes=30
    )


def stored(engine, schema: str, table: Table) -> pd.DataFrame:
    start, end = DAY0 - timedelta(days=1), DAY0 + timedelta(days=30)
    return windows.load_window(engine, schema, table, start, end).reset_index(drop=True)


def expected(records: list[dict], table: Table) -> pd.DataFrame:
    rows = flatten(records, table).rows
    return rows.sort_values(table.key).reset_index(drop=True)


def assert_state(engine, schema: str, kept: list[dict]) -> None:
    for table in DERIVED_TABLES:
        pd.testing.assert_frame_equal(stored(engine, schema, table), expected(kept, table))


def test_older_partition_applied_later_loses(engine, schema):
    old = version(1, DAY0 + timedelta(hours=3), transfers=2, status="assigned")
    new = version(1, DAY0 + timedelta(days=1, hours=4), transfers=0)
    apply_partition(engine, schema, [new], day=1)
    apply_partition(engine, schema, [old], day=0)
    assert_state(engine, schema, [new])
    assert stored(engine, schema, CHAT_TRANSFERS).empty  # the newer version has no transfers


def test_newer_version_replaces_children(engine, schema):
    old = version(1, DAY0 + timedelta(hours=3), transfers=3)
    new = version(1, DAY0 + timedelta(days=1, hours=4), transfers=1)
    other = version(2, DAY0 + timedelta(hours=5), transfers=2)
    apply_partition(engine, schema, [old, other], day=0)
    apply_partition(engine, schema, [new], day=1)
    assert_state(engine, schema, [new, other])


def test_reapplying_is_idempotent_and_loading_a_day_returns_its_kept_rows(engine, schema):
    a = version(1, DAY0 + timedelta(hours=1), transfers=1)
    b = version(2, DAY0 + timedelta(hours=2), transfers=2)
    b2 = version(2, DAY0 + timedelta(days=1, hours=2), transfers=1)
    for day, batch in [(0, [a, b]), (1, [b2]), (0, [a, b]), (1, [b2])]:
        apply_partition(engine, schema, batch, day)
    assert_state(engine, schema, [a, b2])
    day0 = windows.load_window(engine, schema, CHATS, *window(0))
    assert day0["id"].tolist() == [1]  # chat 2's kept version lives in day 1


history = st.lists(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 23), st.integers(0, 3)),
        min_size=1,
        max_size=4,
        unique_by=lambda v: (v[0], v[1]),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(history=history, order=st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_any_order_of_partitions_gives_the_newest_state(engine, history, order):
    """Chats with random version histories over 4 days; partitions applied in random order."""
    schema = f"prop_{next(_examples)}"
    versions = [
        version(chat_id, DAY0 + timedelta(days=day, hours=hour), transfers)
        for chat_id, chat_versions in enumerate(history, start=1)
        for day, hour, transfers in chat_versions
    ]
    by_day = {
        d: [v for v in versions if window(d)[0] <= pd.Timestamp(v["updated_at"]) < window(d)[1]]
        for d in range(4)
    }
    applied: list[dict] = []
    try:
        for day in order:
            apply_partition(engine, schema, by_day[day], day)
            applied += by_day[day]
        newest: dict[int, dict] = {}
        for v in applied:
            if v["id"] not in newest or v["updated_at"] >= newest[v["id"]]["updated_at"]:
                newest[v["id"]] = v
        assert_state(engine, schema, list(newest.values()))
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_landing_in_progress_is_waited_for_so_every_table_sees_one_version(engine, schema):
    """An apply reads raw_chats in several statements; a landing committing between them must
    not leave tables built from different versions, so the apply waits for it."""
    first = version(1, DAY0 + timedelta(hours=1), transfers=1, status="assigned")
    second = version(1, DAY0 + timedelta(hours=2), transfers=3, status="finished")
    apply_partition(engine, schema, [first], day=0)
    start, end = window(0)
    with engine.connect() as landing:  # a landing of the same day, not yet committed
        raw = f'"{schema}"."raw_chats"'
        landing.exec_driver_sql(f"DELETE FROM {raw}")
        windows.replace_window(
            engine, f"{schema}_other", RAW_CHATS, landing_frame([second], "UTC", "k"), start, end
        )
        landing.exec_driver_sql(f'INSERT INTO {raw} SELECT * FROM "{schema}_other"."raw_chats"')
        applying = threading.Thread(
            target=newest_wins.apply_newest,
            args=(engine, schema, DERIVED_TABLES, start, end),
            kwargs={"timezone": "UTC", "interval_minutes": 30},
        )
        applying.start()
        applying.join(timeout=1.0)
        assert applying.is_alive()  # waiting for the landing
        landing.commit()
    applying.join(timeout=60)
    assert not applying.is_alive()
    assert_state(engine, schema, [second])
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}_other" CASCADE')
