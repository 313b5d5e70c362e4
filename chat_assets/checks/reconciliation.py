"""An aggregate's partition equals a fresh aggregation of its facts, and an interval aggregate's
day adds up to the same day's row of its daily aggregate; each in one SQL query."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import sqlalchemy as sa
from psycopg import sql

from chat_assets.checks.culprits import EXAMPLES, json_key
from chat_assets.checks.specs import ADDS_UP_TO_DAY, RECONCILED
from chat_assets.tables import Table, rolled_up
from chat_assets.warehouse import aggregate_sql
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.ddl import prepare
from chat_assets.warehouse.sql_parts import qualified
from chat_assets.warehouse.windows import window_days


def reconciled(
    engine: sa.Engine,
    schema: str,
    table: Table,
    timezone: str,
    start: datetime,
    end: datetime,
    *,
    interval_minutes: int,
) -> dg.AssetCheckResult:
    """The partition's stored rows equal a fresh aggregation of the facts (an interval
    aggregate's in intervals of `interval_minutes`). One statement reads both, so it sees one
    snapshot: facts and aggregate are committed together."""
    aggregation = table.aggregation
    assert aggregation is not None
    query = sql.SQL(
        "WITH fresh AS ({fresh}), stored AS (SELECT {columns} FROM {target} WHERE {in_days})"
        " SELECT 'missing', {group} FROM (SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored) m"
        " UNION ALL"
        " SELECT 'unexpected', {group} FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM fresh) u"
    ).format(
        fresh=aggregate_sql.aggregated_rows(table, schema),
        columns=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        target=qualified(schema, table),
        in_days=aggregate_sql.in_days(table),
        group=sql.Identifier(aggregation.group_by[0]),
    )
    params = aggregate_sql.params(window_days(start, end), timezone, interval_minutes)
    with cursor_for(engine) as cursor:
        found = cursor.execute(query, params).fetchall()
    return _differences(table, RECONCILED, found)


def adds_up_to_day(
    engine: sa.Engine, schema: str, table: Table, timezone: str, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """The partition's intervals add up, per group, to the day's row of the daily aggregate:
    every count is the sum of the intervals' counts, every maximum their maximum, and a group
    has intervals on the day exactly when it has a row that day. Both as stored, in one
    statement."""
    aggregation = table.aggregation
    assert aggregation is not None and aggregation.interval is not None
    day_table = aggregation.interval.day_table
    prepare(engine, schema, day_table)
    groups = [sql.Identifier(name) for name in aggregation.group_by]
    figures = rolled_up(table)
    query = sql.SQL(
        "WITH summed AS (SELECT ({start} AT TIME ZONE %(timezone)s)::date, {groups}, {summed}"
        " FROM {target} WHERE {in_days} GROUP BY 1, {positions}),"
        " days AS (SELECT {day}, {groups}, {figures} FROM {day_table}"
        " WHERE {day} = ANY(%(days)s::date[]))"
        " SELECT 'missing', {group} FROM (SELECT * FROM days EXCEPT ALL SELECT * FROM summed) m"
        " UNION ALL"
        " SELECT 'unexpected', {group} FROM (SELECT * FROM summed EXCEPT ALL SELECT * FROM days) u"
    ).format(
        start=sql.Identifier(aggregation.interval.start),
        groups=sql.SQL(", ").join(groups),
        summed=sql.SQL(", ").join(
            sql.SQL("{}({})").format(sql.SQL(how), sql.Identifier(name))
            for name, how in figures.items()
        ),
        target=qualified(schema, table),
        in_days=aggregate_sql.in_days(table),
        positions=sql.SQL(", ").join(sql.SQL(str(n)) for n in range(2, len(groups) + 2)),
        day=sql.Identifier(day_table.time_column),
        figures=sql.SQL(", ").join(map(sql.Identifier, figures)),
        day_table=qualified(schema, day_table),
        group=groups[0],
    )
    # The interval length plays no part: each stored interval counts as it was written.
    params = aggregate_sql.params(window_days(start, end), timezone, 0)
    with cursor_for(engine) as cursor:
        found = cursor.execute(query, params).fetchall()
    return _differences(table, ADDS_UP_TO_DAY, found)


def _differences(table: Table, check: str, found: list[tuple]) -> dg.AssetCheckResult:
    """The result of comparing rows: each row one side has that the other lacks, by group."""
    group_by = table.aggregation.group_by[0] if table.aggregation else table.key[0]
    groups = sorted({json_key(group) for _, group in found}, key=str)
    return dg.AssetCheckResult(
        check_name=check,
        asset_key=table.name,
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            # A row the compared side has that the table lacks (or holds with other figures),
            # and a row of the table that nothing equals: a queue with changed figures appears
            # in both.
            "rows_missing": sum(kind == "missing" for kind, _ in found),
            "rows_unexpected": sum(kind == "unexpected" for kind, _ in found),
            f"{group_by}s": dg.MetadataValue.json(groups[:EXAMPLES]),
        },
    )
