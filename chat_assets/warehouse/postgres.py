"""The warehouse client: connect, create declared tables, write and read a partition's rows.

Writes COPY into a staging table and apply it in the same transaction as the delete they
replace, so a failure leaves the previous state intact.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Loader

from chat_assets.tables import (
    AGGREGATE_TABLES,
    CHAT_ID_FIELD,
    RAW_CHATS,
    RAW_PARTITION,
    RAW_PII_KEY,
    VERSION_FIELD,
    PgType,
    Table,
    WriteMode,
    aggregates_of,
    typed_frame,
)
from chat_assets.warehouse import aggregate_sql, flatten_sql

_engines: dict[str, sa.Engine] = {}

# One lock id for DDL, so that concurrent runs creating the same schema never race.
_DDL_LOCK = 7_317_001


class WarehouseError(RuntimeError):
    """A frame does not fit its declared table; the message names columns and counts only."""


@contextmanager
def _refusals_without_values(name: str) -> Iterator[None]:
    """PostgreSQL quotes row values in its errors (DETAIL: Failing row contains ..., COPY
    context); say which table, column and constraint refused, never what the value was."""
    try:
        yield
    except (psycopg.Error, sa.exc.DBAPIError) as error:
        cause = error.orig if isinstance(error, sa.exc.DBAPIError) else error
        diag = getattr(cause, "diag", None)
        where = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("column", getattr(diag, "column_name", None)),
                ("constraint", getattr(diag, "constraint_name", None)),
            )
            if value
        )
        raise WarehouseError(
            f"{name}: PostgreSQL refused the write ({type(cause).__name__}, SQLSTATE "
            f"{getattr(cause, 'sqlstate', None)}{', ' + where if where else ''}); "
            "the transaction was rolled back and nothing changed"
        ) from None


class WarehouseUnreachable(RuntimeError):
    """The warehouse refused or never answered a connection."""


@contextmanager
def cursor_for(engine: sa.Engine, *, transaction: bool = False) -> Iterator[Any]:
    """A psycopg cursor on a pooled connection (in one transaction when asked), for COPY and
    plain SQL; closed, and the connection returned, when the block ends."""
    with engine.begin() if transaction else engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            _without_jit(cursor)
            yield cursor
        finally:
            cursor.close()


def _without_jit(executor: Any) -> None:
    """For the rest of the transaction of `executor` (a psycopg cursor or connection), no JIT
    compilation of queries. The flattening and the checks compile to large expressions over a
    day's rows: where the server has JIT, compiling them cost more than it saved (the apply took
    twice as long, the checks a fifth longer)."""
    executor.execute("SET LOCAL jit = off")


@contextmanager
def held_lock(engine: sa.Engine, name: str) -> Iterator[float]:
    """One holder at a time, across every process using this warehouse, for the block.

    A session-level advisory lock named `name`, waited for inside PostgreSQL: no polling, handed
    to the next waiter the moment it is released, and released by the server when a holder's
    connection dies. Yields the seconds spent waiting."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    key = {"key": int.from_bytes(digest, "big", signed=True)}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        began = time.monotonic()
        connection.exec_driver_sql("SELECT pg_advisory_lock(%(key)s)", key)
        try:
            yield time.monotonic() - began
        finally:
            connection.exec_driver_sql("SELECT pg_advisory_unlock(%(key)s)", key)


def any_of(keys: sql.Composable) -> sql.Composed:
    """`= ANY(ARRAY(<keys>))`: a batch's keys looked up through the table's index. As `IN
    (<keys>)`, a batch of thousands can make a hash join over the whole table look cheaper, whose
    cost grows with the history instead of with the batch; a large array is hashed when the
    table is scanned, so no plan is quadratic."""
    return sql.SQL("= ANY(ARRAY({}))").format(keys)


def engine_for(url: str) -> sa.Engine:
    """One pooled engine per URL per process; a bare postgresql:// URL means psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = _engines.get(url)
    if engine is None:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        _engines[url] = engine
    return engine


def check_reachable(engine: sa.Engine) -> None:
    """Connect once, so an unreachable warehouse fails a run before its fetch, not after it.
    The error names the host, port and variable to check, never the URL's password."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        where = engine.url.host or "a local socket"
        if engine.url.port:
            where += f":{engine.url.port}"
        sqlstate = getattr(exc.orig, "sqlstate", None)
        raise WarehouseUnreachable(
            f"PostgreSQL at {where} (database {engine.url.database or '?'}) could not be "
            f"reached ({type(exc.orig).__name__}, SQLSTATE {sqlstate}): check "
            "CHAT_ASSETS_DATABASE_URL (host, port, user, password) and that the server runs"
        ) from None


def qualified(schema: str, table: Table) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table.name))


def _column_definitions(table: Table) -> list[sql.Composable]:
    return [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.type.value),
            sql.SQL("" if c.nullable else " NOT NULL"),
        )
        for c in table.columns
    ]


def create_table_statements(schema: str, table: Table) -> list[sql.Composable]:
    columns = _column_definitions(table)
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    # A key with a nullable column (an aggregate's NULL group) is indexed, and its uniqueness
    # guarded by the checks; every other key is the primary key.
    keyed = all(not table.column(name).nullable for name in table.key)
    if keyed:
        columns.append(sql.SQL("PRIMARY KEY ({})").format(key))
    target = qualified(schema, table)
    # The facts of an aggregate are read by the instant that places them on a local day; the
    # table-wide uniqueness check looks up a partition's ids when they are not the key's first.
    indexed = [table.time_column] + [
        a.aggregation.day_of
        for a in AGGREGATE_TABLES
        if a.aggregation is not None and a.aggregation.facts is table
    ]
    if table.unique_by and table.aggregation is None and table.unique_by[-1] != table.key[0]:
        indexed.append(table.unique_by[-1])
    if table is RAW_CHATS:
        indexed.append(RAW_PII_KEY)
    indexes = [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{table.name}_{column}_idx"), target, sql.Identifier(column)
        )
        for column in indexed
    ]
    if not keyed:
        indexes.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{table.name}_key_idx"), target, key
            )
        )
    return [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(target, sql.SQL(", ").join(columns)),
        *indexes,
        sql.SQL("COMMENT ON TABLE {} IS {}").format(target, sql.Literal(table.description)),
        *(
            sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                target, sql.Identifier(c.name), sql.Literal(table.full_description(c))
            )
            for c in table.columns
        ),
    ]


def ensure_schema(cursor: Any, schema: str) -> None:
    """Create the schema only when it is missing: a role that owns an existing schema but may
    not CREATE on the database works, since even `CREATE SCHEMA IF NOT EXISTS` needs that."""
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cursor.fetchone() is None:
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def ensure_table(cursor: Any, schema: str, table: Table) -> None:
    """Create the table and its row counter; the counter of a table that predates it starts
    from one count, taken while writers are held off."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
    ensure_schema(cursor, schema)
    for statement in create_table_statements(schema, table):
        cursor.execute(statement)
    _ensure_bookkeeping(cursor, schema, ROW_COUNTS_TABLE)
    counts = _bookkeeping(schema, ROW_COUNTS_TABLE)
    cursor.execute(sql.SQL("SELECT 1 FROM {} WHERE table_name = %s").format(counts), (table.name,))
    if cursor.fetchone() is None:
        target = qualified(schema, table)
        cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(target))
        cursor.execute(
            sql.SQL("INSERT INTO {} SELECT %s, count(*) FROM {}").format(counts, target),
            (table.name,),
        )


def _count_rows(cursor: Any, schema: str, table: Table, delta: int) -> None:
    """Add a write's inserted minus deleted rows to the table's counter: the last statement
    of a write, since the counter's row lock is then held until commit."""
    cursor.execute(
        sql.SQL("UPDATE {} SET row_count = row_count + %s WHERE table_name = %s").format(
            _bookkeeping(schema, ROW_COUNTS_TABLE)
        ),
        (delta, table.name),
    )


_prepared: set[tuple[str, str, str]] = set()


def prepare(engine: sa.Engine, schema: str, table: Table) -> None:
    """Create the schema and table (and the version registry) once per process, in a short
    transaction of their own: writes then need no DDL, so they neither queue behind one
    another's table locks nor need a role allowed to create tables."""
    key = (str(engine.url), schema, table.name)
    if key in _prepared:
        return
    with _refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        ensure_table(cursor, schema, table)
        if table.write is WriteMode.NEWEST_WINS:
            _ensure_bookkeeping(cursor, schema, VERSIONS_TABLE)
        if table.write is WriteMode.AGGREGATE:
            _ensure_bookkeeping(cursor, schema, REFRESH_TABLE)
    _prepared.add(key)


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


def _staging_table(cursor: Any, table: Table) -> sql.Identifier:
    """A temporary table with the declared columns, dropped at commit."""
    staging = sql.Identifier(f"_staging_{table.name}")
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            staging, sql.SQL(", ").join(_column_definitions(table))
        )
    )
    return staging


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
    with _refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        staging = _staging_table(cursor, table)
        copy_into(cursor, staging, table, frame)
        return _replace_rows(
            cursor, schema, table, start, end, sql.SQL("SELECT * FROM {}").format(staging)
        )


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
    _count_rows(cursor, schema, table, written - deleted)
    return written


# The rows ANALYZE samples, in hundreds (its statistics target): enough to place a window among
# the others, few enough to cost the same at any size of the table.
_SAMPLE_TARGET = 10


def _analyze(cursor: Any, target: sql.Composable, table: Table) -> None:
    """Refresh the statistics of the time column, so that the planner sees the window just
    written (the new rows are in the sample, as this transaction's own). A window past the
    statistics looks almost empty to it, and it would then read the window without parallel
    workers: the flattening of a day took twice as long."""
    cursor.execute(
        "SELECT set_config('default_statistics_target', %s, true)", (str(_SAMPLE_TARGET),)
    )
    cursor.execute(sql.SQL("ANALYZE {} ({})").format(target, sql.Identifier(table.time_column)))


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
        _without_jit(dbapi)
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


def window_days(table: Table, start: datetime, end: datetime) -> list[date]:
    """The local days of a partition window, for a table whose time column is a date."""
    first, last = window_bounds(table, start, end)
    return [first + timedelta(days=n) for n in range((last - first).days)]


def window_bounds(table: Table, start: datetime, end: datetime) -> tuple[Any, Any]:
    """The bounds of a partition window for the table's time column: the instants, or for a
    date column the local days (the window is given in the partitions' time zone)."""
    if table.column(table.time_column).type is PgType.DATE:
        return start.date(), end.date()
    return start, end


VERSIONS_TABLE = "_chat_versions"


REFRESH_TABLE = "_days_to_refresh"
ROW_COUNTS_TABLE = "_row_counts"

# chat_assets' own bookkeeping tables: the version registry of the newest-wins tables, the
# aggregate days changed since their materialization, and each table's rows.
_BOOKKEEPING = {
    ROW_COUNTS_TABLE: "table_name text PRIMARY KEY, row_count bigint NOT NULL",
    VERSIONS_TABLE: "table_name text NOT NULL, chat_id bigint NOT NULL,"
    " updated_at timestamptz NOT NULL, PRIMARY KEY (table_name, chat_id)",
    REFRESH_TABLE: "table_name text NOT NULL, day date NOT NULL, changed_by bigint NOT NULL,"
    " PRIMARY KEY (table_name, day)",
}


def _bookkeeping(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _ensure_bookkeeping(cursor: Any, schema: str, name: str) -> None:
    cursor.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            _bookkeeping(schema, name), sql.SQL(_BOOKKEEPING[name])
        )
    )


@dataclass(frozen=True)
class Landing:
    """An asset's output for a window whose rows arrive while they are written.

    `fill(write)` calls `write(rows)` for each batch of rows (tuples in declared column order),
    inside the transaction that replaces the window, and returns the output's metadata; when it
    raises, nothing is written. Rows may repeat `one_row_per` and lie outside the window: per
    value of those columns, the row with the newest time column is kept, if inside the window.
    """

    fill: Callable[[Callable[[list[tuple[Any, ...]]], None]], dict[str, Any]]
    one_row_per: tuple[str, ...]
    # Called with the transaction's cursor once the window's rows are in place, before commit:
    # returns the rows it removed and metadata of its own (the suppression list's second pass).
    settle: Callable[[Any], tuple[int, dict[str, Any]]] | None = None


def land_window(
    engine: sa.Engine, schema: str, table: Table, landing: Landing, start: datetime, end: datetime
) -> tuple[int, dict[str, Any]]:
    """Make the window's rows what `landing` fills in, in one transaction: (rows written, the
    fill's metadata). Batches are copied into a temporary table as they come, so no more than
    one batch is held in memory."""
    with _refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        staging = _staging_table(cursor, table)

        def write(rows: list[tuple[Any, ...]]) -> None:
            copy_rows(cursor, staging, table, rows)

        metadata = landing.fill(write)
        # Only now: a fill that fails leaves no trace, not even an empty table.
        prepare(engine, schema, table)
        per = sql.SQL(", ").join(map(sql.Identifier, landing.one_row_per))
        newest = sql.SQL(
            "SELECT * FROM (SELECT DISTINCT ON ({per}) * FROM {staging}"
            " ORDER BY {per}, {time} DESC) AS newest WHERE {time} >= %s AND {time} < %s"
        ).format(per=per, staging=staging, time=sql.Identifier(table.time_column))
        written = _replace_rows(cursor, schema, table, start, end, newest, (start, end))
        if landing.settle is not None:
            removed, settled = landing.settle(cursor)
            written, metadata = written - removed, {**metadata, **settled}
        return written, metadata


@dataclass(frozen=True)
class NewestWins:
    """An asset's output for newest-wins tables: flatten raw_chats' window into these tables,
    inside the warehouse, keeping per chat the newest version, all in one transaction. Their
    aggregates' local days are those of the partitions' `timezone`."""

    tables: tuple[Table, ...]
    timezone: str


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


def apply_newest(
    engine: sa.Engine,
    schema: str,
    tables: Sequence[Table],
    start: datetime,
    end: datetime,
    *,
    timezone: str,
) -> list[Applied]:
    """Flatten the chats of raw_chats in [start, end) into each table, inside PostgreSQL,
    keeping per chat the newest version's rows; all tables in one transaction.

    The tables are applied together, so one registry row per chat serves them all, under
    REGISTRY_KEY. The registry accepts a chat when no newer version was applied before
    (ties: the later write wins); the accepted chats' old rows are deleted from every table and
    their new rows inserted. The registry's row lock serialises concurrent writers of the same
    chat until commit, and rows are locked in chat_id order so writers never deadlock.

    An aggregate of one of the tables is recomputed, in the same transaction, for every local
    day (in `timezone`) that the accepted chats' rows fell on before or fall on now, and those
    days are marked for re-materialization (`days_to_refresh`).
    """
    prepare(engine, schema, RAW_CHATS)
    aggregates = aggregates_of(tables)
    for table in (*tables, *aggregates):
        prepare(engine, schema, table)
    results = []
    with cursor_for(engine, transaction=True) as cursor:
        # Timestamps without an offset are UTC, as in the reference flattening.
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        # Every statement below reads raw_chats anew: hold landings off until commit, so all
        # see the same versions. (SHARE admits other applies, and it is taken first of all.)
        cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(qualified(schema, RAW_CHATS)))
        with _refusals_without_values(tables[0].name):
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
        # which no two chats share: hashing and copying them for a few hits made the flattening
        # of a day 5-10% slower.
        cursor.execute("SET LOCAL enable_memoize = off")
        with _refusals_without_values(", ".join(table.name for table in tables)):
            cursor.execute(
                sql.SQL("CREATE TEMP TABLE {} AS {}").format(
                    _FLAT, flatten_sql.flattened_rows(tables, qualified(schema, RAW_CHATS))
                ),
                (start, end),
            )
        cursor.execute("RESET enable_memoize")
        added = []
        for table in tables:
            with _refusals_without_values(table.name):
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
            with _refusals_without_values(aggregate.name):
                recompute_days(cursor, schema, aggregate, timezone, touched, mark=True)
            facts = tables.index(aggregate.aggregation.facts)
            results[facts] = replace(results[facts], days_recomputed=tuple(sorted(touched)))
        # Row counters last, in one order for every writer (aggregates first, in
        # recompute_days): their row locks are held only until the commit that follows.
        for table, delta in zip(tables, added, strict=True):
            _count_rows(cursor, schema, table, delta)
        cursor.execute(sql.SQL("DROP TABLE {}").format(_BATCH))
    return results


def _batch_days(cursor: Any, schema: str, aggregate: Table, timezone: str) -> set[date]:
    """The local days on which the batch's chats have facts of the aggregate, as stored now."""
    aggregation = aggregate.aggregation
    assert aggregation is not None
    query = sql.SQL(
        "SELECT DISTINCT {day} FROM {facts} WHERE {chat} {batch_ids} AND {day_of} IS NOT NULL"
    ).format(
        day=aggregate_sql.local_day(aggregation),
        facts=qualified(schema, aggregation.facts),
        chat=sql.Identifier(aggregation.facts.key[0]),
        batch_ids=any_of(_batch_ids()),
        day_of=sql.Identifier(aggregation.day_of),
    )
    return {row[0] for row in cursor.execute(query, {"timezone": timezone}).fetchall()}


def _batch_ids() -> sql.Composed:
    return sql.SQL("SELECT {} FROM {}").format(sql.Identifier(CHAT_ID_FIELD), _BATCH)


# First key of the transaction-scoped advisory locks that serialise recomputing one day.
_DAY_LOCK = 7_317_002


def recompute_days(
    cursor: Any, schema: str, table: Table, timezone: str, days: set[date], *, mark: bool
) -> int:
    """Make the aggregate's rows of `days` equal to a fresh aggregation of its facts; returns
    the rows written. `mark` records the days as changed since their materialization; without
    it (the materialization itself) their marks are cleared.

    One day is recomputed by one transaction at a time (an advisory lock per day, taken in day
    order): a later one waits, then reads every fact committed before it, its own included.
    """
    ordered = sorted(days)
    for day in ordered:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s::int, %s::int)", (_DAY_LOCK, day.toordinal())
        )
    target = qualified(schema, table)
    time_column = sql.Identifier(table.time_column)
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(target, time_column), (ordered,)
    )
    deleted = cursor.rowcount
    assert table.aggregation is not None
    cursor.execute(
        sql.SQL("INSERT INTO {} ({}) {}").format(
            target,
            sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
            aggregate_sql.aggregated_rows(table, qualified(schema, table.aggregation.facts)),
        ),
        {"days": ordered, "timezone": timezone},
    )
    written = cursor.rowcount
    marks = _bookkeeping(schema, REFRESH_TABLE)
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
    _count_rows(cursor, schema, table, written - deleted)
    return written


@dataclass(frozen=True)
class Recompute:
    """An aggregate asset's output: recompute the partition's day from the facts, then describe
    the stored rows with `describe` (the metadata the UI shows and plots)."""

    timezone: str
    describe: Callable[[pd.DataFrame], dict[str, Any]]


def recompute_window(
    engine: sa.Engine, schema: str, table: Table, timezone: str, start: datetime, end: datetime
) -> int:
    """Recompute the aggregate's local days of a partition window and clear their marks."""
    days = set(window_days(table, start, end))
    assert table.aggregation is not None
    prepare(engine, schema, table.aggregation.facts)
    prepare(engine, schema, table)
    with _refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        return recompute_days(cursor, schema, table, timezone, days, mark=False)


def days_to_refresh(engine: sa.Engine, schema: str, table: Table) -> list[tuple[date, int]]:
    """The aggregate's days changed since their last materialization, with the transaction
    that last changed each (a run key that stays the same until the day changes again)."""
    query = sql.SQL("SELECT day, changed_by FROM {}.{} WHERE table_name = %s ORDER BY day").format(
        sql.Identifier(schema), sql.Identifier(REFRESH_TABLE)
    )
    with cursor_for(engine) as cursor:
        exists = cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{REFRESH_TABLE}"',)
        ).fetchone()[0]
        return [tuple(row) for row in cursor.execute(query, (table.name,))] if exists else []


# The registry's name for the versions of the tables applied together (rows written before it
# was a constant carry this, the first table's name, so they still count).
REGISTRY_KEY = "chats"
_BATCH = sql.Identifier("_chat_batch")
_FLAT = sql.Identifier("_chat_flat")


def _accept_batch(
    cursor: Any, schema: str, registry_key: str, start: datetime, end: datetime
) -> tuple[int, int, bool]:
    """Leave in the temporary batch table the window's chat versions the registry accepts;
    returns how many it accepted, how many were older than the version applied before, and
    whether it accepted every version in the window."""
    registry = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(VERSIONS_TABLE))
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


def row_count(engine: sa.Engine, schema: str, table: Table) -> int:
    """The table's rows, from the counter every write keeps in its own transaction."""
    with cursor_for(engine) as cursor:
        return cursor.execute(
            sql.SQL("SELECT row_count FROM {} WHERE table_name = %s").format(
                _bookkeeping(schema, ROW_COUNTS_TABLE)
            ),
            (table.name,),
        ).fetchone()[0]
