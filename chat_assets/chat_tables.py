"""The chat tables (`DERIVED_TABLES`): chats and each of its lists, flattened from raw_chats.

One step computes them all from the same partition of raw_chats. The `chats` output is a
`NewestWins` plan for every table: the warehouse IO manager flattens the stored payloads inside
PostgreSQL (SQL compiled from the table declarations) and applies every table newest-wins in one
transaction. The other outputs follow it as `WrittenWith`: their tables are already written, and
the IO manager records what their partitions hold. The checks then read what was stored, through
the warehouse resource.
"""

from collections.abc import Iterator

import dagster as dg

from chat_assets.checks import declared, personal_text, specs, uniqueness
from chat_assets.names import BARE, Names
from chat_assets.privacy import rotation, suppression
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.settings import DEFAULT_INTERVAL_MINUTES
from chat_assets.tables import DERIVED_TABLES, RAW_CHATS
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse import windows
from chat_assets.warehouse.newest_wins import NewestWins, WrittenWith
from chat_assets.warehouse.resource import Warehouse


def build_chat_tables(
    partitions: dg.TimeWindowPartitionsDefinition,
    warehouse: Warehouse,
    names: Names = BARE,
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
):
    """The chat_tables step for these partitions; `warehouse` gives the schema the assets'
    metadata names (a run writes through the warehouse resource of `names`), and
    `interval_minutes` the length of queue_intervals' intervals, which the apply recomputes."""
    checks = [
        *(spec for t in DERIVED_TABLES for spec in specs.check_specs(t, partitions)),
        *(suppression.erased_subject_spec(t, partitions) for t in suppression.LINKED_TABLES),
        *(rotation.current_key_spec(t, partitions) for t in rotation.KEYED_COLUMNS),
    ]

    @dg.multi_asset(
        name=names("chat_tables"),
        outs={
            table.name: dg.AssetOut(
                key=names.asset(table.name),
                group_name=names.group,
                io_manager_key=names.io_manager,
                kinds={"postgres"},
                description=table.description,
                metadata=table.asset_metadata(warehouse.db_schema),
            )
            for table in DERIVED_TABLES
        },
        deps=[names.asset(RAW_CHATS.name)],
        partitions_def=partitions,
        check_specs=names.check_specs(checks),
        required_resource_keys={names.ujet, names.warehouse, names.privacy},
        # No backfill policy, as raw_chats: one run per day, checks stored per day.
    )
    def chat_tables(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckResult]:
        resources = context.resources
        ujet, warehouse = getattr(resources, names.ujet), getattr(resources, names.warehouse)
        privacy = getattr(resources, names.privacy)
        yield from names.check_results(flatten_day(context, ujet, warehouse, privacy))

    def flatten_day(
        context: dg.AssetExecutionContext,
        ujet: UjetResource,
        warehouse: Warehouse,
        privacy: PrivacyResource,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        # Dagster hands each output to the IO manager as it is yielded: the plan goes first.
        writer, *others = DERIVED_TABLES
        plan = NewestWins(DERIVED_TABLES, partitions.timezone, interval_minutes)
        yield dg.Output(plan, output_name=writer.name, metadata={"source": ujet.source})
        for table in others:
            value = WrittenWith(writer.name)
            yield dg.Output(value, output_name=table.name, metadata={"source": ujet.source})
        engine, schema = warehouse.engine(), warehouse.db_schema
        window = context.partition_time_window
        for table in DERIVED_TABLES:
            stored = windows.load_window(
                engine,
                schema,
                table,
                window.start,
                window.end,
                columns=declared.columns_checked(table),
            )
            yield personal_text.no_personal_text(engine, schema, table, window.start, window.end)
            yield uniqueness.unique_in_partition(table, stored)
            if table.own_id is not None:
                yield uniqueness.unique_table_wide(engine, schema, table, window.start, window.end)
            yield from declared.partition_checks(table, stored)
            if table in suppression.LINKED_TABLES:
                yield suppression.erased_subject(engine, schema, table, window.start, window.end)
            if table in rotation.KEYED_COLUMNS:
                yield rotation.current_key_version(
                    engine, schema, table, window.start, window.end, privacy.key_version
                )

    return chat_tables
