"""The privacy bookkeeping tables (the suppression list, the ledger): where they live and how
they are created, on first use, inside the transaction that first needs them; and the one
transaction in which a privacy command (an erasure, a rotation) does its work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from psycopg import sql

from chat_assets.tables import RAW_CHATS, TABLES
from chat_assets.warehouse import ddl
from chat_assets.warehouse.connection import cursor_for

T = TypeVar("T")

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


class _DryRun(Exception):
    """Rolls a dry run's transaction back once its outcome is known."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome


def landed(engine: sa.Engine, schema: str) -> bool:
    """Whether any day has landed (a dry run creates no table)."""
    with cursor_for(engine) as cursor:
        return exists(cursor, schema, RAW_CHATS.name)


def in_one_transaction(engine: sa.Engine, schema: str, work: Callable[[Any], T], *, dry: bool) -> T:
    """What `work` returns, done on a cursor in one transaction, rolled back when `dry`."""
    # The declared tables exist before the transaction begins: DDL on them in it would take
    # locks that a landing waiting for this transaction may already hold.
    for table in TABLES.values():
        ddl.prepare(engine, schema, table)
    try:
        with cursor_for(engine, transaction=True) as cursor:
            outcome = work(cursor)
            if dry:
                raise _DryRun(outcome)
    except _DryRun as rolled_back:
        return rolled_back.outcome
    return outcome
