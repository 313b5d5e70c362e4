"""The retention job: `privacy_retention`, daily, lets go of what is older than its limit.

Modelled as an unpartitioned asset, `retention` (the warehouse as the retention policy
leaves it), so that its check `within_retention` can be read, and run again, beside it in the
UI. The daily job leaves it out; its own job and schedule run it at 05:00 in the partitions'
time zone (after the daily and lookback runs). "Today" is the local day of the run's scheduled
time (of its start when launched by hand). The work is `chat_assets.privacy.retention`'s.
"""

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from chat_assets.names import BARE, Names
from chat_assets.privacy import retention
from chat_assets.privacy.retention import Policy
from chat_assets.settings import (
    RETAIN_AGENT_DAYS_ENV,
    RETAIN_CUSTOMER_DAYS_ENV,
    RETAIN_RAW_DAYS_ENV,
)
from chat_assets.warehouse.connection import WarehouseUnreachable, check_reachable
from chat_assets.warehouse.resource import Warehouse

RETENTION_ASSET = "retention"
RETENTION_JOB = "privacy_retention"
RETENTION_SCHEDULE = "privacy_retention_schedule"
RETENTION_CRON = "0 5 * * *"
WITHIN_RETENTION = "within_retention"
SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"

_SETTINGS = f"{RETAIN_RAW_DAYS_ENV}, {RETAIN_CUSTOMER_DAYS_ENV}, {RETAIN_AGENT_DAYS_ENV}"


def run_day(tags: dict[str, str], timezone: str) -> date:
    """The run's "today": the local day of its scheduled time, or of now."""
    scheduled = tags.get(SCHEDULED_TIME_TAG)
    at = datetime.fromisoformat(scheduled) if scheduled else datetime.now(ZoneInfo(timezone))
    return at.astimezone(ZoneInfo(timezone)).date()


def _limits(policy: Policy) -> dict[str, int | None]:
    """The limits as metadata: -1 for kept forever."""
    days = {"raw": policy.raw_days, "customer": policy.customer_days, "agent": policy.agent_days}
    return {f"retain_{k}_days": -1 if n is None else n for k, n in days.items()}


def build_retention(
    policy: Policy, timezone: str, names: Names = BARE
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """The retention asset and its check, under this policy, on the warehouse of `names`."""

    @dg.asset(
        key=names.asset(RETENTION_ASSET),
        group_name=names.privacy_group,
        kinds={"postgres"},
        description="Every table as the retention limits leave it: raw payloads older than "
        "the raw limit deleted, customer and agent pseudonyms older than theirs unlinked, facts "
        f"kept ({_SETTINGS}; unset: kept forever).",
        required_resource_keys={names.warehouse},
    )
    def retention_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse: Warehouse = getattr(context.resources, names.warehouse)
        today = run_day(context.run.tags, timezone)
        if not policy:
            context.log.info(f"No retention limit is set ({_SETTINGS}): everything is kept.")
        engine = warehouse.engine()
        try:
            check_reachable(engine, warehouse.url_from)
        except WarehouseUnreachable as exc:
            raise dg.Failure(str(exc)) from None
        outcome = retention.apply(engine, warehouse.db_schema, policy, today, timezone)
        if policy:
            context.log.info(outcome.summary())
        return dg.MaterializeResult(
            metadata={
                "today": today.isoformat(),
                **_limits(policy),
                "first_day_kept": dg.MetadataValue.json(
                    {k: d.isoformat() for k, d in outcome.first_kept.items()}
                ),
                "rows": dg.MetadataValue.json(outcome.counts),
            }
        )

    @dg.asset_check(
        asset=retention_asset,
        name=WITHIN_RETENTION,
        description="Nothing is older than its retention limit: no raw_chats row past the raw "
        "limit, no customer or agent pseudonym past its own, in any table or raw version.",
        required_resource_keys={names.warehouse},
    )
    def within_retention(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        warehouse: Warehouse = getattr(context.resources, names.warehouse)
        today = run_day(context.run.tags, timezone)
        found = retention.expired(warehouse.engine(), warehouse.db_schema, policy, today, timezone)
        return dg.AssetCheckResult(
            passed=not any(found.values()),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "today": today.isoformat(),
                **_limits(policy),
                "expired_rows": dg.MetadataValue.json(found),
            },
        )

    return retention_asset, within_retention


def build_retention_job_and_schedule(
    timezone: str, names: Names = BARE, executor: dg.ExecutorDefinition | None = None
) -> tuple[Any, dg.ScheduleDefinition]:
    """The job of the retention asset alone (and its check), and its daily schedule."""
    job = dg.define_asset_job(
        names(RETENTION_JOB),
        selection=dg.AssetSelection.assets(names.asset(RETENTION_ASSET)),
        description="Deletes raw payloads and unlinks pseudonyms older than their limits.",
        executor_def=executor,
        tags=names.run_tags,
    )
    schedule = dg.ScheduleDefinition(
        name=names(RETENTION_SCHEDULE),
        job=job,
        cron_schedule=RETENTION_CRON,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Applies the retention limits daily at 05:00 {timezone} ({_SETTINGS}).",
    )
    return job, schedule
