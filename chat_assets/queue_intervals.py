"""queue_intervals: the counts of queue_service_levels per queue and interval of the service day
(CHAT_ASSETS_INTERVAL_MINUTES, counted from local midnight), always equal to its facts and
adding up to the day.

The same machinery keeps it current as the daily mart: the facts' apply recomputes and marks
the days of both in its transaction; a materialization recomputes its day, checks it (also
against the day's row of queue_service_levels) and describes the day's intervals over all
queues for the UI to plot.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from chat_assets.names import BARE, Names
from chat_assets.service_levels import build_mart, share
from chat_assets.settings import DEFAULT_INTERVAL_MINUTES
from chat_assets.tables import QUEUE_INTERVALS
from chat_assets.warehouse.resource import Warehouse

# An interval competes for the day's worst only with this many segments judged in or out of
# the SLA over all queues (on a quieter day, as many as its busiest interval): a quiet night
# interval's service level swings on one chat.
MIN_JUDGED = 5
_COUNTS = ["offered", "answered", "abandoned", "in_sla", "not_in_sla"]


def by_interval(rows: pd.DataFrame) -> pd.DataFrame:
    """The day's intervals over all queues, in order: their counts and service level."""
    summed = rows.groupby("interval_start", sort=True)[_COUNTS].sum().astype(int)
    judged = summed["in_sla"] + summed["not_in_sla"]
    summed["judged"] = judged
    summed["service_level"] = (summed["in_sla"] / judged).where(judged > 0)
    return summed.reset_index()


def worst_interval(intervals: pd.DataFrame) -> pd.Series | None:
    """The interval with the lowest service level among those with MIN_JUDGED judged segments,
    or as many as the busiest interval when none has that many (the busier first on a tie, then
    the earlier); None when no segment was judged."""
    most = int(intervals["judged"].max()) if len(intervals) else 0
    if most == 0:
        return None
    busy = intervals[intervals["judged"] >= min(MIN_JUDGED, most)]
    ordered = busy.sort_values(
        ["service_level", "judged", "interval_start"], ascending=[True, False, True]
    )
    return ordered.iloc[0]


def _clock(start: pd.Timestamp, zone: ZoneInfo, offsets: bool) -> str:
    """An interval's local start, with its UTC offset on a day whose clock changes."""
    local = start.tz_convert(zone)
    return local.strftime("%H:%M %z") if offsets else local.strftime("%H:%M")


def intervals_markdown(intervals: pd.DataFrame, timezone: str) -> str:
    """The day's intervals over all queues, as a Markdown table."""
    if intervals.empty:
        return "No queue segment or rated chat this day."
    zone = ZoneInfo(timezone)
    offsets = intervals["interval_start"].map(lambda t: t.tz_convert(zone).utcoffset()).nunique()
    lines = [
        f"| interval ({timezone}) | offered | answered | abandoned | service level |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in intervals.itertuples(index=False):
        level = "" if pd.isna(row.service_level) else f"{row.service_level:.1%}"
        lines.append(
            f"| {_clock(row.interval_start, zone, offsets > 1)} | {row.offered} | "
            f"{row.answered} | {row.abandoned} | {level} |"
        )
    return "\n".join(lines)


def intervals_metadata(rows: pd.DataFrame, timezone: str) -> dict[str, Any]:
    """The day's intervals for the UI: the worst and the busiest, and all of them as a table."""
    intervals = by_interval(rows)
    metadata: dict[str, Any] = {
        "intervals": len(intervals),
        "intervals_table": dg.MetadataValue.md(intervals_markdown(intervals, timezone)),
    }
    if not rows.empty:
        metadata["interval_minutes"] = int(rows["interval_minutes"].iloc[0])
        busiest = intervals.sort_values(["offered", "interval_start"], ascending=[False, True])
        metadata["busiest_interval_offered"] = int(busiest.iloc[0]["offered"])
        metadata["busiest_interval_start"] = dg.MetadataValue.timestamp(
            busiest.iloc[0]["interval_start"].to_pydatetime()
        )
    worst = worst_interval(intervals)
    if worst is not None:
        start = worst["interval_start"]
        metadata |= {
            "worst_interval_start": dg.MetadataValue.timestamp(start.to_pydatetime()),
            "worst_interval_local": start.tz_convert(ZoneInfo(timezone)).strftime("%H:%M"),
            "worst_interval_service_level": dg.MetadataValue.float(
                round(float(worst["service_level"]), 4)
            ),
            "worst_interval_judged": int(worst["judged"]),
        }
    level = share(int(intervals["in_sla"].sum()), int(intervals["judged"].sum()))
    if level is not None:
        metadata["service_level"] = dg.MetadataValue.float(round(level, 4))
    return metadata


def build_queue_intervals(
    partitions: dg.TimeWindowPartitionsDefinition,
    warehouse: Warehouse,
    names: Names = BARE,
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
):
    """queue_intervals for these partitions, in intervals of `interval_minutes` (see
    `chat_assets.service_levels.build_mart`)."""
    timezone = partitions.timezone

    def describe(rows: pd.DataFrame) -> dict[str, Any]:
        return intervals_metadata(rows, timezone)

    return build_mart(QUEUE_INTERVALS, describe, partitions, warehouse, names, interval_minutes)
