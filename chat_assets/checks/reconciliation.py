"""An aggregate's partition equals a fresh aggregation of its facts, in one SQL query."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import sqlalchemy as sa
from psycopg import sql

from chat_assets.checks.culprits import EXAMPLES, json_key
from chat_assets.checks.specs import RECONCILED
from chat_assets.tables import Table
from chat_assets.warehouse import aggregate_sql
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.sql_parts import qualified
from chat_assets.warehouse.windows import window_days


def reconciled(
    engine: sa.Engine, schema: str, table: Table, timezone: str, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """The partition's stored rows equal a fresh aggregation of the facts. One statement reads
    both, so it sees one snapshot: facts and aggregate are committed together."""
    aggregation = table.aggregation
    assert aggregation is not None
    days = window_days(table, start, end)
    group = sql.Identifier(aggregation.group_by[0])
    query = sql.SQL(
        "WITH fresh AS ({fresh}), stored AS (SELECT {columns} FROM {target}"
        " WHERE {time} = ANY(%(days)s))"
        " SELECT 'missing', {group} FROM (SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored) m"
        " UNION ALL"
        " SELECT 'unexpected', {group} FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM fresh) u"
    ).format(
        fresh=aggregate_sql.aggregated_rows(table, schema),
        columns=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        target=qualified(schema, table),
        time=sql.Identifier(table.time_column),
        group=group,
    )
    with cursor_for(engine) as cursor:
        found = cursor.execute(query, {"days": days, "timezone": timezone}).fetchall()
    groups = sorted({json_key(group) for _, group in found}, key=str)
    return dg.AssetCheckResult(
        check_name=RECONCILED,
        asset_key=table.name,
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            # A fresh row the table lacks (or holds with other figures), and a stored row no
            # fresh one equals: a queue with changed figures appears in both.
            "rows_missing": sum(kind == "missing" for kind, _ in found),
            "rows_unexpected": sum(kind == "unexpected" for kind, _ in found),
            f"{aggregation.group_by[0]}s": dg.MetadataValue.json(groups[:EXAMPLES]),
        },
    )
