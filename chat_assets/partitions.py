"""Daily partitions in the configured time zone, and the local day an instant falls on."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from chat_assets.settings import Settings


def local_day(instant: datetime, timezone: str) -> date:
    """The calendar day, in `timezone`, that a UTC instant falls on."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=settings.start_date.isoformat(),
        timezone=settings.timezone,
        end_offset=0,
    )
