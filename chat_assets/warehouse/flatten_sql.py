"""Flattening inside PostgreSQL, compiled from the table declarations.

A day's chats are already in raw_chats as JSONB. Reading them back into Python to flatten costs
several times a COPY of the result, so the warehouse flattens them where they are: one SELECT over
`jsonb_to_record` gives every table's rows, each payload read once, and every value is converted
by the grammar of `chat_assets.grammar`. The tests' pure reference flattening reads by the same
grammar, and an equivalence test holds this SQL to it.
Nothing here touches a database: these functions only build statements
(`chat_assets.warehouse.newest_wins.apply_newest` runs them).
"""

from __future__ import annotations

from collections.abc import Sequence
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
# e the chat's lists side by side (see `flattened_rows`).
_BATCH, _CHAT, _LISTS = sql.Identifier("b"), sql.Identifier("c"), sql.Identifier("e")
# raw_chats' typed columns are named after the chat fields they are parsed from.
_RAW_ID, _RAW_VERSION = sql.Identifier(CHAT_ID_FIELD), sql.Identifier(VERSION_FIELD)
_RAW_PARTITION, _RAW_PAYLOAD = sql.Identifier(RAW_PARTITION), sql.Identifier(RAW_PAYLOAD)


def _anchored(pattern: str) -> sql.Literal:
    return sql.Literal(f"^(?:{pattern})$")


def _trimmed(v: sql.Composable) -> sql.Composable:
    return sql.SQL("btrim({} #>> '{{}}', {})").format(v, sql.Literal(grammar.WHITESPACE))


def _integral(n: sql.Composable, kind: PgType) -> sql.Composable:
    # Each mention of n computes it again, so the usual case mentions it least: the range by
    # its absolute value (the lowest value of the type alone has none in range), and a scale of
    # 0 makes the value integral without computing trunc(n).
    bound = grammar.INT_BOUNDS[kind.value]
    return sql.SQL(
        "CASE WHEN (abs({n}) < {bound} OR {n} = {low}) AND (scale({n}) = 0 OR {n} = trunc({n}))"
        " THEN ({n})::{kind} END"
    ).format(n=n, low=sql.Literal(-bound), bound=sql.Literal(bound), kind=sql.SQL(kind.value))


def _double(n: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "CASE WHEN abs({n}) BETWEEN {low}::numeric AND {high}::numeric OR {n} = 0"
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
_USUAL_PLACES = _USUAL_SHAPE.replace("0", "_")  # as a LIKE pattern: any character for a digit


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

    def zero_at(start: int) -> sql.Literal:
        """LIKE of the usual form with 00 at `start`."""
        return sql.Literal(_USUAL_PLACES[: start - 1] + "00" + _USUAL_PLACES[start + 1 :])

    # Each field is cut out once at most (BETWEEN would cut it twice), and not at all where a
    # comparison of the whole text or a LIKE can tell.
    day = field(9, 2)
    # Only reached once the pattern matched or the shortcut held: then the day is two digits,
    # at least 01, and the month 01 to 12. A day past the 28th must be one the month has.
    day_exists = sql.SQL(
        "{day} <= '28' OR ({day})::integer"
        " <= extract(day FROM (substr({text}, 1, 7) || '-01')::date + interval '1 month - 1 day')"
    ).format(day=day, text=text)
    # The shape: the separators in place (LIKE), and nothing but them left once the digits
    # are deleted. Then every field is digits: comparing the whole text checks the year's first
    # digit, and a LIKE a month or day of 00.
    usual = sql.SQL(
        "{text} LIKE {places} AND translate({text}, '0123456789', '') = {separators}"
        " AND {text} COLLATE \"C\" >= '1' AND {text} COLLATE \"C\" < '9'"
        " AND {text} NOT LIKE {month_zero} AND {month} <= '12' AND {text} NOT LIKE {day_zero}"
        " AND {hour} <= '23' AND {minute} <= '5' AND {second} <= '5'"
    ).format(
        text=text,
        places=sql.Literal(_USUAL_PLACES),
        separators=sql.Literal(_USUAL_SHAPE.replace("0", "")),
        month_zero=zero_at(6),
        month=field(6, 2),
        day_zero=zero_at(9),
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


def _list_length(v: sql.Composable) -> sql.Composable:
    """The number of items of the JSON list `v`: 0 when it is missing or null, NULL when it is
    not a list."""
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


def _read_as_text(column: Column) -> bool:
    """Text and timestamps are read as text: `jsonb_to_record` gives a JSON string's text and
    any other value's JSON, as `#>> '{}'` does, and only a JSON string can match a timestamp's
    grammar; reading the text once is much cheaper than converting JSONB at every step."""
    return column.type in (PgType.TIMESTAMPTZ, PgType.TEXT)


def _fields(tables: Sequence[Table], on_chat: bool) -> dict[str, str]:
    """The top-level fields `jsonb_to_record` extracts for the chat or a list item, for all the
    tables' columns, with the type to extract each as: text when every column reads it directly
    as text, else jsonb."""
    fields: dict[str, str] = {}
    for table in tables:
        if on_chat and table.items:
            fields[table.items] = "jsonb"
        for column in table.columns:
            read = table.read(column)
            if read is None or read.position or read.identity or read.on_chat != on_chat:
                continue
            text = _read_as_text(column) and read.path == read.field
            fields[read.field] = (
                "text" if text and fields.get(read.field, "text") == "text" else "jsonb"
            )
    return fields


def _item(table: Table) -> sql.Identifier:
    """The alias of a child table's list item, and of its fields."""
    return sql.Identifier(f"{table.name}.item")


def _sources(table: Table, chat_fields: dict[str, str] | None = None) -> list[_Source]:
    """Each column's value and presence, in declared order; `chat_fields` are the chat's
    fields as extracted (by default, those the table alone reads)."""
    if chat_fields is None:
        chat_fields = _fields([table], True)
    fields = {True: chat_fields, False: _fields([table], False)}
    sources = []
    for column in table.columns:
        read = table.read(column)
        if read is None:
            raise ValueError(f"{table.name}.{column.name} has no source in the chat")
        if read.position:
            sources.append(_Source(sql.SQL("({}.n - 1)::integer").format(_LISTS), None))
            continue
        if read.identity:
            raw_column = sql.Identifier(read.path)  # raw_chats' column of that chat field
            sources.append(_Source(sql.SQL("{}.{}").format(_BATCH, raw_column), None))
            continue
        first, *rest = read.path.split(".")
        value: sql.Composable = sql.SQL("{}.{}").format(
            _CHAT if read.on_chat else _item(table), sql.Identifier(first)
        )
        if fields[read.on_chat][first] == "text":
            text = _timestamp(value) if column.type is PgType.TIMESTAMPTZ else value
            sources.append(_Source(text, sql.SQL("{} IS NOT NULL").format(value)))
            continue
        for part in rest:
            value = sql.SQL("({} -> {})").format(value, sql.Literal(part))
        present = sql.SQL("jsonb_typeof({}) <> 'null'").format(value)
        if read.count:
            sources.append(_Source(_list_length(value), present))
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


# Columns of the flattened rows besides the tables' own.
CHAT = "_chat"  # the chat's id
PARTITION = "_partition"  # the raw_chats partition the version came from


def flat_column(table: Table, name: str) -> sql.Identifier:
    """The flattened rows' column that holds `table`'s column `name`, or one of these:
    - `_row`: whether the row holds one of the table's rows;
    - `_malformed`: whether that is a marker for a chat whose list was neither a list nor null;
    - `_present<n>`: whether the source value of the table's n-th converted column was non-null.
    """
    return sql.Identifier(f"{table.name}.{name}")


def _present(n: int) -> str:
    return f"_present{n}"


def _columns(table: Table, chat_fields: dict[str, str]) -> list[sql.Composable]:
    """The table's columns of a flattened row."""
    sources = _sources(table, chat_fields)
    if table.items:
        # A list that is not a list gives one marker item, so it is counted in the same pass.
        listed = sql.SQL("{}.{}").format(_CHAT, sql.Identifier(table.items))
        row = sql.SQL("{}.{} IS NOT NULL").format(_LISTS, _item(table))
        malformed = sql.SQL("jsonb_typeof({}) <> 'array'").format(listed)
    else:
        row, malformed = sql.SQL("{}.n = 1").format(_LISTS), sql.SQL("false")
    columns = []
    for column, source in zip(table.columns, sources, strict=True):
        value = source.value
        if not table.items:  # the chat's own columns, on its first row only
            value = sql.SQL("CASE WHEN {} THEN {} END").format(row, value)
        columns.append(sql.SQL("{} AS {}").format(value, flat_column(table, column.name)))
    flags = [("_row", row), ("_malformed", malformed)]
    flags += [(_present(n), sources[n].present) for n in _converted(table)]
    for name, flag in flags:
        columns.append(sql.SQL("{} AS {}").format(flag, flat_column(table, name)))
    return columns


def flattened_rows(tables: Sequence[Table], raw: sql.Composable) -> sql.Composable:
    """SELECT of the tables' rows from raw_chats versions with updated_at in [%s, %s), every
    payload read once for all of them.

    A chat's lists are read side by side (ROWS FROM): its n-th flattened row holds the n-th
    item of each list that has one, and the first holds the chat's own columns too. Besides
    the tables' columns and flags (see `flat_column`), each row has `_chat` and `_partition`.
    Functions and operators here are all parallel safe, so PostgreSQL can spread the work over
    its workers.
    """
    chat_fields = _fields(tables, True)
    children = [table for table in tables if table.items]
    elements = [
        sql.SQL(
            "jsonb_array_elements(CASE jsonb_typeof({0}) WHEN 'array' THEN {0}"
            " WHEN 'null' THEN NULL ELSE '[null]' END)"
        ).format(sql.SQL("{}.{}").format(_CHAT, sql.Identifier(table.items)))
        for table in children
    ]
    # One row more, so that a chat without any list item still has its first row.
    elements.append(sql.SQL("generate_series(1, 1)"))
    aliases = [_item(table) for table in children] + [sql.Identifier("_first")]
    joins = [
        sql.SQL("FROM {} AS {}").format(raw, _BATCH),
        sql.SQL("CROSS JOIN LATERAL {}").format(
            _record(sql.SQL("{}.{}").format(_BATCH, _RAW_PAYLOAD), chat_fields, _CHAT)
        ),
        sql.SQL("CROSS JOIN LATERAL ROWS FROM ({}) WITH ORDINALITY AS {}({}, n)").format(
            sql.SQL(", ").join(elements), _LISTS, sql.SQL(", ").join(aliases)
        ),
    ]
    for table in children:
        item = sql.SQL("{}.{}").format(_LISTS, _item(table))
        an_object = sql.SQL("CASE WHEN jsonb_typeof({0}) = 'object' THEN {0} ELSE '{{}}' END")
        record = _record(an_object.format(item), _fields([table], False), _item(table))
        joins.append(sql.SQL("CROSS JOIN LATERAL {}").format(record))
    items = [column for table in tables for column in _columns(table, chat_fields)]
    items += [
        sql.SQL("{}.{} AS {}").format(_BATCH, _RAW_ID, sql.Identifier(CHAT)),
        sql.SQL("{}.{} AS {}").format(_BATCH, _RAW_PARTITION, sql.Identifier(PARTITION)),
    ]
    window = sql.SQL("WHERE {0}.{1} >= %s AND {0}.{1} < %s").format(_BATCH, _RAW_VERSION)
    return sql.SQL("SELECT {} {} {}").format(
        sql.SQL(", ").join(items), sql.SQL(" ").join(joins), window
    )


def _accepted(flat: sql.Composable, batch: sql.Composable | None) -> sql.Composable:
    """FROM the flattened rows of the batch's chat versions (a chat may be in the window
    twice); without a batch, all of them (each version in the window was accepted)."""
    join = sql.SQL("")
    if batch is not None:
        join = sql.SQL(
            " JOIN {batch} AS a ON f.{chat} = a.{raw_id} AND f.{partition} = a.{raw_partition}"
        ).format(
            batch=batch,
            chat=sql.Identifier(CHAT),
            partition=sql.Identifier(PARTITION),
            raw_id=_RAW_ID,
            raw_partition=_RAW_PARTITION,
        )
    return sql.SQL("FROM {flat} AS f{join}").format(flat=flat, join=join)


def insert_rows(
    table: Table, flat: sql.Composable, batch: sql.Composable | None, target: sql.Composable
) -> sql.Composable:
    """INSERT into `target` the table's rows of `flat` (see `flattened_rows`) of the chats in
    `batch` (id, partition_key), or all of them without a batch."""
    return sql.SQL(
        "INSERT INTO {target} ({names}) SELECT {columns} {accepted}"
        " WHERE f.{row} AND NOT f.{malformed}"
    ).format(
        target=target,
        names=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        columns=sql.SQL(", ").join(
            sql.SQL("f.{}").format(flat_column(table, name)) for name in table.column_names
        ),
        accepted=_accepted(flat, batch),
        row=flat_column(table, "_row"),
        malformed=flat_column(table, "_malformed"),
    )


def figures(
    tables: Sequence[Table], flat: sql.Composable, batch: sql.Composable | None
) -> sql.Composable:
    """SELECT one row for the batch's chats (all of `flat`'s without a batch), reading `flat`
    once for all the tables: for each table in turn, its rows, chats whose list was not a list,
    for each converted column the source values that could not be converted (see
    `converted_columns`), and for a table with an enumeration summary the rows of each
    documented value (see `table_figures`)."""
    counts = []
    for table in tables:
        row = sql.SQL("f.{}").format(flat_column(table, "_row"))
        malformed = sql.SQL("f.{}").format(flat_column(table, "_malformed"))
        conditions = [
            sql.SQL("NOT {}").format(malformed),
            malformed,
            *(
                sql.SQL("f.{} AND f.{} IS NULL").format(
                    flat_column(table, _present(n)), flat_column(table, table.columns[n].name)
                )
                for n in _converted(table)
            ),
        ]
        if table.summary_by:
            summary = sql.SQL("f.{}").format(flat_column(table, table.summary_by))
            conditions += [
                sql.SQL("{} = {}").format(summary, sql.Literal(value))
                for value in table.column(table.summary_by).values
            ]
        counts += [
            sql.SQL("count(*) FILTER (WHERE {} AND {})").format(row, condition)
            for condition in conditions
        ]
    return sql.SQL("SELECT {} {}").format(sql.SQL(", ").join(counts), _accepted(flat, batch))


@dataclass(frozen=True)
class Figures:
    """One table's part of the row of `figures`."""

    rows: int
    # Non-null source values that could not become the declared type, per column (and under
    # the list's name, chats whose list was not a list); only those with failures.
    failures: dict[str, int]
    # Rows per documented value of the table's summary column.
    summary: dict[str, int]


def table_figures(tables: Sequence[Table], row: Sequence[int]) -> list[Figures]:
    """The row of `figures` for `tables`, split by table."""
    counts = list(row)
    result = []
    for table in tables:
        rows, malformed = counts.pop(0), counts.pop(0)
        failures = {table.items: malformed} if table.items and malformed else {}
        for name in converted_columns(table):
            failed = counts.pop(0)
            if failed:
                failures[name] = failed
        summary = {}
        if table.summary_by:
            values = table.column(table.summary_by).values
            summary = {value: counts.pop(0) for value in values}
        result.append(Figures(rows, failures, summary))
    if counts:
        raise ValueError(f"{len(counts)} figures left over")
    return result


def _converted(table: Table) -> list[int]:
    """The positions of the columns converted from a source value (whose failures count). A
    text column is not among them: every non-null source value has a text."""
    return [
        n
        for n, (column, source) in enumerate(zip(table.columns, _sources(table), strict=True))
        if source.present is not None and column.type is not PgType.TEXT
    ]


def converted_columns(table: Table) -> list[str]:
    """The columns whose failures `figures` reports, in its order."""
    return [table.columns[n].name for n in _converted(table)]
