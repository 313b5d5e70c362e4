"""Finding a data subject's chats without reading every chat: indexes on the customer
pseudonyms a chat holds, in raw_chats' payloads and in the flattened tables' columns.

An erasure starts from a pseudonym and needs every chat holding it, in any stored version.
Without an index that is a scan of every payload, growing with the history. So the table DDL
(`chat_assets.warehouse.ddl`) adds, beside each declared table that holds customer
pseudonyms:

- raw_chats: a GIN index over an immutable SQL function that lists the customer pseudonyms of a
  payload (`_customer_pseudonyms_<digest>`), and a btree index on the chat id, by which an
  erasure then reads every version of the chats it found;
- a flattened table (`chats`): a GIN index over the array of its customer pseudonym columns.

Queries find chats with `&&` (overlap) against the array of pseudonyms sought, which those
indexes answer. The function's name and the indexes' carry a digest of the catalog paths they
read: if the catalog's customer pseudonyms change, new ones are made beside the old, never an
index that disagrees with its function.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from chat_assets.privacy.catalog import CATALOG, Rule, Subject, Treatment
from chat_assets.tables import CHAT_ID_FIELD, RAW_CHATS, RAW_PAYLOAD, Table

# Every field the catalog turns into a customer's pseudonym: what links a chat to a person.
CUSTOMER_PSEUDONYMS: tuple[Rule, ...] = tuple(
    rule
    for rule in CATALOG
    if rule.subject is Subject.CUSTOMER and rule.treatment is Treatment.PSEUDONYM
)

_DIGEST = hashlib.sha256("\n".join(r.path for r in CUSTOMER_PSEUDONYMS).encode()).hexdigest()[:8]
FUNCTION = f"_customer_pseudonyms_{_DIGEST}"


def pseudonym_columns(table: Table, rules: tuple[Rule, ...]) -> list[str]:
    """The columns of a flattened table that hold a pseudonym of these rules."""
    return [
        column.name
        for column in table.columns
        if (rule := table.rule(column)) is not None and rule in rules
    ]


def customer_columns(table: Table) -> list[str]:
    """The columns of a flattened table that hold a customer's pseudonym."""
    return pseudonym_columns(table, CUSTOMER_PSEUDONYMS)


def _function(schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(FUNCTION))


def _held(schema: str, table: Table) -> sql.Composed:
    """SQL: the customer pseudonyms a row holds, as text[] (the indexed expression)."""
    if table is RAW_CHATS:
        return sql.SQL("{}({})").format(_function(schema), sql.Identifier(RAW_PAYLOAD))
    return sql.SQL("(ARRAY[{}]::text[])").format(
        sql.SQL(", ").join(map(sql.Identifier, customer_columns(table)))
    )


def holds(schema: str, table: Table) -> sql.Composed:
    """SQL: a row of the table holds any of `%(pseudonyms)s` (a text[]), through the index."""
    return sql.SQL("{} && %(pseudonyms)s::text[]").format(_held(schema, table))


def index_statements(schema: str, table: Table) -> list[sql.Composable]:
    """The function and indexes the lookups need on `table` (none for a table holding no
    customer pseudonym)."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table.name))
    statements: list[sql.Composable] = []
    if table is RAW_CHATS:
        paths = [
            sql.SQL("SELECT jsonb_path_query(payload, {})").format(
                sql.Literal("$." + rule.path.replace("[]", "[*]"))
            )
            for rule in CUSTOMER_PSEUDONYMS
        ]
        statements += [
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}(payload jsonb) RETURNS text[] LANGUAGE sql"
                " IMMUTABLE PARALLEL SAFE AS $$SELECT coalesce(array_agg(DISTINCT v #>> '{{}}'),"
                " '{{}}') FROM ({}) AS held(v) WHERE jsonb_typeof(v) = 'string'$$"
            ).format(_function(schema), sql.SQL(" UNION ALL ").join(paths)),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{table.name}_{CHAT_ID_FIELD}_idx"),
                target,
                sql.Identifier(CHAT_ID_FIELD),
            ),
        ]
    elif not customer_columns(table):
        return []
    statements.append(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin ({})").format(
            sql.Identifier(f"{table.name}_customers_{_DIGEST}_idx"), target, _held(schema, table)
        )
    )
    return statements
