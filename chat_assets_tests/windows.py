"""A local day's UTC window and the raw_chats rows landed for it, as the tests and the
benchmarks build them (the assets take their windows from Dagster's partitions)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from chat_assets.raw_chats import landing_rows
from chat_assets.tables import RAW_CHATS, typed_frame


def day_window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[day 00:00, day+1 00:00) in `timezone`, as UTC instants: 23 or 25 hours on DST days."""
    tz = ZoneInfo(timezone)
    start = datetime.combine(day, time(), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def iso_utc(instant: datetime) -> str:
    """The form UJET's filters take: `2026-03-08T08:00:00Z`."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def landing_frame(records: list[dict[str, Any]], timezone: str, pii_key: str) -> pd.DataFrame:
    """`landing_rows` as a DataFrame with the declared dtypes."""
    return typed_frame(landing_rows(records, timezone, pii_key), RAW_CHATS)
