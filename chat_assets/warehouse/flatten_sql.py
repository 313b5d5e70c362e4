"""Flattening inside PostgreSQL, compiled from the table declarations.

A day's chats are already in raw_chats as JSONB. Reading them back into Python to flatten costs
several times a COPY of the result, so the warehouse flattens them where they are: each table is
one SELECT over `jsonb_to_record`, and every value is converted by the grammar of
`chat_assets.grammar`. The tests' pure reference flattening reads by the same grammar, and an
equivalence test holds this SQL to it.
Nothing here touches a database: these functions only build statements
(`chat_assets.warehouse.postgres.apply_newest` runs them).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from chat_assets import grammar
from chat_assets.tables import (
    CHAT_ID_FIELD,
    RAW_PARTITION,
    RAW_PAYLOAD,
    VERSION_FIELD,
    Column,
    PgType,
    Table,
)

# Aliases inside the compiled statement: b is the raw_chats row, c the chat's top-level fields,
# i a list item's fields.
_BATCH, _CHAT, _ITEM = sql.Identifier("b"), sql.Identifier("c"), sql.Identifier("i")
# raw_chats' typed columns are named after the chat fields they are parsed from.
_RAW_ID, _RAW_VERSION = sql.Identifier(CHAT_ID_FIELD), sql.Identifier(VERSION_FIELD)
_RAW_PARTITION, _RAW_PAYLOAD = sql.Identifier(RAW_PARTITION), sql.Identifier(RAW_PAYLOAD)


def _anchored(pattern: str) -> sql.Literal:
    return sql.Literal(f"^(?:{pattern})$")


def _trimmed(v: sql.Composable) -> sql.Composable:
    return sql.SQL("btrim({} #>> '{{}}', {})").format(v, sql.Literal(grammar.WHITESPACE))


def _integral(n: sql.Composable, kind: PgType) -> sql.Composable:
    bound = grammar.INT_BOUNDS[kind.value]
    return sql.SQL(
        "CASE WHEN {n} = trunc({n}) AND {n} >= {low} AND {n} < {high} THEN ({n})::{kind} END"
    ).format(n=n, low=sql.Literal(-bound), high=sql.Literal(bound), kind=sql.SQL(kind.value))


def _double(n: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "CASE WHEN {n} = 0 OR abs({n}) BETWEEN {low}::numeric AND {high}::numeric"
        " THEN ({n})::double precision END"
    ).format(
        n=n,
        low=sql.Literal(repr(grammar.SMALLEST_DOUBLE)),
        high=sql.Literal(repr(grammar.LARGEST_DOUBLE)),
    )


def _numeric_text(v: sql.Composable) -> tuple[sql.Composable, sql.Composable]:
    """(the condition that a JSON string holds a number, that number as numeric)."""
    text = _trimmed(v)
    return (
        sql.SQL("{} ~ {}").format(text, _anchored(grammar.NUMBER)),
        sql.SQL("({})::numeric").format(text),
    )


def converted(kind: PgType, v: sql.Composable) -> sql.Composable:
    """The JSONB value `v` as the column type: NULL wherever the reference gives None."""
    number = sql.SQL("({})::numeric").format(v)
    if kind.value in grammar.INT_BOUNDS:
        is_number, parsed = _numeric_text(v)
        return sql.SQL(
            "CASE jsonb_typeof({v}) WHEN 'number' THEN {from_number}"
            " WHEN 'boolean' THEN ({v})::boolean::integer::{kind}"
            " WHEN 'string' THEN CASE WHEN {is_number} THEN {from_text} END END"
        ).format(
            v=v,
            kind=sql.SQL(kind.value),
            from_number=_integral(number, kind),
            is_number=is_number,
            from_text=_integral(parsed, kind),
        )
    if kind is PgType.DOUBLE:
        is_number, parsed = _numeric_text(v)
        return sql.SQL(
            "CASE jsonb_typeof({v}) WHEN 'number' THEN {from_number}"
            " WHEN 'boolean' THEN ({v})::boolean::integer::double precision"
            " WHEN 'string' THEN CASE WHEN {is_number} THEN {from_text} END END"
        ).format(v=v, from_number=_double(number), is_number=is_number, from_text=_double(parsed))
    if kind is PgType.BOOLEAN:
        word = sql.SQL("lower({})").format(_trimmed(v))
        return sql.SQL(
            "CASE jsonb_typeof({v}) WHEN 'boolean' THEN ({v})::boolean"
            " WHEN 'number' THEN CASE {number} WHEN 0 THEN false WHEN 1 THEN true END"
            " WHEN 'string' THEN CASE WHEN {word} = ANY({true}) THEN true"
            " WHEN {word} = ANY({false}) THEN false END END"
        ).format(
            v=v,
            number=number,
            word=word,
            true=sql.Literal(list(grammar.TRUE)),
            false=sql.Literal(list(grammar.FALSE)),
        )
    if kind is PgType.TEXT:
        # strings unquoted; numbers, booleans, objects and lists as their JSON text
        return sql.SQL("({} #>> '{{}}')").format(v)
    if kind is PgType.TIMESTAMPTZ:
        return _timestamp(sql.SQL("({} #>> '{{}}')").format(v))
    raise ValueError(f"no conversion for {kind}")


# UJET's own form, 2019-07-17T07:27:14.000Z, with every digit written as 0.
_USUAL_SHAPE = "0000-00-00T00:00:00.000Z"


def _timestamp(text: sql.Composable) -> sql.Composable:
    """Text in the grammar of `grammar.TIMESTAMP` as timestamptz, else NULL.

    Matching the full pattern costs several times the cast, so UJET's usual form takes a
    shortcut: its shape, then each field's range by position. Both ways accept exactly the
    pattern's strings (and days the month has); the equivalence test covers both.
    """

    def field(start: int, length: int) -> sql.Composable:
        return sql.SQL('substr({}, {}, {}) COLLATE "C"').format(
            text, sql.Literal(start), sql.Literal(length)
        )

    day = field(9, 2)
    # Only reached once the pattern matched, so the day is 01 to 31 and the month 01 to 12.
    day_exists = sql.SQL(
        "{day} <= '28' OR ({day})::integer"
        " <= extract(day FROM (substr({text}, 1, 7) || '-01')::date + interval '1 month - 1 day')"
    ).format(day=day, text=text)
    usual = sql.SQL(
        "translate({text}, '123456789', '000000000') = {shape} AND {year} BETWEEN '1000' AND '8999'"
        " AND {month} BETWEEN '01' AND '12' AND {day} BETWEEN '01' AND '31' AND {hour} <= '23'"
        " AND {minute} <= '5' AND {second} <= '5'"
    ).format(
        text=text,
        day=day,
        shape=sql.Literal(_USUAL_SHAPE),
        year=field(1, 4),
        month=field(6, 2),
        hour=field(12, 2),
        minute=field(15, 1),
        second=field(18, 1),
    )
    # Nested CASEs fix the order: no cast sees text the pattern has not accepted.
    return sql.SQL(
        "CASE WHEN CASE WHEN {usual} THEN true ELSE {text} ~ {pattern} END"
        " THEN CASE WHEN {day_exists} THEN ({text})::timestamptz END END"
    ).format(
        usual=usual,
        text=text,
        pattern=_anchored(grammar.TIMESTAMP),
        day_exists=day_exists,
    )


def _count(v: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "CASE WHEN {v} IS NULL OR jsonb_typeof({v}) = 'null' THEN 0"
        " WHEN jsonb_typeof({v}) = 'array' THEN jsonb_array_length({v}) END"
    ).format(v=v)


@dataclass(frozen=True)
class _Source:
    """Where a column's value comes from in the compiled statement."""

    value: sql.Composable
    # Whether the source value was non-null (None for values chat_assets makes).
    present: sql.Composable | None


def _as_text(column: Column) -> bool:
    """Timestamps are read as text: only a JSON string can match their grammar, and reading
    the text once is much cheaper than converting JSONB at every step of the check."""
    return column.type is PgType.TIMESTAMPTZ


def _fields(table: Table, on_chat: bool) -> dict[str, str]:
    """The top-level fields `jsonb_to_record` extracts for the chat or a list item, with the
    type to extract each as: text when every column reads it directly as text, else jsonb."""
    fields: dict[str, str] = {table.items: "jsonb"} if on_chat and table.items else {}
    for column in table.columns:
        read = table.read(column)
        if read is None or read.position or read.identity or read.on_chat != on_chat:
            continue
        text = _as_text(column) and read.path == read.field
        fields[read.field] = (
            "text" if text and fields.get(read.field, "text") == "text" else "jsonb"
        )
    return fields


def _sources(table: Table) -> list[_Source]:
    """Each column's value and presence, in declared order."""
    fields = {on_chat: _fields(table, on_chat) for on_chat in (True, False)}
    sources = []
    for column in table.columns:
        read = table.read(column)
        if read is None:
            raise ValueError(f"{table.name}.{column.name} has no source in the chat")
        if read.position:
            sources.append(_Source(sql.SQL("(e.n - 1)::integer"), None))
            continue
        if read.identity:
            raw_column = sql.Identifier(read.path)  # raw_chats' column of that chat field
            sources.append(_Source(sql.SQL("{}.{}").format(_BATCH, raw_column), None))
            continue
        first, *rest = read.path.split(".")
        value: sql.Composable = sql.SQL("{}.{}").format(
            _CHAT if read.on_chat else _ITEM, sql.Identifier(first)
        )
        if fields[read.on_chat][first] == "text":
            sources.append(_Source(_timestamp(value), sql.SQL("{} IS NOT NULL").format(value)))
            continue
        for part in rest:
            value = sql.SQL("({} -> {})").format(value, sql.Literal(part))
        present = sql.SQL("jsonb_typeof({}) <> 'null'").format(value)
        if read.count:
            sources.append(_Source(_count(value), present))
        else:
            sources.append(_Source(converted(column.type, value), present))
    return sources


def _record(
    payload: sql.Composable, fields: dict[str, str], alias: sql.Identifier
) -> sql.Composable:
    if not fields:  # jsonb_to_record needs a column; a chat without one still gives a row
        fields = {"_": "jsonb"}
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in fields.items()
    )
    return sql.SQL("jsonb_to_record({}) AS {}({})").format(payload, alias, definition)


# Columns of the flattened rows besides the declared ones.
CHAT = "_chat"  # the chat's id
PARTITION = "_partition"  # the raw_chats partition the version came from
MALFORMED = "_malformed"  # a marker row for a chat whose list was neither a list nor null


def _present(n: int) -> sql.Identifier:
    return sql.Identifier(f"_present{n}")


def flattened_rows(table: Table, raw: sql.Composable) -> sql.Composable:
    """SELECT of the table's rows from raw_chats versions with updated_at in [%s, %s).

    Besides the declared columns it gives `_chat`, `_partition`, `_malformed` and, for each
    converted column n, `_present<n>`: whether its source value was non-null. Functions and
    operators here are all parallel safe, so PostgreSQL can spread the work over its workers.
    """
    sources = _sources(table)
    items = [
        sql.SQL("{} AS {}").format(s.value, sql.Identifier(c.name))
        for c, s in zip(table.columns, sources, strict=True)
    ]
    items += [
        sql.SQL("{} AS {}").format(s.present, _present(n))
        for n, s in enumerate(sources)
        if s.present is not None
    ]
    items += [
        sql.SQL("{}.{} AS {}").format(_BATCH, _RAW_ID, sql.Identifier(CHAT)),
        sql.SQL("{}.{} AS {}").format(_BATCH, _RAW_PARTITION, sql.Identifier(PARTITION)),
    ]
    joins = [
        sql.SQL("FROM {} AS {}").format(raw, _BATCH),
        sql.SQL("CROSS JOIN LATERAL {}").format(
            _record(sql.SQL("{}.{}").format(_BATCH, _RAW_PAYLOAD), _fields(table, True), _CHAT)
        ),
    ]
    if table.items:
        # A list that is not a list gives one marker row, so it is counted in the same pass.
        listed = sql.SQL("{}.{}").format(_CHAT, sql.Identifier(table.items))
        items.append(
            sql.SQL("jsonb_typeof({}) <> 'array' AS {}").format(listed, sql.Identifier(MALFORMED))
        )
        joins += [
            sql.SQL(
                "CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof({0}) WHEN 'array'"
                " THEN {0} WHEN 'null' THEN NULL ELSE '[null]' END) WITH ORDINALITY AS e(item, n)"
            ).format(listed),
            sql.SQL("CROSS JOIN LATERAL {}").format(
                _record(
                    sql.SQL("CASE WHEN jsonb_typeof(e.item) = 'object' THEN e.item ELSE '{}' END"),
                    _fields(table, False),
                    _ITEM,
                )
            ),
        ]
    else:
        items.append(sql.SQL("false AS {}").format(sql.Identifier(MALFORMED)))
    window = sql.SQL("WHERE {0}.{1} >= %s AND {0}.{1} < %s").format(_BATCH, _RAW_VERSION)
    return sql.SQL("SELECT {} {} {}").format(
        sql.SQL(", ").join(items), sql.SQL(" ").join(joins), window
    )


def _accepted(flat: sql.Composable, batch: sql.Composable | None) -> sql.Composable:
    """The flattened rows of the batch's chat versions (a chat may be in the window twice);
    without a batch, every row of `flat` (each version in the window was accepted)."""
    if batch is None:
        return sql.SQL("FROM {} AS f").format(flat)
    return sql.SQL(
        "FROM {flat} AS f JOIN {batch} AS a ON f.{chat} = a.{raw_id}"
        " AND f.{partition} = a.{raw_partition}"
    ).format(
        flat=flat,
        batch=batch,
        chat=sql.Identifier(CHAT),
        partition=sql.Identifier(PARTITION),
        raw_id=_RAW_ID,
        raw_partition=_RAW_PARTITION,
    )


def insert_rows(
    table: Table, flat: sql.Composable, batch: sql.Composable | None, target: sql.Composable
) -> sql.Composable:
    """INSERT into `target` the rows of `flat` (see `flattened_rows`) of the chats in `batch`
    (id, partition_key), or all of them without a batch."""
    return sql.SQL(
        "INSERT INTO {target} ({names}) SELECT {columns} {accepted} WHERE NOT f.{malformed}"
    ).format(
        target=target,
        names=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        columns=sql.SQL(", ").join(sql.Identifier("f", name) for name in table.column_names),
        accepted=_accepted(flat, batch),
        malformed=sql.Identifier(MALFORMED),
    )


def figures(table: Table, flat: sql.Composable, batch: sql.Composable | None) -> sql.Composable:
    """SELECT one row for the batch's chats (all of `flat`'s without a batch): rows, chats whose
    list was not a list, for each converted column the source values that could not be
    converted (see `converted_columns`), and for a table with an enumeration summary the rows
    of each documented value."""
    malformed = sql.Identifier("f", MALFORMED)
    counts = [
        sql.SQL("count(*) FILTER (WHERE NOT {})").format(malformed),
        sql.SQL("count(*) FILTER (WHERE {})").format(malformed),
    ]
    counts += [
        sql.SQL("count(*) FILTER (WHERE f.{} AND f.{} IS NULL)").format(
            _present(n), sql.Identifier(table.columns[n].name)
        )
        for n in _converted(table)
    ]
    if table.summary_by:
        summary = sql.Identifier("f", table.summary_by)
        counts += [
            sql.SQL("count(*) FILTER (WHERE {} = {})").format(summary, sql.Literal(value))
            for value in table.column(table.summary_by).values
        ]
    return sql.SQL("SELECT {} {}").format(sql.SQL(", ").join(counts), _accepted(flat, batch))


def _converted(table: Table) -> list[int]:
    """The positions of the columns converted from a source value (whose failures count)."""
    return [n for n, source in enumerate(_sources(table)) if source.present is not None]


def converted_columns(table: Table) -> list[str]:
    """The columns whose failures `figures` reports, in its order."""
    return [table.columns[n].name for n in _converted(table)]
