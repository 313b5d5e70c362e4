"""The job that materializes a day of every asset, and the schedules that request days.

- `chat_assets_daily_schedule` (on by default) asks for the last complete day at 00:30 in the
  partitions' time zone, so each day is fetched shortly after it closes.
- `chat_assets_lookback_schedule` (off by default) re-materializes each of the last
  `CHAT_ASSETS_LOOKBACK_DAYS` complete days at 04:00, for chats UJET changes or serves late.
  04:00 local time comes after every daylight-saving switch of the tz database, so the tick
  exists, and happens once, every day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias
from zoneinfo import ZoneInfo

import dagster as dg

from chat_assets.names import BARE, Names
from chat_assets.settings import Settings

if TYPE_CHECKING:
    # Not exported by dagster: what define_asset_job and build_schedule_from_partitioned_job
    # return before Definitions binds them to the assets.
    from dagster._core.definitions.partitions.partitioned_schedule import (
        UnresolvedPartitionedAssetScheduleDefinition,
    )
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

    Schedule: TypeAlias = dg.ScheduleDefinition | UnresolvedPartitionedAssetScheduleDefinition

JOB_NAME = "chat_assets_daily"
DAILY_SCHEDULE_NAME = "chat_assets_daily_schedule"
LOOKBACK_SCHEDULE_NAME = "chat_assets_lookback_schedule"
LOOKBACK_CRON = "0 4 * * *"


def _status(on: bool) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED


def lookback_days(tick: datetime, timezone: str, days: int, start_date: date) -> list[date]:
    """The last `days` complete days before `tick`'s local date, oldest first, none before start.

    A day is complete once the next one has begun in `timezone`, so a tick on day D asks for
    D-days .. D-1.
    """
    today = tick.astimezone(ZoneInfo(timezone)).date()
    wanted = (today - timedelta(days=back) for back in range(days, 0, -1))
    return [day for day in wanted if day >= start_date]


def build_lookback_schedule(
    job: UnresolvedAssetJobDefinition,
    partitions: dg.TimeWindowPartitionsDefinition,
    settings: Settings,
    names: Names = BARE,
) -> dg.ScheduleDefinition:
    """One run per day of the lookback window, each with a run key unique to its tick."""
    timezone = partitions.timezone
    start_date = partitions.start.date()

    @dg.schedule(
        name=names(LOOKBACK_SCHEDULE_NAME),
        job=job,
        cron_schedule=LOOKBACK_CRON,
        execution_timezone=timezone,
        default_status=_status(settings.lookback_schedule),
        description=(
            f"Re-materializes the last {settings.lookback_days} complete days at 04:00 "
            f"{timezone}, for chats that change or arrive late "
            "(CHAT_ASSETS_LOOKBACK_SCHEDULE=on|off)."
        ),
    )
    def lookback(
        context: dg.ScheduleEvaluationContext,
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        tick = context.scheduled_execution_time or datetime.now(ZoneInfo(timezone))
        days = lookback_days(tick, timezone, settings.lookback_days, start_date)
        if not days:
            yield dg.SkipReason(f"No complete day on or after the start date {start_date} yet")
            return
        tick_day = tick.astimezone(ZoneInfo(timezone)).date().isoformat()
        for day in days:
            key = day.isoformat()
            # The tick's day in the key: the same partition is requested again on later ticks.
            yield dg.RunRequest(partition_key=key, run_key=f"lookback:{tick_day}:{key}")

    return lookback


def build_jobs_and_schedules(
    partitions: dg.PartitionsDefinition,
    settings: Settings,
    names: Names = BARE,
    executor: dg.ExecutorDefinition | None = None,
) -> tuple[list[UnresolvedAssetJobDefinition], list[Schedule]]:
    """The whole-graph job and both schedules; their default status comes from the settings.

    `partitions` is not passed to the job (Dagster infers it from the assets): the schedules take
    their time zone and start date from it, so they request exactly the days the assets have.
    """
    if not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        raise TypeError("chat_assets schedules need time-window (daily) partitions")
    job = dg.define_asset_job(
        names(JOB_NAME),
        # Every daily asset (the group holds them); the retention asset, unpartitioned, has a
        # job of its own.
        selection=dg.AssetSelection.groups(names.group),
        description="Every chat_assets asset for one day: fetch from UJET, then flatten.",
        executor_def=executor,
        tags=names.run_tags,
    )
    daily = dg.build_schedule_from_partitioned_job(
        job,
        name=names(DAILY_SCHEDULE_NAME),
        hour_of_day=0,
        minute_of_hour=30,
        default_status=_status(settings.daily_schedule),
        description=(
            f"Materializes the last complete day at 00:30 {partitions.timezone} "
            "(CHAT_ASSETS_DAILY_SCHEDULE=on|off)."
        ),
    )
    return [job], [daily, build_lookback_schedule(job, partitions, settings, names)]
