"""Retention: the job with a frozen clock on days landed by real Dagster runs from the emulator,
its check, its ledger row, and a backfill from beyond the limits."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from chat_assets.privacy import retention
from chat_assets.privacy.ledger import LEDGER_TABLE
from chat_assets.privacy.retention import THROUGH_TABLE, Policy, newly_expired
from chat_assets.privacy_retention import SCHEDULED_TIME_TAG, WITHIN_RETENTION, build_retention
from chat_assets.settings import Settings, SettingsError
from chat_assets.warehouse.resource import Warehouse
from chat_assets_demo.demo_data import chats_updated_between
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.privacy.test_erasure import dump
from chat_assets_tests.support import materialize_day

DAYS = ("2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08")
START = datetime(2026, 1, 5, tzinfo=UTC)
TODAY = date(2026, 1, 10)
# On TODAY: raw kept from 01-06, customer pseudonyms from 01-07, agent pseudonyms from 01-08.
POLICY = Policy(raw_days=4, customer_days=3, agent_days=2)
CUSTOMER = {
    "chats": ("out_ticket_id", "end_user_id", "end_user_out_contact_id"),
    "chat_participants": ("end_user_id",),
}
AGENT = {
    "chats": ("agent_id",),
    "chat_transfers": ("from_agent_id", "to_agent_id"),
    "chat_queue_durations": ("agent_id",),
    "chat_handle_durations": ("agent_id",),
    "chat_participants": ("user_id",),
}
PSEUDONYM_COLUMNS = {
    name: CUSTOMER.get(name, ()) + AGENT.get(name, ()) for name in {*CUSTOMER, *AGENT}
}
_PSEUDONYM = re.compile(r"[0-9a-f]{32}")


def land(settings, database_url, schema, days, policy: Policy | None = None) -> None:
    chats = chats_updated_between(START, START + timedelta(days=len(DAYS)), 40, seasonal=False)
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        for day in days:
            materialize_day(settings, emulator, database_url, schema, day, policy=policy)


def run_retention(database_url, schema, today: date, selection=None, instance=None):
    """The retention asset and its check, in one run scheduled on `today`."""
    asset, check = build_retention(POLICY, "UTC")
    return dg.materialize(
        [asset, check],
        selection=selection,
        resources={"warehouse": Warehouse(database_url=database_url, db_schema=schema)},
        tags={SCHEDULED_TIME_TAG: datetime.combine(today, datetime.min.time(), UTC).isoformat()},
        instance=instance,
    )


def linked_days(engine, schema: str) -> dict[str, set[str]]:
    """Per kind, the local days that still hold it: raw rows, and customer and agent
    pseudonyms in any raw version or flattened row."""
    found: dict[str, set[str]] = {"raw": set(), "customer": set(), "agent": set()}
    with engine.connect() as connection:
        for partition, payload in connection.exec_driver_sql(
            f'SELECT partition_key, payload FROM "{schema}".raw_chats'
        ):
            found["raw"].add(partition)
            if payload["end_user"].get("id") or payload.get("out_ticket_id"):
                found["customer"].add(partition)
            if (payload.get("agent_info") or {}).get("id"):
                found["agent"].add(partition)
        for kind, tables in (("customer", CUSTOMER), ("agent", AGENT)):
            for table, columns in tables.items():
                time = "updated_at" if table == "chats" else "chat_updated_at"
                held = " OR ".join(f"{c} IS NOT NULL" for c in columns)
                for (day,) in connection.exec_driver_sql(
                    f"SELECT DISTINCT ({time} AT TIME ZONE 'UTC')::date::text"
                    f' FROM "{schema}"."{table}" WHERE {held}'
                ):
                    found[kind].add(day)
    return found


def facts(engine, schema: str) -> dict[str, list[str]]:
    """Every flattened table and the marts, pseudonym columns left out."""
    names = (*PSEUDONYM_COLUMNS, "queue_service_levels", "queue_intervals")
    return {n: dump(engine, schema, n, PSEUDONYM_COLUMNS.get(n, ())) for n in names}


def ledger_rows(engine, schema: str) -> list[tuple[str, dict]]:
    with engine.connect() as connection:
        return list(
            connection.exec_driver_sql(
                f'SELECT action, counts FROM "{schema}"."{LEDGER_TABLE}" ORDER BY entry'
            )
        )


def test_the_limits_as_pure_functions():
    assert POLICY.first_kept(TODAY) == {
        "raw": date(2026, 1, 6),
        "customer": date(2026, 1, 7),
        "agent": date(2026, 1, 8),
    }
    assert POLICY.expired_on(date(2026, 1, 6), TODAY) == {"customer", "agent"}
    assert Policy().first_kept(TODAY) == {} and not Policy()
    assert newly_expired(None, date(2026, 1, 7)) == (None, date(2026, 1, 7))
    assert newly_expired(date(2026, 1, 5), date(2026, 1, 7)) == (
        date(2026, 1, 6),
        date(2026, 1, 7),
    )
    assert newly_expired(date(2026, 1, 6), date(2026, 1, 7)) is None


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "a year"])
def test_a_limit_is_a_positive_whole_number_of_days(monkeypatch, value):
    monkeypatch.setenv("CHAT_ASSETS_RETAIN_CUSTOMER_DAYS", value)
    with pytest.raises(SettingsError, match=r"^CHAT_ASSETS_RETAIN_CUSTOMER_DAYS=") as error:
        Settings.from_env()
    assert "\n" not in str(error.value)


def test_unset_limits_keep_everything(monkeypatch):
    for name in ("RAW", "CUSTOMER", "AGENT"):
        monkeypatch.delenv(f"CHAT_ASSETS_RETAIN_{name}_DAYS", raising=False)
    monkeypatch.setenv("CHAT_ASSETS_RETAIN_AGENT_DAYS", "90")
    assert Policy.from_settings(Settings.from_env()) == Policy(None, None, 90)


def test_the_job_expires_exactly_the_days_past_each_limit(settings, database_url, engine, schema):
    land(settings, database_url, schema, DAYS)
    before = facts(engine, schema)
    assert linked_days(engine, schema) == {kind: set(DAYS) for kind in ("raw", "customer", "agent")}
    with engine.connect() as connection:
        stored = {
            row[0]
            for table, columns in PSEUDONYM_COLUMNS.items()
            for column in columns
            for row in connection.exec_driver_sql(f'SELECT {column} FROM "{schema}"."{table}"')
            if row[0]
        }
    # The check fails before the job runs (run alone).
    only_check = dg.AssetCheckKey(dg.AssetKey("retention"), WITHIN_RETENTION)
    alone = run_retention(database_url, schema, TODAY, dg.AssetSelection.checks(only_check))
    assert [e.passed for e in alone.get_asset_check_evaluations()] == [False]

    instance = dg.DagsterInstance.ephemeral()
    result = run_retention(database_url, schema, TODAY, instance=instance)

    # The run's log says what was kept and let go, in counts.
    said = [entry.user_message for entry in instance.all_logs(result.run_id)]
    [line] = [message for message in said if message.startswith("Retention on ")]
    assert line.startswith("Retention on 2026-01-10: kept raw from 2026-01-06, ")
    assert "raw_chats_deleted " in line and not _PSEUDONYM.search(line)
    assert linked_days(engine, schema) == {
        "raw": {"2026-01-06", "2026-01-07", "2026-01-08"},
        "customer": {"2026-01-07", "2026-01-08"},
        "agent": {"2026-01-08"},
    }
    assert facts(engine, schema) == before  # facts and service levels unchanged
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == (WITHIN_RETENTION, True)
    # The ledger: one row, counts only (no id, no pseudonym).
    [(action, counts)] = ledger_rows(engine, schema)
    assert action == "retention"
    assert counts["raw_chats_deleted"] > 0 and counts["customer_chats_unlinked"] > 0
    assert counts["agent_chat_handle_durations_unlinked"] > 0
    assert all(isinstance(v, int) for v in counts.values())
    text = json.dumps(counts)
    assert not _PSEUDONYM.search(text) and not any(p in text for p in stored)

    # Again on the same day: nothing newly expired, nothing touched.
    run_retention(database_url, schema, TODAY)
    assert not any(ledger_rows(engine, schema)[-1][1].values())
    # A day later: one more day of each kind, and only that day is read.
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f'SELECT subject, through FROM "{schema}"."{THROUGH_TABLE}"'
        )
        through = {subject: day for subject, day in rows}
    assert through == {"customer": date(2026, 1, 6), "agent": date(2026, 1, 7)}
    run_retention(database_url, schema, TODAY + timedelta(days=1))
    assert linked_days(engine, schema) == {
        "raw": {"2026-01-07", "2026-01-08"},
        "customer": {"2026-01-08"},
        "agent": set(),
    }
    assert facts(engine, schema) == before


def test_a_backfill_from_beyond_the_limits_lands_within_them(
    settings, database_url, engine, schema
):
    # Landings take "today" from the clock: day 01-05 is past every limit, 01-06 within.
    today = datetime.now(UTC).date()
    within = (today - date(2026, 1, 6)).days
    policy = Policy(raw_days=within, customer_days=within, agent_days=within)
    land(settings, database_url, schema, DAYS[:2], policy)

    held = linked_days(engine, schema)
    assert held == {kind: {"2026-01-06"} for kind in ("raw", "customer", "agent")}
    assert retention.expired(engine, schema, policy, today, "UTC") == {
        "raw_chats": 0,
        "customer_raw_chats": 0,
        "customer_chats": 0,
        "agent_raw_chats": 0,
        "agent_chats": 0,
        "agent_chat_transfers": 0,
        "agent_chat_queue_durations": 0,
        "agent_chat_handle_durations": 0,
        "customer_chat_participants": 0,
        "agent_chat_participants": 0,
    }
    # The old day's facts landed all the same.
    with engine.connect() as connection:
        old = connection.exec_driver_sql(
            f'SELECT count(*) FROM "{schema}".chats WHERE updated_at < %s',
            (datetime(2026, 1, 6, tzinfo=UTC),),
        ).scalar()
    assert old > 0


def test_a_day_past_the_raw_limit_keeps_its_raw_rows_until_it_is_flattened(
    settings, database_url, engine, schema
):
    # 01-05 and 01-06 are past the raw limit (landings take "today" from the clock).
    today = datetime.now(UTC).date()
    policy = Policy(raw_days=(today - date(2026, 1, 7)).days)
    chats = chats_updated_between(START, START + timedelta(days=2), 40, seasonal=False)

    def rows(table: str, day: str) -> int:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                f'SELECT count(*) FROM "{schema}".{table} WHERE updated_at >= %s'
                " AND updated_at < %s::date + 1",
                (day, day),
            ).scalar_one()

    def raw_and_flat(day: str) -> tuple[int, int]:
        return rows("raw_chats", day), rows("chats", day)

    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        # 01-05 lands, and its flattening is still to come when ...
        materialize_day(
            settings, emulator, database_url, schema, DAYS[0], policy=policy, selection="raw_chats"
        )
        landed = rows("raw_chats", DAYS[0])
        assert landed > 0
        # ... another day past the limit is flattened, and the retention job runs.
        materialize_day(settings, emulator, database_url, schema, DAYS[1], policy=policy)
        retention.apply(engine, schema, policy, today, "UTC")
        # Only the versions that 01-06's newer ones replaced are let go.
        later = {c["id"] for c in chats if c["updated_at"].startswith(DAYS[1])}
        replaced = len({c["id"] for c in chats if c["updated_at"].startswith(DAYS[0])} & later)
        assert replaced > 0
        assert raw_and_flat(DAYS[0]) == (landed - replaced, 0)
        assert raw_and_flat(DAYS[1])[0] == 0
        # Its own flattening lands every chat, and then lets the payloads go.
        materialize_day(settings, emulator, database_url, schema, DAYS[0], policy=policy)
    assert raw_and_flat(DAYS[0]) == (0, landed - replaced)
