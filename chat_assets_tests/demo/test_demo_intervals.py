"""The demo's bad afternoon, as queue_intervals shows it: a real run of a demo day, from the
emulator, whose worst interval lies in the afternoon the demo made bad."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from chat_assets.partitions import daily_partitions
from chat_assets.queue_intervals import MIN_JUDGED, build_queue_intervals
from chat_assets.settings import Settings
from chat_assets.warehouse.resource import Warehouse
from chat_assets_demo.demo_data import _bad_afternoon
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.support import materialize_day

TIMEZONE = "Asia/Seoul"


@pytest.mark.parametrize("day", [date(2026, 1, 9), date(2026, 1, 23)])
def test_the_demo_days_worst_interval_lies_in_its_bad_afternoon(
    monkeypatch, database_url, schema, day
):
    iso_year, iso_week, iso_weekday = day.isocalendar()
    bad = _bad_afternoon(iso_year, iso_week)
    assert bad.weekday == iso_weekday - 1  # the week's bad afternoon falls on this day
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
    monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", TIMEZONE)
    monkeypatch.delenv("CHAT_ASSETS_INTERVAL_MINUTES", raising=False)
    settings = Settings.from_env()
    partitions = daily_partitions(settings)
    warehouse = Warehouse(database_url=database_url, db_schema=schema)
    intervals = build_queue_intervals(partitions, warehouse)
    with UjetEmulator(
        company_key="k", company_secret="s", chats_per_day=400, timezone=TIMEZONE
    ) as emulator:
        result = materialize_day(
            settings, emulator, database_url, schema, day.isoformat(), downstream=(intervals,)
        )
    metadata = next(
        m for m in result.get_asset_materialization_events() if m.asset_key == intervals.key
    ).materialization.metadata
    worst = datetime.fromtimestamp(metadata["worst_interval_start"].value, ZoneInfo(TIMEZONE))
    # The strain lasts `hours`, then two more while the backlog clears.
    assert bad.first_hour <= worst.hour < bad.first_hour + bad.hours + 2, (worst, bad)
    assert metadata["worst_interval_judged"].value >= MIN_JUDGED
    assert metadata["worst_interval_service_level"].value < metadata["service_level"].value - 0.2
