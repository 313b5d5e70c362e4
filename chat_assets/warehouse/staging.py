"""Rows into PostgreSQL: binary COPY of a frame or of row batches, in declared column order,
into a declared table or a temporary staging table with its columns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
from psycopg import sql

from chat_assets.tables import Table
from chat_assets.warehouse.ddl import column_definitions


def staging_table(cursor: Any, table: Table) -> sql.Identifier:
    """A temporary table with the declared columns, dropped at commit."""
    staging = sql.Identifier(f"_staging_{table.name}")
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            staging, sql.SQL(", ").join(column_definitions(table))
        )
    )
    return staging


def copy_into(cursor: Any, target: sql.Composable, table: Table, frame: pd.DataFrame) -> None:
    """Binary COPY of a frame (see `copy_rows`)."""
    copy_rows(cursor, target, table, frame_rows(frame, table))


def copy_rows(
    cursor: Any, target: sql.Composable, table: Table, rows: Iterable[tuple[Any, ...]]
) -> None:
    """Binary COPY of rows in declared column order: values travel typed, so text is never
    re-parsed on the server."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, table.column_names))
    )
    with cursor.copy(statement) as copy:
        copy.set_types([c.type.value for c in table.columns])
        for row in rows:
            copy.write_row(row)


def frame_rows(frame: pd.DataFrame, table: Table) -> Iterator[tuple[Any, ...]]:
    """The frame's rows in declared column order, missing values as None."""
    return zip(*(_python_values(frame[name]) for name in table.column_names), strict=True)


def _python_values(series: pd.Series) -> list[Any]:
    """A column as Python objects for COPY; datetimes as plain `datetime`, which is several
    times cheaper to make than pandas' Timestamp."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        values = series.dt.to_pydatetime()
        values[series.isna().to_numpy()] = None
        return values.tolist()
    return series.to_numpy(dtype=object, na_value=None).tolist()
