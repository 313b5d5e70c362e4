"""Dagster's door to the warehouse: each asset's partition is a slice of its declared table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from chat_assets.tables import TABLES, Table, WriteMode
from chat_assets.warehouse import postgres
from chat_assets.warehouse.embedded import embedded_database_url
from chat_assets.warehouse.postgres import Applied


class PostgresIOManager(dg.ConfigurableIOManager):
    """Stores each asset in `<db_schema>.<asset name>` with the declared column types."""

    database_url: str | None = Field(
        default=None,
        description="postgresql+psycopg:// URL; unset starts an embedded PostgreSQL.",
    )
    db_schema: str = Field(default="ujet", description="Schema that holds the tables.")
    state_dir: str = Field(
        default=".chat_assets", description="Where the embedded PostgreSQL keeps its data."
    )

    def engine(self) -> sa.Engine:
        url = self.database_url or embedded_database_url(Path(self.state_dir))
        return postgres.engine_for(url)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Applied) -> None:
        """A frame replaces its window's rows. A newest-wins table is flattened and applied
        inside the warehouse by its asset (`postgres.apply_newest`, all tables in one
        transaction); its output is what that did, and only its counts are recorded here."""
        table = _table_for(context.asset_key)
        start, end = _window(context)
        engine = self.engine()
        if table.write is WriteMode.REPLACE_WINDOW:
            written = postgres.replace_window(engine, self.db_schema, table, obj, start, end)
        elif isinstance(obj, Applied):
            written = obj.rows_written
        else:
            raise dg.Failure(
                f"{table.name} is written newest-wins by chat_assets.warehouse.postgres."
                "apply_newest; its asset returns what that applied"
            )
        context.add_output_metadata(
            {
                "rows_written": written,
                "dagster/partition_row_count": written,
                "dagster/row_count": postgres.row_count(engine, self.db_schema, table),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = _table_for(context.asset_key)
        start, end = _window(context)
        return postgres.load_window(self.engine(), self.db_schema, table, start, end)


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
