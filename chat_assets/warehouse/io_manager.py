"""Dagster's door to the warehouse: each asset's partition is a slice of its declared table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from chat_assets.flattening import Flattened
from chat_assets.tables import TABLES, Table, WriteMode
from chat_assets.warehouse import postgres
from chat_assets.warehouse.embedded import embedded_database_url


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

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Flattened) -> None:
        table = _table_for(context.asset_key)
        start, end = _window(context)
        engine = self.engine()
        metadata: dict[str, Any] = {}
        if table.write is WriteMode.REPLACE_WINDOW:
            written = postgres.replace_window(engine, self.db_schema, table, obj, start, end)
        else:
            if not isinstance(obj, Flattened):
                raise dg.Failure(f"{table.name} is written newest-wins from flattened chats")
            applied = postgres.apply_newest(
                engine, self.db_schema, table, obj.rows, obj.versions, start, end
            )
            written = applied.rows_written
            metadata |= {
                "chats_accepted": applied.chats_accepted,
                "chats_stale": applied.chats_stale,
            }
        context.add_output_metadata(
            {
                **metadata,
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
