"""SQL compiled from an aggregate table's declaration: its rows for given local days, from
every table of facts it counts.

The query takes two parameters: `%(days)s`, a date[] of local days, and `%(timezone)s`, the
partitions' time zone. A fact belongs to the day its `day_of` instant falls on in that zone; the
facts are found through an index on `day_of`, over the day's instants widened by `_MARGIN` on
each side, then matched by their exact local date: however a zone resolves a midnight that a
clock change skips or repeats, no fact of the day is left out.
"""

from __future__ import annotations

from psycopg import sql

from chat_assets.tables import Aggregation, Column, Table
from chat_assets.warehouse.sql_parts import qualified

_DAY = sql.Identifier("_service_day")
# More than any clock change moves a local midnight (daylight saving moves it by up to two hours).
_MARGIN = sql.SQL("interval '3 hours'")


def _aggregation(table: Table) -> Aggregation:
    if table.aggregation is None:
        raise ValueError(f"{table.name} is not an aggregate table")
    return table.aggregation


def _typed(formula: str, column: Column) -> sql.Composed:
    return sql.SQL("CAST(({}) AS {}) AS {}").format(
        sql.SQL(formula), sql.SQL(column.type.value), sql.Identifier(column.name)
    )


def local_day(day_of: str) -> sql.Composed:
    """The local date of a fact's `day_of` instant."""
    return sql.SQL("({} AT TIME ZONE %(timezone)s)::date").format(sql.Identifier(day_of))


def _part(
    table: Table,
    facts: sql.Composable,
    day_of: str,
    groups: list[sql.Composable],
    where: str,
    mine: list[Column],
    measures: list[Column],
) -> sql.Composed:
    """The measures of one fact table for the days in %(days)s, by day and group; the other
    tables' measures NULL (so that the parts can be stacked)."""
    day_of_column = sql.Identifier(day_of)
    names = [sql.Identifier(name) for name in _aggregation(table).group_by]
    values = [_typed(c.formula or "", c) if c in mine else _typed("NULL", c) for c in measures]
    return sql.SQL(
        "SELECT d.{day} AS {time}, {grouped}, {values}"
        " FROM unnest(%(days)s::date[]) AS d({day}) JOIN {facts} AS f"
        " ON f.{day_of} >= (d.{day}::timestamp AT TIME ZONE %(timezone)s) - {margin}"
        " AND f.{day_of} < ((d.{day} + 1)::timestamp AT TIME ZONE %(timezone)s) + {margin}"
        " AND {local_day} = d.{day}"
        " WHERE {where}"
        " GROUP BY 1, {positions}"
    ).format(
        day=_DAY,
        time=sql.Identifier(table.time_column),
        grouped=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(group, name)
            for group, name in zip(groups, names, strict=True)
        ),
        values=sql.SQL(", ").join(values),
        facts=facts,
        day_of=day_of_column,
        margin=_MARGIN,
        local_day=sql.SQL("(f.{} AT TIME ZONE %(timezone)s)::date").format(day_of_column),
        where=sql.SQL(where),
        positions=sql.SQL(", ").join(sql.SQL(str(n)) for n in range(2, len(groups) + 2)),
    )


def aggregated_rows(table: Table, schema: str) -> sql.Composed:
    """SELECT of the table's rows, in declared column order, for the days in %(days)s.

    Each fact table gives its own measures by day and group; a day and group that any of them
    has facts on gives one row, where a count over a table without facts there is 0 and any
    other measure NULL. Then the derived columns, from the measures."""
    aggregation = _aggregation(table)
    measures = [
        c for c in table.columns if c.formula is not None and c.name not in aggregation.derived
    ]
    own = [sql.SQL("f.{}").format(sql.Identifier(name)) for name in aggregation.group_by]
    parts = [
        _part(
            table,
            qualified(schema, aggregation.facts),
            aggregation.day_of,
            own,
            "true",
            [c for c in measures if c.over is None],
            measures,
        )
    ]
    for more in aggregation.also:
        parts.append(
            _part(
                table,
                qualified(schema, more.table),
                more.day_of,
                [sql.SQL(expression) for expression in more.groups],
                more.where,
                [c for c in measures if c.over == more.table.name],
                measures,
            )
        )
    keys = [sql.Identifier(name) for name in (table.time_column, *aggregation.group_by)]
    # One row per part and group at most, so max() picks the part's value.
    combined = [
        sql.SQL("coalesce(max({0}), 0) AS {0}" if not c.nullable else "max({0}) AS {0}").format(
            sql.Identifier(c.name)
        )
        for c in measures
    ]
    outer = [
        _typed(column.formula or "", column)
        if column.name in aggregation.derived
        else sql.Identifier(column.name)
        for column in table.columns
    ]
    return sql.SQL(
        "SELECT {outer} FROM (SELECT {keys}, {combined} FROM ({parts}) AS parts"
        " GROUP BY {keys}) AS measured"
    ).format(
        outer=sql.SQL(", ").join(outer),
        keys=sql.SQL(", ").join(keys),
        combined=sql.SQL(", ").join(combined),
        parts=sql.SQL(" UNION ALL ").join(parts),
    )
