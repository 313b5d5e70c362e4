"""Daily partitions in the configured time zone, and the UTC windows they stand for."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from chat_assets.settings import Settings


def day_window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[day 00:00, day+1 00:00) in `timezone`, as UTC instants: 23 or 25 hours on DST days."""
    tz = ZoneInfo(timezone)
    start = datetime.combine(day, time(), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day(instant: datetime, timezone: str) -> date:
    """The calendar day, in `timezone`, that a UTC instant falls on."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def iso_utc(instant: datetime) -> str:
    """The form UJET's filters take: `2026-03-08T08:00:00Z`."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=settings.start_date.isoformat(),
        timezone=settings.timezone,
        end_offset=0,
    )
