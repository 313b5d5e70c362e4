from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest

from chat_assets.partitions import local_day
from chat_assets.settings import Settings, SettingsError
from chat_assets_tests.windows import day_window, iso_utc


def test_utc_day_is_24_hours():
    start, end = day_window(date(2026, 3, 8), "UTC")
    assert start == datetime(2026, 3, 8, tzinfo=UTC)
    assert end - start == timedelta(hours=24)


def test_spring_forward_day_in_los_angeles_is_23_hours():
    start, end = day_window(date(2026, 3, 8), "America/Los_Angeles")
    assert iso_utc(start) == "2026-03-08T08:00:00Z"
    assert iso_utc(end) == "2026-03-09T07:00:00Z"
    assert end - start == timedelta(hours=23)


def test_fall_back_day_in_los_angeles_is_25_hours():
    start, end = day_window(date(2026, 11, 1), "America/Los_Angeles")
    assert iso_utc(start) == "2026-11-01T07:00:00Z"
    assert iso_utc(end) == "2026-11-02T08:00:00Z"
    assert end - start == timedelta(hours=25)


def test_consecutive_windows_tile_time_without_gaps():
    days = [date(2026, 10, 30) + timedelta(days=i) for i in range(5)]
    windows = [day_window(d, "America/Los_Angeles") for d in days]
    for (_, end), (next_start, _) in pairwise(windows):
        assert end == next_start


def test_local_day_of_an_instant_near_midnight():
    instant = datetime(2026, 3, 9, 6, 59, tzinfo=UTC)
    assert local_day(instant, "America/Los_Angeles") == date(2026, 3, 8)
    assert local_day(instant, "Asia/Seoul") == date(2026, 3, 9)


def test_settings_name_the_variable_in_errors(monkeypatch):
    monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", "Mars/Olympus")
    with pytest.raises(SettingsError, match="CHAT_ASSETS_TIMEZONE"):
        Settings.from_env()
    monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", "Asia/Seoul")
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "yesterday")
    with pytest.raises(SettingsError, match="CHAT_ASSETS_START_DATE"):
        Settings.from_env()
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
    settings = Settings.from_env()
    assert settings.timezone == "Asia/Seoul"
    assert settings.start_date == date(2026, 1, 1)


def test_a_database_url_is_any_postgresql_scheme(monkeypatch):
    for url in ("postgres://u@db/w", "postgresql://u@db/w", "postgresql+psycopg://u@db/w"):
        monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", url)
        assert Settings.from_env().database_url == url
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", "mysql://u@db/w")
    with pytest.raises(SettingsError, match=r"CHAT_ASSETS_DATABASE_URL .*percent-encoded"):
        Settings.from_env()
