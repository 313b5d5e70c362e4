"""Dagster's door to the warehouse: each asset's partition is a slice of its declared table.

Each output is a value to write, written whole when it is handled:
- a `StagedWindow` (`raw_chats`): rows the asset staged on disk while it fetched, which replace
  the window in one short transaction, erased subjects unlinked or dropped as the suppression
  list says at that moment (a DataFrame, for a window already in memory, replaces it too);
- a `NewestWins` (the `chats` output of the flattened tables' step): every table of the plan
  flattened from raw_chats inside PostgreSQL and applied in one transaction;
- a `WrittenWith` (the step's other flattened tables, yielded after the plan's output): already
  written by that plan, so only what the partition now holds is recorded;
- a `Recompute`: an aggregate's days recomputed from its facts.
Nothing is kept between outputs. Reading a partition back (`load_input`) gives a DataFrame with
the declared dtypes, for any asset downstream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets.privacy import retention, suppression
from chat_assets.privacy.retention import Policy
from chat_assets.tables import RAW_CHATS, TABLES, Table, WriteMode
from chat_assets.warehouse import aggregates, bookkeeping, newest_wins, windows
from chat_assets.warehouse.aggregates import Recompute
from chat_assets.warehouse.newest_wins import NewestWins, WrittenWith
from chat_assets.warehouse.resource import IO_MANAGER_KEY, WAREHOUSE_KEY, Warehouse
from chat_assets.warehouse.staged_window import StagedWindow
from chat_assets.warehouse.summary import applied_metadata, rows_metadata

_EXPECTED = {
    WriteMode.REPLACE_WINDOW: "a StagedWindow or a DataFrame",
    WriteMode.NEWEST_WINS: "a NewestWins or a WrittenWith",
    WriteMode.AGGREGATE: "a Recompute",
}


class PostgresIOManager(dg.ConfigurableIOManager):
    """Stores each asset in `<db_schema>.<asset name>` with the declared column types."""

    warehouse: Warehouse
    # The retention limits in days (None: kept forever): a window landed from beyond them lands
    # within them (see chat_assets.privacy.retention).
    retain_raw_days: int | None = None
    retain_customer_days: int | None = None
    retain_agent_days: int | None = None

    @property
    def policy(self) -> Policy:
        return Policy(self.retain_raw_days, self.retain_customer_days, self.retain_agent_days)

    def handle_output(
        self,
        context: dg.OutputContext,
        obj: pd.DataFrame | StagedWindow | NewestWins | WrittenWith | Recompute,
    ) -> None:
        table = _table_for(context.asset_key)
        start, end = _window(context)
        engine = self.warehouse.engine()
        schema = self.warehouse.db_schema
        metadata: dict[str, Any] = {}
        # Rows this output wrote (None when another output's plan wrote them).
        written: int | None
        if table.write is WriteMode.REPLACE_WINDOW and isinstance(obj, StagedWindow):
            in_place = None
            if table is RAW_CHATS:
                in_place = landing_finally(schema, self.policy, start, end)
            written, metadata = windows.land_staged(
                engine, schema, table, obj, start, end, finally_=in_place
            )
        elif table.write is WriteMode.REPLACE_WINDOW and isinstance(obj, pd.DataFrame):
            written = windows.replace_window(engine, schema, table, obj, start, end)
        elif table.write is WriteMode.NEWEST_WINS and isinstance(obj, NewestWins):
            if table not in obj.tables:
                raise dg.Failure(f"{table.name}'s output carries a plan that does not write it")
            results = newest_wins.apply_newest(
                engine,
                schema,
                obj.tables,
                start,
                end,
                timezone=obj.timezone,
                interval_minutes=obj.interval_minutes,
            )
            today = datetime.now(start.tzinfo).date()
            if retention.RAW in self.policy.expired_on(start.date(), today):
                retention.drop_expired_raw(
                    engine, schema, self.policy, today, start.date(), end.date()
                )
            written = results[obj.tables.index(table)].rows_written
            metadata = applied_metadata(obj.tables, results, table)
        elif table.write is WriteMode.NEWEST_WINS and isinstance(obj, WrittenWith):
            # Written by the plan: the figures are what the partition holds, not rows written.
            written = None
            stored, summary = windows.window_summary(engine, schema, table, start, end)
            metadata = {
                "written_with": obj.output,
                "dagster/partition_row_count": stored,
                **rows_metadata(table, stored, summary),
            }
        elif table.write is WriteMode.AGGREGATE and isinstance(obj, Recompute):
            written = aggregates.recompute_window(
                engine,
                schema,
                table,
                obj.timezone,
                start,
                end,
                interval_minutes=obj.interval_minutes,
            )
            metadata = obj.describe(windows.load_window(engine, schema, table, start, end))
        else:
            raise dg.Failure(
                f"{table.name} is written {table.write.value}: its asset returns "
                f"{_EXPECTED[table.write]}, not {type(obj).__name__}"
            )
        if written is not None:
            metadata |= {"rows_written": written, "dagster/partition_row_count": written}
        context.add_output_metadata(
            {**metadata, "dagster/row_count": bookkeeping.row_count(engine, schema, table)}
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = _table_for(context.asset_key)
        start, end = _window(context)
        return windows.load_window(
            self.warehouse.engine(), self.warehouse.db_schema, table, start, end
        )


def landing_finally(schema: str, policy: Policy, start: datetime, end: datetime) -> windows.Finally:
    """What raw_chats' landing does last, in its transaction: the suppression list applied to
    the window, then the retention limits (as of now)."""

    def in_place(cursor: Any) -> tuple[int, dict[str, Any]]:
        removed, metadata = suppression.reapply(cursor, schema, start, end)
        today = datetime.now(start.tzinfo).date()
        more, expired = retention.at_landing(cursor, schema, policy, today, start, end)
        return removed + more, {**metadata, **expired}

    return in_place


def warehouse_resources(warehouse: Warehouse, policy: Policy | None = None) -> dict[str, Any]:
    """The warehouse's resources under the keys the assets use: queries and the IO manager
    (which applies the retention `policy` to what it lands)."""
    policy = policy or Policy()
    io_manager = PostgresIOManager(
        warehouse=warehouse,
        retain_raw_days=policy.raw_days,
        retain_customer_days=policy.customer_days,
        retain_agent_days=policy.agent_days,
    )
    return {WAREHOUSE_KEY: warehouse, IO_MANAGER_KEY: io_manager}


def _table_for(asset_key: dg.AssetKey) -> Table:
    name = asset_key.path[-1]
    if name not in TABLES:
        raise dg.Failure(f"asset {name} has no table declaration in chat_assets.tables")
    return TABLES[name]


def _window(context: dg.OutputContext | dg.InputContext) -> tuple[datetime, datetime]:
    """The partition window, or the whole range's window in a single-run backfill."""
    if not context.has_asset_partitions:
        raise dg.Failure(f"{context.asset_key.to_user_string()} is stored per daily partition")
    window = context.asset_partitions_time_window
    return window.start, window.end
