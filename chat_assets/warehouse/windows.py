"""A table's partition window, written and read whole: replace the rows whose time column
falls in [start, end) in one transaction (from a frame, or from rows staged as they came),
and load them back typed as declared.

Writes COPY into a staging table and apply it in the same transaction as the delete they
replace, so a failure leaves the previous state intact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Loader

from chat_assets.tables import PgType, Table, typed_frame
from chat_assets.warehouse.bookkeeping import count_rows
from chat_assets.warehouse.connection import (
    WarehouseError,
    cursor_for,
    refusals_without_values,
    without_jit,
)
from chat_assets.warehouse.ddl import prepare
from chat_assets.warehouse.sql_parts import qualified
from chat_assets.warehouse.staged_window import StagedWindow
from chat_assets.warehouse.staging import copy_into, staging_table


def window_bounds(table: Table, start: datetime, end: datetime) -> tuple[Any, Any]:
    """The bounds of a partition window for the table's time column: the instants, or for a
    date column the local days (the window is given in the partitions' time zone)."""
    if table.column(table.time_column).type is PgType.DATE:
        return start.date(), end.date()
    return start, end


def window_days(start: datetime, end: datetime) -> list[date]:
    """The local days of a partition window (given in the partitions' time zone)."""
    first, last = start.date(), end.date()
    return [first + timedelta(days=n) for n in range((last - first).days)]


def validate_frame(frame: pd.DataFrame, table: Table, start: datetime, end: datetime) -> None:
    missing = [n for n in table.column_names if n not in frame.columns]
    extra = [n for n in frame.columns if n not in table.column_names]
    if missing or extra:
        raise WarehouseError(
            f"{table.name}: frame columns do not match the declaration "
            f"(missing: {missing or 'none'}, undeclared: {extra or 'none'})"
        )
    for column in table.columns:
        if not column.nullable and (nulls := int(frame[column.name].isna().sum())):
            raise WarehouseError(f"{table.name}.{column.name}: {nulls} rows are null")
    times = pd.to_datetime(frame[table.time_column], utc=True)
    outside = int(((times < pd.Timestamp(start)) | (times >= pd.Timestamp(end))).sum())
    if outside:
        raise WarehouseError(
            f"{table.name}: {outside} rows have {table.time_column} outside the window "
            f"[{start.isoformat()}, {end.isoformat()})"
        )
    duplicated = int(frame.duplicated(subset=table.key).sum())
    if duplicated:
        raise WarehouseError(f"{table.name}: {duplicated} rows repeat the key {table.key}")


def replace_window(
    engine: sa.Engine,
    schema: str,
    table: Table,
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
) -> int:
    """Make the window's rows exactly `frame`, in one transaction; returns rows written."""
    validate_frame(frame, table, start, end)
    prepare(engine, schema, table)
    with refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        staging = staging_table(cursor, table)
        copy_into(cursor, staging, table, frame)
        return _replace_rows(
            cursor, schema, table, start, end, sql.SQL("SELECT * FROM {}").format(staging)
        )


# Bytes of a staging file sent to PostgreSQL at a time.
_COPY_CHUNK = 1 << 20

# What a landing does last, inside its transaction (given the cursor): the rows it removed and
# metadata of its own. The IO manager's, never an asset's.
Finally = Callable[[Any], tuple[int, dict[str, Any]]]


# Large values (a chat's payload) are compressed as they are written: with lz4 in about half the
# time PostgreSQL's default method takes, where the server is built with it. Rows copied on from
# the staging table keep their compressed values.
_FAST_COMPRESSION = (
    "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def land_staged(
    engine: sa.Engine,
    schema: str,
    table: Table,
    staged: StagedWindow,
    start: datetime,
    end: datetime,
    *,
    finally_: Finally | None = None,
) -> tuple[int, dict[str, Any]]:
    """Make the window's rows the newest of `staged`'s, in one transaction: the staging file
    streamed into a temporary table, then the window replaced from it; (rows written, metadata
    of `finally_`, run last before commit)."""
    prepare(engine, schema, table)
    with refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        cursor.execute(_FAST_COMPRESSION)
        staging = staging_table(cursor, table)
        columns = sql.SQL(", ").join(map(sql.Identifier, table.column_names))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(staging, columns)
        with cursor.copy(statement) as copy, staged.path.open("rb") as rows:
            while chunk := rows.read(_COPY_CHUNK):
                copy.write(chunk)
        per = sql.SQL(", ").join(map(sql.Identifier, staged.one_row_per))
        newest = sql.SQL(
            "SELECT * FROM (SELECT DISTINCT ON ({per}) * FROM {staging}"
            " ORDER BY {per}, {time} DESC) AS newest WHERE {time} >= %s AND {time} < %s"
        ).format(per=per, staging=staging, time=sql.Identifier(table.time_column))
        written = _replace_rows(cursor, schema, table, start, end, newest, (start, end))
        if finally_ is None:
            return written, {}
        removed, metadata = finally_(cursor)
        return written - removed, metadata


def _replace_rows(
    cursor: Any,
    schema: str,
    table: Table,
    start: datetime,
    end: datetime,
    rows: sql.Composable,
    params: tuple[Any, ...] = (),
) -> int:
    """Delete the window's rows and insert those of the query `rows`, keeping the table's row
    counter; returns the rows written."""
    time_column = sql.Identifier(table.time_column)
    target = qualified(schema, table)
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(
            target, time_column, time_column
        ),
        (start, end),
    )
    deleted = cursor.rowcount
    cursor.execute(sql.SQL("INSERT INTO {} {}").format(target, rows), params)
    written = cursor.rowcount
    _analyze(cursor, target, table)
    count_rows(cursor, schema, table, written - deleted)
    return written


# The rows ANALYZE samples, in hundreds (its statistics target): enough to place a window among
# the others, few enough to cost the same at any size of the table.
_SAMPLE_TARGET = 10


def _analyze(cursor: Any, target: sql.Composable, table: Table) -> None:
    """Refresh the statistics of the time column, so that the planner sees the window just
    written (the new rows are in the sample, as this transaction's own). A window past the
    statistics looks almost empty to it, and it would then read the window without parallel
    workers, which made the flattening of a day much slower."""
    cursor.execute(
        "SELECT set_config('default_statistics_target', %s, true)", (str(_SAMPLE_TARGET),)
    )
    cursor.execute(sql.SQL("ANALYZE {} ({})").format(target, sql.Identifier(table.time_column)))


def window_summary(
    engine: sa.Engine, schema: str, table: Table, start: datetime, end: datetime
) -> tuple[int, dict[str, int]]:
    """The rows whose time column falls in [start, end), and their counts per documented value
    of the table's enumeration column (none without one)."""
    time_column = sql.Identifier(table.time_column)
    values = table.column(table.summary_by).values if table.summary_by else ()
    counts = sql.SQL("").join(
        sql.SQL(", count(*) FILTER (WHERE {} = {})").format(
            sql.Identifier(table.summary_by or ""), sql.Literal(value)
        )
        for value in values
    )
    query = sql.SQL("SELECT count(*){} FROM {} WHERE {} >= %s AND {} < %s").format(
        counts, qualified(schema, table), time_column, time_column
    )
    with cursor_for(engine) as cursor:
        row = cursor.execute(query, window_bounds(table, start, end)).fetchone()
    return row[0], dict(zip(values, row[1:], strict=True))


LOAD_CHUNK_ROWS = 50_000


class JsonBytesLoader(Loader):
    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def load_window(
    engine: sa.Engine,
    schema: str,
    table: Table,
    start: datetime,
    end: datetime,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The rows whose time column falls in [start, end), typed as declared (all columns, or
    those named)."""
    names = list(columns) if columns is not None else table.column_names
    time_column = sql.Identifier(table.time_column)
    query = sql.SQL("SELECT {} FROM {} WHERE {} >= %s AND {} < %s ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, names)),
        qualified(schema, table),
        time_column,
        time_column,
        sql.SQL(", ").join(map(sql.Identifier, table.key)),
    )
    frames = []
    with engine.connect() as connection:
        dbapi = connection.connection.dbapi_connection
        without_jit(dbapi)
        exists = dbapi.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table.name}"',)
        ).fetchone()[0]
        if exists:
            # A server-side cursor, read in chunks that become typed columns at once: a day is
            # never held as Python tuples whole.
            with dbapi.cursor(name=f"load_{table.name}") as cursor:
                # JSONB arrives as its UTF-8 JSON bytes: parsing is left to the consumer, chunk
                # by chunk, because a day of parsed chats is many times the size of its JSON
                # (and a str holding one Korean name takes two bytes per character).
                cursor.adapters.register_loader("jsonb", JsonBytesLoader)
                cursor.execute(query, window_bounds(table, start, end))
                while rows := cursor.fetchmany(LOAD_CHUNK_ROWS):
                    frames.append(typed_frame(rows, table, names))
    if not frames:
        return typed_frame([], table, names)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
