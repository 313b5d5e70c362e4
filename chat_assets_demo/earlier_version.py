"""The demo's warehouse as an earlier version of chat_assets left it: its synthetic chats are
let go, so that an upgraded checkout's `bin/demo` starts afresh instead of failing on a table of
an earlier shape (a production warehouse is never touched: its runs name the table instead)."""

from __future__ import annotations

from psycopg import sql

from chat_assets.tables import TABLES
from chat_assets.warehouse import ddl
from chat_assets.warehouse.connection import cursor_for, engine_for


def start_afresh_if_earlier(url: str, schema: str) -> bool:
    """Drop the demo's schema when a table there lacks today's columns; whether it did."""
    with cursor_for(engine_for(url), transaction=True) as cursor:
        if not any(ddl.missing_columns(cursor, schema, table) for table in TABLES.values()):
            return False
        cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return True
