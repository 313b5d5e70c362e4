"""How newest-wins is applied: raw_chats' window is flattened inside PostgreSQL into the
newest-wins tables, keeping per chat its newest version, all in one transaction.

Read top to bottom: the plan (`NewestWins`), the outputs it wrote beside its own
(`WrittenWith`) and what it did (`Applied`), then `apply_newest`,
then its steps in the order it takes them: the version registry accepts the window's chats
(`_accept_batch`), the days their aggregate rows fall on are noted (`_batch_days`), and each
table's rows of the accepted chats are replaced (`_apply_table`). The flattening itself is
`flatten_sql`; the aggregates recomputed in the same transaction are `aggregates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from chat_assets.tables import (
    CHAT_ID_FIELD,
    RAW_CHATS,
    RAW_PARTITION,
    VERSION_FIELD,
    Table,
    aggregates_of,
)
from chat_assets.warehouse import flatten_sql
from chat_assets.warehouse.aggregates import fact_days, recompute_days
from chat_assets.warehouse.bookkeeping import VERSIONS_TABLE, count_rows
from chat_assets.warehouse.connection import cursor_for, refusals_without_values
from chat_assets.warehouse.ddl import prepare
from chat_assets.warehouse.sql_parts import any_of, qualified, qualified_name


@dataclass(frozen=True)
class NewestWins:
    """An asset's output for newest-wins tables: flatten raw_chats' window into these tables,
    inside the warehouse, keeping per chat the newest version, all in one transaction. Their
    aggregates' local days are those of the partitions' `timezone`, and an interval aggregate's
    intervals last `interval_minutes`."""

    tables: tuple[Table, ...]
    timezone: str
    interval_minutes: int


@dataclass(frozen=True)
class WrittenWith:
    """An asset's output for a newest-wins table that the `NewestWins` of another output of the
    same step (`output`, handled before it) wrote in its transaction: nothing is left to write,
    and the IO manager records what the partition holds."""

    output: str


@dataclass(frozen=True)
class Applied:
    """What a newest-wins write did."""

    chats_accepted: int
    chats_stale: int
    rows_written: int
    # Non-null source values that could not become the declared type, per column (and under
    # the list's name, chats whose list was not a list).
    coercion_failures: dict[str, int] = field(default_factory=dict)
    # Rows written per documented value of the table's summary column.
    summary: dict[str, int] = field(default_factory=dict)
    # For the facts of an aggregate: the local days, old and new, of the accepted chats' rows,
    # whose aggregate rows were recomputed in the same transaction.
    days_recomputed: tuple[date, ...] = ()


# The registry's name for the versions of the tables applied together (rows written before it
# was a constant carry this, the first table's name, so they still count).
REGISTRY_KEY = "chats"
# Temporary tables of the transaction: the accepted chat versions, and the flattened window.
_BATCH = sql.Identifier("_chat_batch")
_FLAT = sql.Identifier("_chat_flat")


def apply_newest(
    engine: sa.Engine,
    schema: str,
    tables: Sequence[Table],
    start: datetime,
    end: datetime,
    *,
    timezone: str,
    interval_minutes: int,
) -> list[Applied]:
    """Flatten the chats of raw_chats in [start, end) into each table, inside PostgreSQL,
    keeping per chat the newest version's rows; all tables in one transaction.

    The tables are applied together, so one registry row per chat serves them all, under
    REGISTRY_KEY. The registry accepts a chat when no newer version was applied before
    (ties: the later write wins); the accepted chats' old rows are deleted from every table and
    their new rows inserted. The registry's row lock serialises concurrent writers of the same
    chat until commit, and rows are locked in chat_id order so writers never deadlock.

    Each aggregate of one of the tables is recomputed, in the same transaction, for every local
    day (in `timezone`) that the accepted chats' rows fell on before or fall on now (an interval
    aggregate in intervals of `interval_minutes`), and those days are marked for
    re-materialization (`days_to_refresh`).
    """
    prepare(engine, schema, RAW_CHATS)
    aggregates = aggregates_of(tables)
    facts = [f for a in aggregates if a.aggregation is not None for f in a.aggregation.fact_tables]
    for table in (*tables, *facts, *aggregates):
        prepare(engine, schema, table)
    results = []
    with cursor_for(engine, transaction=True) as cursor:
        # Timestamps without an offset are UTC, as in the reference flattening.
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        # Every statement below reads raw_chats anew: hold landings off until commit, so all
        # see the same versions. (SHARE admits other applies, and it is taken first of all.)
        cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(qualified(schema, RAW_CHATS)))
        with refusals_without_values(tables[0].name):
            accepted, stale, every = _accept_batch(cursor, schema, REGISTRY_KEY, start, end)
        # When the registry accepted every version in the window (as it does unless a newer
        # version was applied before, or a chat is in the window twice), the flattened rows
        # are all the accepted ones, and are written without a join to the batch.
        batch = None if every else _BATCH
        days = {a.name: _batch_days(cursor, schema, a, timezone) for a in aggregates}
        # PostgreSQL may spread CREATE TABLE AS over parallel workers, but not INSERT ... SELECT:
        # so the window is flattened, every payload read once for all the tables, into a
        # temporary table, and each table's rows of the accepted versions inserted from there.
        # The planner would cache the list items of each chat by the chat's lists (Memoize),
        # which no two chats share: hashing and copying them for a few hits cost more than it
        # saved.
        cursor.execute("SET LOCAL enable_memoize = off")
        with refusals_without_values(", ".join(table.name for table in tables)):
            cursor.execute(
                sql.SQL("CREATE TEMP TABLE {} AS {}").format(
                    _FLAT, flatten_sql.flattened_rows(tables, qualified(schema, RAW_CHATS))
                ),
                (start, end),
            )
        cursor.execute("RESET enable_memoize")
        added = []
        for table in tables:
            with refusals_without_values(table.name):
                added.append(_apply_table(cursor, schema, table, batch))
        row = cursor.execute(flatten_sql.figures(tables, _FLAT, batch)).fetchone()
        for figures in flatten_sql.table_figures(tables, row):
            results.append(
                Applied(accepted, stale, figures.rows, figures.failures, figures.summary)
            )
        cursor.execute(sql.SQL("DROP TABLE {}").format(_FLAT))
        for aggregate in aggregates:
            assert aggregate.aggregation is not None
            touched = days[aggregate.name] | _batch_days(cursor, schema, aggregate, timezone)
            with refusals_without_values(aggregate.name):
                recompute_days(
                    cursor,
                    schema,
                    aggregate,
                    timezone,
                    touched,
                    mark=True,
                    interval_minutes=interval_minutes,
                )
            if aggregate.aggregation.facts in tables:
                own = tables.index(aggregate.aggregation.facts)
                results[own] = replace(results[own], days_recomputed=tuple(sorted(touched)))
        # Row counters last, in one order for every writer (aggregates first, in
        # recompute_days): their row locks are held only until the commit that follows.
        for table, delta in zip(tables, added, strict=True):
            count_rows(cursor, schema, table, delta)
        cursor.execute(sql.SQL("DROP TABLE {}").format(_BATCH))
    return results


def _accept_batch(
    cursor: Any, schema: str, registry_key: str, start: datetime, end: datetime
) -> tuple[int, int, bool]:
    """Leave in the temporary batch table the window's chat versions the registry accepts;
    returns how many it accepted, how many were older than the version applied before, and
    whether it accepted every version in the window."""
    registry = qualified_name(schema, VERSIONS_TABLE)
    cursor.execute(
        sql.SQL(
            "CREATE TEMP TABLE {batch} AS SELECT DISTINCT ON ({id})"
            " {id}, {version}, {partition} FROM {raw} WHERE {version} >= %s"
            " AND {version} < %s ORDER BY {id}, {version} DESC, {partition} DESC"
        ).format(
            batch=_BATCH,
            raw=qualified(schema, RAW_CHATS),
            id=sql.Identifier(CHAT_ID_FIELD),
            version=sql.Identifier(VERSION_FIELD),
            partition=sql.Identifier(RAW_PARTITION),
        ),
        (start, end),
    )
    chats = cursor.rowcount
    versions = cursor.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {} >= %s AND {} < %s").format(
            qualified(schema, RAW_CHATS),
            sql.Identifier(VERSION_FIELD),
            sql.Identifier(VERSION_FIELD),
        ),
        (start, end),
    ).fetchone()[0]
    cursor.execute(
        sql.SQL(
            "WITH accepted AS (INSERT INTO {registry} AS r (table_name, chat_id, updated_at)"
            " SELECT %s, {id}, {version} FROM {batch} ORDER BY {id}"
            " ON CONFLICT (table_name, chat_id) DO UPDATE SET updated_at = EXCLUDED.updated_at"
            " WHERE r.updated_at <= EXCLUDED.updated_at RETURNING chat_id)"
            " DELETE FROM {batch} WHERE {id} NOT IN (SELECT chat_id FROM accepted)"
        ).format(
            registry=registry,
            batch=_BATCH,
            id=sql.Identifier(CHAT_ID_FIELD),
            version=sql.Identifier(VERSION_FIELD),
        ),
        (registry_key,),
    )
    stale = cursor.rowcount
    cursor.execute(sql.SQL("ANALYZE {}").format(_BATCH))
    return chats - stale, stale, not stale and chats == versions


def _batch_days(cursor: Any, schema: str, aggregate: Table, timezone: str) -> set[date]:
    """The local days on which the batch's chats have facts of the aggregate, as stored now."""
    return fact_days(cursor, schema, aggregate, timezone, any_of(_batch_ids()))


def _batch_ids() -> sql.Composed:
    """The accepted chats' ids, as a query over the batch table."""
    return sql.SQL("SELECT {} FROM {}").format(sql.Identifier(CHAT_ID_FIELD), _BATCH)


def _apply_table(cursor: Any, schema: str, table: Table, batch: sql.Composable | None) -> int:
    """Replace the rows of the batch's chats in `table` with its rows of the flattened window
    (of the versions in `batch`; None: all of them); returns the rows added (inserted minus
    deleted)."""
    target = qualified(schema, table)
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE {} {}").format(
            target, sql.Identifier(table.key[0]), any_of(_batch_ids())
        )
    )
    deleted = cursor.rowcount
    cursor.execute(flatten_sql.insert_rows(table, _FLAT, batch, target))
    return cursor.rowcount - deleted
