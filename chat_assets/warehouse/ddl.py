"""Creating what the declarations in `chat_assets.tables` describe: the schema, each table with
its key, indexes and comments, and (once per process, before any write) the bookkeeping the
table's writes need."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from psycopg import sql

from chat_assets.plural import noun
from chat_assets.privacy import lookup
from chat_assets.tables import AGGREGATE_TABLES, RAW_CHATS, RAW_PII_KEY, Table, WriteMode
from chat_assets.warehouse.bookkeeping import (
    REFRESH_TABLE,
    VERSIONS_TABLE,
    ensure_bookkeeping,
    ensure_row_counter,
)
from chat_assets.warehouse.connection import WarehouseError, cursor_for, refusals_without_values
from chat_assets.warehouse.sql_parts import qualified

# One lock id for DDL, so that concurrent runs creating the same schema never race.
DDL_LOCK = 7_317_001


def column_definitions(table: Table) -> list[sql.Composable]:
    """`name type [NOT NULL]` for each declared column, in order."""
    return [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.type.value),
            sql.SQL("" if c.nullable else " NOT NULL"),
        )
        for c in table.columns
    ]


def create_table_statements(schema: str, table: Table) -> list[sql.Composable]:
    columns = column_definitions(table)
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
        day_of
        for a in AGGREGATE_TABLES
        if a.aggregation is not None
        for facts, day_of, _ in a.aggregation.days_of()
        if facts is table
    ]
    if table.own_id is not None and table.own_id != table.key[0]:
        indexed.append(table.own_id)
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
        # What an erasure finds a data subject's chats by.
        *lookup.index_statements(schema, table),
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


def _redo(schema: str, table: Table) -> str:
    """How a table of an earlier shape is made anew."""
    name = f'"{schema}"."{table.name}"'
    if table.write is WriteMode.AGGREGATE:
        return (
            f"its rows are computed from the chat tables: DROP TABLE {name}, then materialize "
            f"{table.name} again for the days it should hold"
        )
    if table is RAW_CHATS:
        return (
            f"set it aside (ALTER TABLE {name} RENAME TO {table.name}_old), then materialize "
            "raw_chats again for the days it should hold"
        )
    return (
        f"DROP TABLE {name}, then materialize chat_tables again for the days it should hold "
        "(flattened from raw_chats, which must still hold them)"
    )


def missing_columns(cursor: Any, schema: str, table: Table) -> list[str]:
    """The declared columns a stored table lacks, as one an earlier chat_assets created may;
    none for a table not stored at all."""
    present = {
        row[0]
        for row in cursor.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s",
            (schema, table.name),
        ).fetchall()
    }
    return [name for name in table.column_names if name not in present] if present else []


def refuse_earlier_shape(cursor: Any, schema: str, table: Table) -> None:
    """A table that an earlier chat_assets created without some of today's columns is named,
    with the columns it lacks and how to make it anew, before anything writes to it."""
    if missing := missing_columns(cursor, schema, table):
        raise WarehouseError(
            f"{schema}.{table.name} was created by an earlier version of chat_assets and lacks "
            f"the {noun(len(missing), 'column')} {', '.join(missing)}; "
            f"{_redo(schema, table)}"
        )


def ensure_table(cursor: Any, schema: str, table: Table) -> None:
    """Create the table and its row counter; the counter of a table that predates it starts
    from one count, taken while writers are held off."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
    ensure_schema(cursor, schema)
    create, *rest = create_table_statements(schema, table)
    cursor.execute(create)
    refuse_earlier_shape(cursor, schema, table)
    for statement in rest:
        cursor.execute(statement)
    ensure_row_counter(cursor, schema, table)


_prepared: set[tuple[str, str, str]] = set()


def prepare(engine: sa.Engine, schema: str, table: Table) -> None:
    """Create the schema and table (and the version registry) once per process, in a short
    transaction of their own: writes then need no DDL, so they neither queue behind one
    another's table locks nor need a role allowed to create tables."""
    key = (str(engine.url), schema, table.name)
    if key in _prepared:
        return
    with refusals_without_values(table.name), cursor_for(engine, transaction=True) as cursor:
        ensure_table(cursor, schema, table)
        if table.write is WriteMode.NEWEST_WINS:
            ensure_bookkeeping(cursor, schema, VERSIONS_TABLE)
        if table.write is WriteMode.AGGREGATE:
            ensure_bookkeeping(cursor, schema, REFRESH_TABLE)
    _prepared.add(key)
