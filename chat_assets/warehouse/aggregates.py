"""Aggregate tables, kept equal to their facts: recompute a set of local days (in the
transaction of the write that changed their facts, or in the aggregate's own materialization),
and the days marked since their last materialization, which the catch-up sensor reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from psycopg import sql

from chat_assets.tables import Table
from chat_assets.warehouse import aggregate_sql
from chat_assets.warehouse.bookkeeping import REFRESH_TABLE, count_rows
from chat_assets.warehouse.connection import cursor_for, refusals_without_values
from chat_assets.warehouse.ddl import prepare
from chat_assets.warehouse.sql_parts import qualified, qualified_name
from chat_assets.warehouse.windows import window_days


@dataclass(frozen=True)
class Recompute:
    """An aggregate asset's output: recompute the partition's day from the facts, then describe
    the stored rows with `describe` (the metadata the UI shows and plots)."""

    timezone: str
    # The length of an interval aggregate's intervals, minutes (CHAT_ASSETS_INTERVAL_MINUTES).
    interval_minutes: int
    describe: Callable[[pd.DataFrame], dict[str, Any]]


# First key of the transaction-scoped advisory locks that serialise recomputing one day.
_DAY_LOCK = 7_317_002


def fact_days(
    cursor: Any,
    schema: str,
    aggregate: Table,
    timezone: str,
    chats: sql.Composable,
    params: dict[str, Any] | None = None,
) -> set[date]:
    """The local days (in `timezone`) on which some chats have facts of the aggregate, in any
    of its fact tables, as stored now; `chats` is the condition on a fact table's chat id (its
    first key column) that picks them (`= ANY(...)`)."""
    aggregation = aggregate.aggregation
    assert aggregation is not None
    query = sql.SQL(" UNION ").join(
        sql.SQL(
            "SELECT {day} FROM {facts} WHERE {chat} {chats} AND {day_of} IS NOT NULL AND {where}"
        ).format(
            day=aggregate_sql.local_day(day_of),
            facts=qualified(schema, facts),
            chat=sql.Identifier(facts.key[0]),
            chats=chats,
            day_of=sql.Identifier(day_of),
            where=sql.SQL(where),
        )
        for facts, day_of, where in aggregation.days_of()
    )
    return {row[0] for row in cursor.execute(query, {**(params or {}), "timezone": timezone})}


def recompute_days(
    cursor: Any,
    schema: str,
    table: Table,
    timezone: str,
    days: set[date],
    *,
    mark: bool,
    interval_minutes: int,
) -> int:
    """Make the aggregate's rows of `days` equal to a fresh aggregation of its facts (an
    interval aggregate's in intervals of `interval_minutes`); returns the rows written. `mark`
    records the days as changed since their materialization; without it (the materialization
    itself) their marks are cleared.

    One day is recomputed by one transaction at a time (an advisory lock per day, taken in day
    order): a later one waits, then reads every fact committed before it, its own included.
    """
    ordered = sorted(days)
    for day in ordered:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s::int, %s::int)", (_DAY_LOCK, day.toordinal())
        )
    target = qualified(schema, table)
    params = aggregate_sql.params(ordered, timezone, interval_minutes)
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE {}").format(target, aggregate_sql.in_days(table)), params
    )
    deleted = cursor.rowcount
    cursor.execute(
        sql.SQL("INSERT INTO {} ({}) {}").format(
            target,
            sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
            aggregate_sql.aggregated_rows(table, schema),
        ),
        params,
    )
    written = cursor.rowcount
    marks = qualified_name(schema, REFRESH_TABLE)
    if mark:
        cursor.execute(
            sql.SQL(
                "INSERT INTO {} (table_name, day, changed_by)"
                " SELECT %s, day, txid_current() FROM unnest(%s::date[]) AS day"
                " ON CONFLICT (table_name, day) DO UPDATE SET changed_by = EXCLUDED.changed_by"
            ).format(marks),
            (table.name, ordered),
        )
    else:
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE table_name = %s AND day = ANY(%s)").format(marks),
            (table.name, ordered),
        )
    count_rows(cursor, schema, table, written - deleted)
    return written


def recompute_window(
    engine: sa.Engine,
    schema: str,
    table: Table,
    timezone: str,
    start: datetime,
    end: datetime,
    *,
    interval_minutes: int,
) -> int:
    """Recompute the aggregate's local days of a partition window and clear their marks."""
    days = set(window_days(start, end))
    assert table.aggregation is not None
    for facts in table.aggregation.fact_tables:
        prepare(engine, schema, facts)
    prepare(engine, schema, table)
    with refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        return recompute_days(
            cursor, schema, table, timezone, days, mark=False, interval_minutes=interval_minutes
        )


def days_to_refresh(engine: sa.Engine, schema: str, table: Table) -> list[tuple[date, int]]:
    """The aggregate's days changed since their last materialization, with the transaction
    that last changed each (a run key that stays the same until the day changes again)."""
    query = sql.SQL("SELECT day, changed_by FROM {} WHERE table_name = %s ORDER BY day").format(
        qualified_name(schema, REFRESH_TABLE)
    )
    with cursor_for(engine) as cursor:
        exists = cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{REFRESH_TABLE}"',)
        ).fetchone()[0]
        return [tuple(row) for row in cursor.execute(query, (table.name,))] if exists else []
