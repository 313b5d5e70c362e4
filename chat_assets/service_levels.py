"""queue_service_levels: service level per queue and service day, always equal to its facts;
the asset of a queue mart (this one, and queue_intervals); the marts' refresh job and catch-up
sensor.

A row aggregates the `chat_queue_durations` segments that started on a local day in one queue.
The facts' apply recomputes, in its own transaction, every service day its chats' segments fall
on, before and after (a later version of a chat can move its segments between days), and marks
those days. A materialization of a day recomputes that day and clears its mark; the catch-up
sensor asks for a run of each day still marked in either mart, so the UI's metadata and checks
follow the warehouse.
"""

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets.checks import declared, personal_text, reconciliation, specs, uniqueness
from chat_assets.names import BARE, Names
from chat_assets.privacy.detect import redact
from chat_assets.settings import DEFAULT_INTERVAL_MINUTES
from chat_assets.tables import AGGREGATE_TABLES, QUEUE_SERVICE_LEVELS, Table
from chat_assets.warehouse import aggregates, windows
from chat_assets.warehouse.aggregates import Recompute
from chat_assets.warehouse.connection import WarehouseUnreachable, check_reachable
from chat_assets.warehouse.resource import Warehouse

REFRESH_JOB_NAME = "queue_service_levels_refresh"
CATCH_UP_SENSOR_NAME = "queue_service_levels_catch_up"
WORST_QUEUES = 5


def share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _queue_name(value: Any) -> str:
    """A queue's name as Markdown cell text: guarded like any kept text, pipes escaped."""
    if value is None or pd.isna(value):
        return "(no name)"
    text, _ = redact(str(value))
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def worst_queues_markdown(rows: pd.DataFrame) -> str:
    """The day's queues with the lowest service level (those with any in or out of SLA)."""
    judged = rows[rows["service_level"].notna()]
    if judged.empty:
        return "No queue segment was answered or missed within the SLA this day."
    worst = judged.sort_values(["service_level", "offered"], ascending=[True, False])
    lines = [
        "| queue | id | offered | service level | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in worst.head(WORST_QUEUES).itertuples(index=False):
        target = "" if pd.isna(row.target_percent) else f"{row.target_percent:g}%"
        queue_id = "" if pd.isna(row.menu_path_id) else int(row.menu_path_id)
        met = "" if pd.isna(row.met_target) else ("yes" if row.met_target else "no")
        lines.append(
            f"| {_queue_name(row.menu_path)} | {queue_id} | {int(row.offered)} "
            f"| {row.service_level:.1%} | {target} | {met} |"
        )
    return "\n".join(lines)


def day_metadata(rows: pd.DataFrame) -> dict[str, Any]:
    """The day's figures over all queues, for the UI to plot across days."""
    in_sla, not_in_sla = int(rows["in_sla"].sum()), int(rows["not_in_sla"].sum())
    answered, abandoned = int(rows["answered"].sum()), int(rows["abandoned"].sum())
    rated = int(rows["rated_chats"].sum())
    metadata: dict[str, Any] = {
        "offered": int(rows["offered"].sum()),
        "answered": answered,
        "abandoned": abandoned,
        "short_abandoned": int(rows["short_abandoned"].sum()),
        "rated_chats": rated,
        "queues": len(rows),
        "queues_below_target": int((rows["met_target"] == False).sum()),  # noqa: E712 (NA)
        "worst_queues": dg.MetadataValue.md(worst_queues_markdown(rows)),
    }
    waited = (rows["asa_seconds"] * rows["answered"]).sum()
    shares = {
        "service_level": share(in_sla, in_sla + not_in_sla),
        "abandon_rate": share(abandoned, answered + abandoned),
        "asa_seconds": float(waited) / answered if answered else None,
        "rated_4_or_5_share": share(int(rows["rated_4_or_5"].sum()), rated),
    }
    for name, value in shares.items():
        if value is not None:
            metadata[name] = dg.MetadataValue.float(round(value, 4))
    return metadata


def build_mart(
    table: Table,
    describe: Callable[[pd.DataFrame], dict[str, Any]],
    partitions: dg.TimeWindowPartitionsDefinition,
    warehouse: Warehouse,
    names: Names,
    interval_minutes: int,
):
    """The asset of a queue mart (an aggregate table) for these partitions, its metadata from
    `describe`; `warehouse` gives the schema the asset's metadata names (a run reads and writes
    through the warehouse resource of `names`)."""
    assert table.aggregation is not None
    interval = table.aggregation.interval
    timezone = partitions.timezone

    @dg.asset(
        key=names.asset(table.name),
        group_name=names.group,
        partitions_def=partitions,
        deps=[names.asset(facts.name) for facts in table.aggregation.fact_tables],
        io_manager_key=names.io_manager,
        kinds={"postgres"},
        description=table.description,
        metadata=table.asset_metadata(warehouse.db_schema),
        check_specs=names.check_specs(specs.check_specs(table, partitions)),
        required_resource_keys={names.warehouse},
    )
    def mart(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield from names.check_results(
            recompute_day(context, getattr(context.resources, names.warehouse))
        )

    def recompute_day(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield dg.Output(Recompute(timezone, interval_minutes, describe))
        engine, schema = warehouse.engine(), warehouse.db_schema
        start, end = context.partition_time_window
        stored = windows.load_window(engine, schema, table, start, end)
        yield personal_text.no_personal_text(engine, schema, table, start, end)
        yield uniqueness.unique_in_partition(table, stored)
        yield reconciliation.reconciled(
            engine, schema, table, timezone, start, end, interval_minutes=interval_minutes
        )
        if interval is not None:
            yield reconciliation.adds_up_to_day(engine, schema, table, timezone, start, end)
        yield from declared.partition_checks(table, stored)

    return mart


def build_queue_service_levels(
    partitions: dg.TimeWindowPartitionsDefinition,
    warehouse: Warehouse,
    names: Names = BARE,
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
):
    """queue_service_levels for these partitions (see `build_mart`)."""
    return build_mart(
        QUEUE_SERVICE_LEVELS, day_metadata, partitions, warehouse, names, interval_minutes
    )


def build_catch_up(
    partitions: dg.TimeWindowPartitionsDefinition,
    running: bool,
    names: Names = BARE,
    executor: dg.ExecutorDefinition | None = None,
) -> tuple[Any, dg.SensorDefinition]:
    """The job that materializes the queue marts (queue_service_levels and queue_intervals)
    alone, and the sensor that runs it for every day the facts' applies changed in either since
    that day was last materialized there.

    The job takes its partitions from the asset it selects (passing them is deprecated)."""
    job = dg.define_asset_job(
        names(REFRESH_JOB_NAME),
        selection=[names.asset(table.name) for table in AGGREGATE_TABLES],
        description=(
            "queue_service_levels and queue_intervals for one service day (the catch-up "
            "sensor's runs)."
        ),
        executor_def=executor,
        tags=names.run_tags,
    )

    @dg.sensor(
        name=names(CATCH_UP_SENSOR_NAME),
        job=job,
        required_resource_keys={names.warehouse},
        minimum_interval_seconds=60,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED
        ),
        description=(
            "Re-materializes each service day of queue_service_levels and queue_intervals "
            "whose facts changed since its last materialization, e.g. when a late chat update "
            "moved a queue segment into an older day (CHAT_ASSETS_CATCH_UP_SENSOR=on|off). "
            "The warehouse rows are already current; the runs bring the UI's metadata and "
            "checks up to date."
        ),
    )
    def catch_up(context: dg.SensorEvaluationContext):
        warehouse: Warehouse = getattr(context.resources, names.warehouse)
        engine = warehouse.engine()
        try:
            check_reachable(engine, warehouse.url_from)
        except WarehouseUnreachable as exc:
            # One line on the tick, naming what to check, for every minute the server is down.
            yield dg.SkipReason(str(exc))
            return
        # A day marked in either mart, by the last transaction that changed it in either.
        marked: dict[date, int] = {}
        for table in AGGREGATE_TABLES:
            for day, changed_by in aggregates.days_to_refresh(engine, warehouse.db_schema, table):
                marked[day] = max(changed_by, marked.get(day, changed_by))
        keys = [(day.isoformat(), changed_by) for day, changed_by in sorted(marked.items())]
        inside = [(key, by) for key, by in keys if partitions.has_partition_key(key)]
        # The same run key until the day changes again: one run per change.
        for key, changed_by in inside:
            yield dg.RunRequest(partition_key=key, run_key=f"{key}:{changed_by}")
        outside = ""
        if len(inside) < len(marked):
            outside = (
                "marked service days outside the partitions, not requested: "
                f"{len(marked) - len(inside)}"
            )
        # A tick with nothing to request says why on the sensor's page, and nothing else.
        if not inside:
            yield dg.SkipReason(outside or "no service day changed since it was materialized")
        elif outside:
            context.log.info(outside)

    return job, catch_up
