"""The privacy bookkeeping tables (the suppression list, the ledger): where they live and how
they are created, on first use, inside the transaction that first needs them."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from chat_assets.warehouse import ddl

# One lock for their DDL, so that concurrent first uses never race.
_DDL_LOCK = 7_317_003


def qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def ensure_table(cursor: Any, schema: str, name: str, columns: str) -> None:
    """Create the table with these column definitions when it is missing."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
    ddl.ensure_schema(cursor, schema)
    cursor.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            qualified(schema, name), sql.SQL(columns)
        )
    )


def exists(cursor: Any, schema: str, name: str) -> bool:
    return cursor.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{name}"',)
    ).fetchone()[0]
