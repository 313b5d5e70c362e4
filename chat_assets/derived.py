"""chats, chat_transfers, chat_queue_durations, chat_handle_durations: flattened from raw_chats.

One step computes the four assets from the same partition of raw_chats. The warehouse flattens
the stored payloads itself (compiled from the table declarations) and applies every table with
newest-wins semantics in one transaction; the checks then read what was stored.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from chat_assets import checks
from chat_assets.tables import CHAT_QUEUE_DURATIONS, DERIVED_TABLES, Table
from chat_assets.warehouse import postgres
from chat_assets.warehouse.postgres import Applied


def summary_markdown(table: Table, applied: Applied) -> str:
    """Row counts by the table's enumeration column. Only documented values are shown: any
    other value came from the source unchecked and could be personal data."""
    if table.summary_by is None or not applied.rows_written:
        return f"{applied.rows_written} rows"
    column = table.column(table.summary_by)
    lines = [f"| {column.name} | rows |", "|---|---:|"]
    lines += [f"| {value} | {applied.summary.get(value, 0)} |" for value in column.values]
    other = applied.rows_written - sum(applied.summary.values())
    lines.append(f"| other values (not shown) | {other} |")
    return "\n".join(lines)


def in_sla_rate(applied: Applied) -> float | None:
    """Share of answered-or-missed segments answered within the SLA (excluded ones left out)."""
    counted = applied.summary.get("in_sla", 0) + applied.summary.get("not_in_sla", 0)
    return applied.summary.get("in_sla", 0) / counted if counted else None


def output_metadata(table: Table, applied: Applied) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "chats_accepted": applied.chats_accepted,
        "chats_stale": applied.chats_stale,
        "preview": dg.MetadataValue.md(summary_markdown(table, applied)),
        "coercion_failures": dg.MetadataValue.json(applied.coercion_failures),
    }
    if table is CHAT_QUEUE_DURATIONS and (rate := in_sla_rate(applied)) is not None:
        metadata["in_sla_rate"] = dg.MetadataValue.float(round(rate, 4))
    return metadata


def build_chat_tables(partitions: dg.PartitionsDefinition, schema: str):
    @dg.multi_asset(
        name="chat_tables",
        outs={
            table.name: dg.AssetOut(
                group_name="ujet",
                io_manager_key="warehouse",
                kinds={"postgres"},
                description=table.description,
                metadata=table.asset_metadata(schema),
            )
            for table in DERIVED_TABLES
        },
        deps=["raw_chats"],
        partitions_def=partitions,
        check_specs=[spec for t in DERIVED_TABLES for spec in checks.check_specs(t, partitions)],
        required_resource_keys={"warehouse", "ujet"},
        backfill_policy=dg.BackfillPolicy.multi_run(1),
    )
    def chat_tables(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckResult]:
        warehouse = context.resources.warehouse
        engine = warehouse.engine()
        window = context.partition_time_window
        results = postgres.apply_newest(
            engine, warehouse.db_schema, DERIVED_TABLES, window.start, window.end
        )
        for table, applied in zip(DERIVED_TABLES, results, strict=True):
            context.log.info(
                f"{table.name}: {applied.rows_written} rows from {applied.chats_accepted} chats"
                f" ({applied.chats_stale} older than the stored version)"
            )
            metadata = {"source": context.resources.ujet.source, **output_metadata(table, applied)}
            yield dg.Output(applied, output_name=table.name, metadata=metadata)
        for table in DERIVED_TABLES:
            stored = postgres.load_window(
                engine,
                warehouse.db_schema,
                table,
                window.start,
                window.end,
                columns=checks.columns_checked(table),
            )
            yield checks.personal_text(engine, warehouse.db_schema, table, window.start, window.end)
            yield checks.unique_in_partition(table, stored)
            yield checks.unique_table_wide(engine, warehouse.db_schema, table)
            if table is CHAT_QUEUE_DURATIONS:
                yield checks.sla_event_valid(stored)
                yield checks.sla_consistent(stored)

    return chat_tables
