"""Pieces of SQL the warehouse's statements share: a table's schema-qualified name, and the
lookup of a batch's keys through an index."""

from __future__ import annotations

from psycopg import sql

from chat_assets.tables import Table


def qualified_name(schema: str, name: str) -> sql.Composed:
    """`"schema"."name"`: any table of the schema, declared or chat_assets' own bookkeeping."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def qualified(schema: str, table: Table) -> sql.Composed:
    """A declared table's name in its schema."""
    return qualified_name(schema, table.name)


def any_of(keys: sql.Composable) -> sql.Composed:
    """`= ANY(ARRAY(<keys>))`: a batch's keys looked up through the table's index. As `IN
    (<keys>)`, a batch of thousands can make a hash join over the whole table look cheaper, whose
    cost grows with the history instead of with the batch; a large array is hashed when the
    table is scanned, so no plan is quadratic."""
    return sql.SQL("= ANY(ARRAY({}))").format(keys)
