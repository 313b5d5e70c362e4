"""The demo's warehouse as an earlier version of chat_assets left it: its synthetic chats are
let go, so that an upgraded checkout's `bin/demo` starts afresh instead of failing on a table of
an earlier shape (a production warehouse is never touched: its runs name the table instead)."""

from __future__ import annotations

from psycopg import sql

from chat_assets.tables import TABLES
from chat_assets.warehouse import ddl
from chat_assets.warehouse.connection import WarehouseError, cursor_for, engine_for


def start_afresh_if_earlier(url: str, schema: str) -> bool:
    """Drop the demo's schema when a table there lacks today's columns; whether it did."""
    engine = engine_for(url)
    with cursor_for(engine, transaction=True) as cursor:
        for table in TABLES.values():
            found = cursor.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table.name}"',)
            ).fetchone()[0]
            if not found:
                continue
            try:
                ddl.refuse_earlier_shape(cursor, schema, table)
            except WarehouseError:
                cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
                return True
    return False
