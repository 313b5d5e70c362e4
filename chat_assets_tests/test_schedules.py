"""The daily and lookback schedules, evaluated at chosen ticks the way the daemon evaluates them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from chat_assets.location import build_definitions
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy_retention import RETENTION_JOB, RETENTION_SCHEDULE, WITHIN_RETENTION
from chat_assets.schedules import DAILY_SCHEDULE_NAME, JOB_NAME, LOOKBACK_SCHEDULE_NAME
from chat_assets.service_levels import CATCH_UP_SENSOR_NAME, REFRESH_JOB_NAME
from chat_assets.settings import Settings, SettingsError
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse.resource import IO_MANAGER_KEY, Warehouse

RUNNING = dg.DefaultScheduleStatus.RUNNING
STOPPED = dg.DefaultScheduleStatus.STOPPED


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A live instance: resolving Definitions reads the current instance's state storage."""
    with dg.instance_for_test() as current:
        yield current


@pytest.fixture
def configure(monkeypatch, instance):
    """Code location settings from the environment, as the code server reads them."""

    def apply(**env: str) -> dg.Definitions:
        for name in (
            "CHAT_ASSETS_DAILY_SCHEDULE",
            "CHAT_ASSETS_LOOKBACK_SCHEDULE",
            "CHAT_ASSETS_LOOKBACK_DAYS",
            "CHAT_ASSETS_INTERVAL_MINUTES",
            "CHAT_ASSETS_CATCH_UP_SENSOR",
            "CHAT_ASSETS_RETAIN_RAW_DAYS",
            "CHAT_ASSETS_RETAIN_CUSTOMER_DAYS",
            "CHAT_ASSETS_RETAIN_AGENT_DAYS",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
        monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", "Asia/Seoul")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings.from_env()
        warehouse = Warehouse(database_url="postgresql+psycopg://unused@localhost/db")
        resources = {"ujet": UjetResource(subdomain="acme"), "privacy": PrivacyResource()}
        return build_definitions(settings, warehouse, resources)

    return apply


@pytest.fixture
def evaluate(instance):
    """What the daemon gets from a schedule at a tick."""

    def tick_at(defs: dg.Definitions, name: str, tick: datetime) -> dg.ScheduleExecutionData:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=tick,
            repository_def=defs.get_repository_def(),
        )
        return defs.resolve_schedule_def(name).evaluate_tick(context)

    return tick_at


def requested(data: dg.ScheduleExecutionData) -> list[str]:
    return [request.partition_key for request in data.run_requests or []]


def seoul(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo("Asia/Seoul"))


def test_job_covers_the_whole_graph_by_day(configure):
    defs = configure()
    job = defs.resolve_job_def(JOB_NAME)
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        "raw_chats",
        "chats",
        "chat_transfers",
        "chat_queue_durations",
        "chat_handle_durations",
        "chat_participants",
        "chat_consumer_handle_durations",
        "chat_consumer_event_durations",
        "chat_offer_events",
        "chat_virtual_agent_handle_durations",
        "chat_virtual_agent_deflected_escalations",
        "queue_service_levels",
        "queue_intervals",
    }
    assert job.partitions_def == defs.get_assets_def("raw_chats").partitions_def


def test_the_catch_up_sensor_runs_the_marts_alone_and_can_be_switched_off(configure):
    defs = configure()
    refresh = defs.resolve_job_def(REFRESH_JOB_NAME)
    assert {k.to_user_string() for k in refresh.asset_layer.executable_asset_keys} == {
        "queue_service_levels",
        "queue_intervals",
    }
    sensor = defs.resolve_sensor_def(CATCH_UP_SENSOR_NAME)
    assert sensor.job_name == REFRESH_JOB_NAME
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    sensor = configure(CHAT_ASSETS_CATCH_UP_SENSOR="off").resolve_sensor_def(CATCH_UP_SENSOR_NAME)
    assert sensor.default_status is dg.DefaultSensorStatus.STOPPED


def test_the_retention_job_runs_daily_on_its_asset_alone(configure):
    defs = configure(CHAT_ASSETS_RETAIN_RAW_DAYS="30", CHAT_ASSETS_RETAIN_AGENT_DAYS="400")
    defs.get_repository_def().load_all_definitions()  # names do not clash, as the UI loads it
    job = defs.resolve_job_def(RETENTION_JOB)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"retention"}
    assert job.asset_layer.asset_graph.asset_check_keys == {
        dg.AssetCheckKey(dg.AssetKey("retention"), WITHIN_RETENTION)
    }
    schedule = defs.resolve_schedule_def(RETENTION_SCHEDULE)
    assert (schedule.job_name, schedule.cron_schedule) == (RETENTION_JOB, "0 5 * * *")
    assert schedule.execution_timezone == "Asia/Seoul"
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    # The landings apply the same limits.
    io_manager = defs.resources[IO_MANAGER_KEY]
    assert (io_manager.retain_raw_days, io_manager.retain_customer_days) == (30, None)
    assert io_manager.retain_agent_days == 400


def test_schedules_tick_in_the_partitions_time_zone(configure):
    defs = configure()
    daily = defs.resolve_schedule_def(DAILY_SCHEDULE_NAME)
    lookback = defs.resolve_schedule_def(LOOKBACK_SCHEDULE_NAME)
    assert (daily.cron_schedule, daily.execution_timezone) == ("30 0 * * *", "Asia/Seoul")
    assert (lookback.cron_schedule, lookback.execution_timezone) == ("0 4 * * *", "Asia/Seoul")
    assert daily.job_name == lookback.job_name == JOB_NAME


def test_daily_requests_the_day_that_just_closed(configure, evaluate):
    defs = configure()
    data = evaluate(defs, DAILY_SCHEDULE_NAME, seoul(2026, 3, 10, 0, 30))
    assert requested(data) == ["2026-03-09"]
    # The same instant written in UTC (the day before, 15:30) asks for the same Seoul day.
    same_instant = datetime(2026, 3, 9, 15, 30, tzinfo=UTC)
    assert requested(evaluate(defs, DAILY_SCHEDULE_NAME, same_instant)) == ["2026-03-09"]
    assert data.run_requests[0].tags["dagster/partition"] == "2026-03-09"


def test_daily_across_a_daylight_saving_switch(configure, evaluate):
    defs = configure(CHAT_ASSETS_TIMEZONE="America/New_York")
    new_york = ZoneInfo("America/New_York")
    # 2026-03-08 is 23 hours long in New York; the tick after it asks for it.
    after_spring = datetime(2026, 3, 9, 0, 30, tzinfo=new_york)
    assert requested(evaluate(defs, DAILY_SCHEDULE_NAME, after_spring)) == ["2026-03-08"]
    after_fall = datetime(2026, 11, 2, 0, 30, tzinfo=new_york)
    assert requested(evaluate(defs, DAILY_SCHEDULE_NAME, after_fall)) == ["2026-11-01"]


def test_daily_first_tick_requests_the_start_date(configure, evaluate):
    defs = configure()
    assert requested(evaluate(defs, DAILY_SCHEDULE_NAME, seoul(2026, 1, 2, 0, 30))) == [
        "2026-01-01"
    ]


def test_lookback_requests_each_of_the_last_days_with_distinct_run_keys(configure, evaluate):
    defs = configure()
    data = evaluate(defs, LOOKBACK_SCHEDULE_NAME, seoul(2026, 3, 10, 4, 0))
    assert requested(data) == ["2026-03-07", "2026-03-08", "2026-03-09"]
    next_day = evaluate(defs, LOOKBACK_SCHEDULE_NAME, seoul(2026, 3, 11, 4, 0))
    assert requested(next_day) == ["2026-03-08", "2026-03-09", "2026-03-10"]
    keys = [request.run_key for request in data.run_requests + next_day.run_requests]
    assert len(set(keys)) == len(keys) == 6


def test_lookback_days_come_from_the_environment(configure, evaluate):
    defs = configure(CHAT_ASSETS_LOOKBACK_DAYS="5")
    # 19:00 UTC on 9 March is 04:00 on 10 March in Seoul.
    data = evaluate(defs, LOOKBACK_SCHEDULE_NAME, datetime(2026, 3, 9, 19, 0, tzinfo=UTC))
    assert requested(data) == ["2026-03-05", "2026-03-06", "2026-03-07", "2026-03-08", "2026-03-09"]


def test_lookback_never_requests_before_the_start_date(configure, evaluate):
    defs = configure(CHAT_ASSETS_LOOKBACK_DAYS="7")
    data = evaluate(defs, LOOKBACK_SCHEDULE_NAME, seoul(2026, 1, 3, 4, 0))
    assert requested(data) == ["2026-01-01", "2026-01-02"]
    first = evaluate(defs, LOOKBACK_SCHEDULE_NAME, seoul(2026, 1, 1, 4, 0))
    assert not first.run_requests
    assert "2026-01-01" in (first.skip_message or "")


def test_defaults_daily_on_lookback_off(configure):
    defs = configure()
    assert defs.resolve_schedule_def(DAILY_SCHEDULE_NAME).default_status == RUNNING
    assert defs.resolve_schedule_def(LOOKBACK_SCHEDULE_NAME).default_status == STOPPED


def test_switches_from_the_environment(configure):
    defs = configure(CHAT_ASSETS_DAILY_SCHEDULE="off", CHAT_ASSETS_LOOKBACK_SCHEDULE="ON")
    assert defs.resolve_schedule_def(DAILY_SCHEDULE_NAME).default_status == STOPPED
    assert defs.resolve_schedule_def(LOOKBACK_SCHEDULE_NAME).default_status == RUNNING


@pytest.mark.parametrize("name", ["CHAT_ASSETS_DAILY_SCHEDULE", "CHAT_ASSETS_LOOKBACK_SCHEDULE"])
def test_a_switch_is_on_or_off_nothing_else(configure, name):
    with pytest.raises(SettingsError, match=f"{name}='yes' must be on or off"):
        configure(**{name: "yes"})


@pytest.mark.parametrize("raw", ["20", "30m", "0", "45"])
def test_the_interval_length_is_15_30_or_60_minutes_nothing_else(configure, raw):
    with pytest.raises(SettingsError) as refused:
        configure(CHAT_ASSETS_INTERVAL_MINUTES=raw)
    assert str(refused.value) == (
        f"CHAT_ASSETS_INTERVAL_MINUTES={raw!r} must be 15, 30 or 60 (minutes), such as 30"
    )


def test_the_interval_length_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("CHAT_ASSETS_INTERVAL_MINUTES", raising=False)
    assert Settings.from_env().interval_minutes == 30
    for minutes in (15, 30, 60):
        monkeypatch.setenv("CHAT_ASSETS_INTERVAL_MINUTES", str(minutes))
        assert Settings.from_env().interval_minutes == minutes
