"""The warehouse as Dagster resources: one for queries (checks), one IO manager for writes."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from chat_assets.settings import SettingsError, parse_database_url
from chat_assets.warehouse.connection import engine_for

WAREHOUSE_KEY = "warehouse"
IO_MANAGER_KEY = "warehouse_io_manager"


class Warehouse(dg.ConfigurableResource):
    """The PostgreSQL database and schema that hold every table."""

    database_url: str = Field(
        description="CHAT_ASSETS_DATABASE_URL: postgresql+psycopg://user:password@host/db."
    )
    db_schema: str = Field(default="ujet", description="CHAT_ASSETS_SCHEMA: holds the tables.")
    url_from: str = Field(
        default="CHAT_ASSETS_DATABASE_URL", description="Where database_url is set."
    )

    def engine(self) -> sa.Engine:
        try:
            parse_database_url(self.database_url, self.url_from)  # never repeats the URL
        except SettingsError as problem:
            raise dg.Failure(str(problem)) from None
        return engine_for(self.database_url)
