"""Rows that a table's `unique_by` columns identify once: within the partition (on its stored
rows) and across the whole table (one SQL query)."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from psycopg import sql

from chat_assets.checks.culprits import EXAMPLES, json_key
from chat_assets.checks.specs import UNIQUE_IN_PARTITION, UNIQUE_TABLE_WIDE
from chat_assets.tables import Table
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.sql_parts import any_of, qualified


def unique_in_partition(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """The unique_by columns identify one row. A nullable key column may be NULL (a group of
    its own, as in an aggregate); any other unique_by column must hold a value."""
    keys = rows[list(table.unique_by)]
    required = [c for c in table.unique_by if c not in table.key or not table.column(c).nullable]
    missing = int(keys[required].isna().any(axis=1).sum())
    complete = keys[required].notna().all(axis=1)
    duplicated = keys[keys.duplicated(keep=False) & complete]
    counts = duplicated.value_counts(dropna=False).head(EXAMPLES)
    return dg.AssetCheckResult(
        check_name=UNIQUE_IN_PARTITION,
        asset_key=table.name,
        passed=missing == 0 and duplicated.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": len(rows),
            "rows_without_id": missing,
            "duplicated_rows": len(duplicated),
            "duplicated_keys": dg.MetadataValue.json(
                [{"key": [json_key(k) for k in key], "rows": int(n)} for key, n in counts.items()]
            ),
        },
    )


def unique_table_wide(
    engine: sa.Engine, schema: str, table: Table, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """The partition's ids, each looked up in the whole table through an index: a repeat
    anywhere involves a row some partition wrote, and that partition's check finds it. So the
    guarantee is table-wide while the work is the partition's, whatever the history.

    The ids are the table's `own_id` (a chat's, or a list item's); a child table's first
    unique_by column is the chat it belongs to."""
    if table.own_id is None:
        raise ValueError(f"{table.name}: its rows have no id of their own to look up")
    target = qualified(schema, table)
    time_column = sql.Identifier(table.time_column)
    item = sql.Identifier(table.own_id)
    mine = sql.SQL("SELECT {} FROM {} WHERE {} >= %s AND {} < %s AND {} IS NOT NULL").format(
        item, target, time_column, time_column, item
    )
    if len(table.unique_by) == 1:
        query = sql.SQL(
            "SELECT {item}, count(*) FROM {target} WHERE {item} {mine} GROUP BY {item}"
            " HAVING count(*) > 1 ORDER BY {item} LIMIT %s"
        ).format(item=item, target=target, mine=any_of(mine))
    else:
        query = sql.SQL(
            "SELECT {item}, array_agg(DISTINCT {chat} ORDER BY {chat}) FROM {target}"
            " WHERE {item} {mine} GROUP BY {item} HAVING count(*) > 1 ORDER BY {item} LIMIT %s"
        ).format(
            item=item,
            chat=sql.Identifier(table.unique_by[0]),
            target=target,
            mine=any_of(mine),
        )
    with cursor_for(engine) as cursor:
        found = cursor.execute(query, (start, end, EXAMPLES)).fetchall()
    if len(table.unique_by) == 1:
        culprits = [{"id": row[0], "rows": row[1]} for row in found]
    else:
        culprits = [{"id": row[0], "chat_ids": row[1][:EXAMPLES]} for row in found]
    return dg.AssetCheckResult(
        check_name=UNIQUE_TABLE_WIDE,
        asset_key=table.name,
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR
        if len(table.unique_by) == 1
        else dg.AssetCheckSeverity.WARN,
        metadata={"repeated_ids": dg.MetadataValue.json(culprits)},
    )
