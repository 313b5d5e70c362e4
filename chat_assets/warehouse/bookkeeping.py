"""chat_assets' own tables beside the declared ones: each table's row counter, the version
registry of the newest-wins tables, the aggregate days marked for re-materialization, and when
each UJET account's last request started.

This module creates them and keeps the row counters; the writers that own the registry
(`newest_wins`), the marks (`aggregates`) and the request starts (`request_turns`) read and
write those themselves.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from psycopg import sql

from chat_assets.tables import Table
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.sql_parts import qualified, qualified_name

VERSIONS_TABLE = "_chat_versions"
REFRESH_TABLE = "_days_to_refresh"
ROW_COUNTS_TABLE = "_row_counts"
REQUEST_STARTS_TABLE = "_ujet_request_starts"

# chat_assets' own bookkeeping tables: the version registry of the newest-wins tables, the
# aggregate days changed since their materialization, and each table's rows.
_BOOKKEEPING = {
    ROW_COUNTS_TABLE: "table_name text PRIMARY KEY, row_count bigint NOT NULL",
    VERSIONS_TABLE: "table_name text NOT NULL, chat_id bigint NOT NULL,"
    " updated_at timestamptz NOT NULL, PRIMARY KEY (table_name, chat_id)",
    REFRESH_TABLE: "table_name text NOT NULL, day date NOT NULL, changed_by bigint NOT NULL,"
    " PRIMARY KEY (table_name, day)",
    REQUEST_STARTS_TABLE: "account text PRIMARY KEY, last_start timestamptz NOT NULL",
}


def ensure_bookkeeping(cursor: Any, schema: str, name: str) -> None:
    """Create the bookkeeping table `name` (one of those above) if it is missing."""
    cursor.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            qualified_name(schema, name), sql.SQL(_BOOKKEEPING[name])
        )
    )


def ensure_row_counter(cursor: Any, schema: str, table: Table) -> None:
    """Give the table its row counter; the counter of a table that predates it starts from one
    count, taken while writers are held off."""
    ensure_bookkeeping(cursor, schema, ROW_COUNTS_TABLE)
    counts = qualified_name(schema, ROW_COUNTS_TABLE)
    cursor.execute(sql.SQL("SELECT 1 FROM {} WHERE table_name = %s").format(counts), (table.name,))
    if cursor.fetchone() is None:
        target = qualified(schema, table)
        cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(target))
        cursor.execute(
            sql.SQL("INSERT INTO {} SELECT %s, count(*) FROM {}").format(counts, target),
            (table.name,),
        )


def count_rows(cursor: Any, schema: str, table: Table, delta: int) -> None:
    """Add a write's inserted minus deleted rows to the table's counter: the last statement
    of a write, since the counter's row lock is then held until commit."""
    cursor.execute(
        sql.SQL("UPDATE {} SET row_count = row_count + %s WHERE table_name = %s").format(
            qualified_name(schema, ROW_COUNTS_TABLE)
        ),
        (delta, table.name),
    )


def row_count(engine: sa.Engine, schema: str, table: Table) -> int:
    """The table's rows, from the counter every write keeps in its own transaction."""
    with cursor_for(engine) as cursor:
        return cursor.execute(
            sql.SQL("SELECT row_count FROM {} WHERE table_name = %s").format(
                qualified_name(schema, ROW_COUNTS_TABLE)
            ),
            (table.name,),
        ).fetchone()[0]
