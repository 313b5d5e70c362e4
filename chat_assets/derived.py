"""chats, chat_transfers, chat_queue_durations, chat_handle_durations: flattened from raw_chats.

One step computes the four assets from the same partition of raw_chats, so each payload is read
once; the warehouse applies each table with newest-wins semantics.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets import checks
from chat_assets.flattening import Flattened, flatten_raw
from chat_assets.tables import CHAT_QUEUE_DURATIONS, DERIVED_TABLES, Table


def summary_markdown(table: Table, rows: pd.DataFrame) -> str:
    """Row counts by the table's enumeration column. Only documented values are shown: any
    other value came from the source unchecked and could be personal data."""
    if table.summary_by is None or rows.empty:
        return f"{len(rows)} rows"
    column = table.column(table.summary_by)
    values = rows[column.name]
    lines = [f"| {column.name} | rows |", "|---|---:|"]
    lines += [f"| {value} | {int((values == value).sum())} |" for value in column.values]
    lines.append(f"| other values (not shown) | {int((~values.isin(column.values)).sum())} |")
    return "\n".join(lines)


def output_metadata(flat: Flattened) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "chats_in_batch": len(flat.versions),
        "preview": dg.MetadataValue.md(summary_markdown(flat.table, flat.rows)),
        "coercion_failures": dg.MetadataValue.json(flat.coercion_failures),
    }
    if flat.table is CHAT_QUEUE_DURATIONS:
        rate = checks.in_sla_rate(flat.rows)
        if rate is not None:
            metadata["in_sla_rate"] = dg.MetadataValue.float(round(rate, 4))
    return metadata


def build_chat_tables(partitions: dg.PartitionsDefinition, schema: str):
    @dg.multi_asset(
        name="chat_tables",
        outs={
            table.name: dg.AssetOut(
                group_name="ujet",
                io_manager_key="warehouse",
                kinds={"postgres", "pandas"},
                description=table.description,
                metadata=table.asset_metadata(schema),
            )
            for table in DERIVED_TABLES
        },
        ins={"raw_chats": dg.AssetIn("raw_chats")},
        partitions_def=partitions,
        check_specs=[spec for t in DERIVED_TABLES for spec in checks.check_specs(t, partitions)],
        required_resource_keys={"warehouse", "ujet"},
        backfill_policy=dg.BackfillPolicy.multi_run(1),
    )
    def chat_tables(
        context: dg.AssetExecutionContext, raw_chats: pd.DataFrame
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        flattened = flatten_raw(raw_chats, DERIVED_TABLES)
        for flat in flattened:
            context.log.info(
                f"{flat.table.name}: {len(flat.rows)} rows from {len(flat.versions)} chats"
            )
            metadata = {"source": context.resources.ujet.source, **output_metadata(flat)}
            yield dg.Output(flat, output_name=flat.table.name, metadata=metadata)
        warehouse = context.resources.warehouse
        engine = warehouse.engine()
        window = context.partition_time_window
        for flat in flattened:
            yield checks.personal_text(
                engine, warehouse.db_schema, flat.table, window.start, window.end
            )
            yield checks.unique_in_partition(flat.table, flat.rows)
            yield checks.unique_table_wide(engine, warehouse.db_schema, flat.table)
            if flat.table is CHAT_QUEUE_DURATIONS:
                yield checks.sla_event_valid(flat.rows)
                yield checks.sla_consistent(flat.rows)

    return chat_tables
