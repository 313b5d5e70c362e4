"""SQL compiled from an aggregate table's declaration: its rows for given local days, from
every table of facts it counts.

The queries take the parameters `params` gives: `%(days)s`, a date[] of local days,
`%(timezone)s`, the partitions' time zone, and `%(interval_minutes)s`, the length of an interval
aggregate's intervals. A fact belongs to the day its `day_of` instant falls on in that zone; the
facts are found through an index on `day_of`, over the day's instants widened by `_MARGIN` on
each side, then matched by their exact local date: however a zone resolves a midnight that a
clock change skips or repeats, no fact of the day is left out. An interval aggregate places a
fact in the interval its instant falls in, counted from the local midnight of its day (the day's
first instant), so a day's intervals hold exactly the day's facts, and a day with a clock change
has more or fewer of them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg import sql

from chat_assets.tables import Aggregation, Column, Table
from chat_assets.warehouse.sql_parts import qualified

_DAY_NAME = "_service_day"
_DAY = sql.Identifier(_DAY_NAME)
# More than any clock change moves a local midnight (daylight saving moves it by up to two hours).
_MARGIN = sql.SQL("interval '3 hours'")


def _aggregation(table: Table) -> Aggregation:
    if table.aggregation is None:
        raise ValueError(f"{table.name} is not an aggregate table")
    return table.aggregation


def params(days: list[date], timezone: str, interval_minutes: int) -> dict[str, Any]:
    """The parameters of the queries below, for these local days."""
    return {"days": days, "timezone": timezone, "interval_minutes": interval_minutes}


def _keys(table: Table) -> list[str]:
    """The columns the parts give a row by: its day (the table's time column, or for an interval
    aggregate the day beside the interval's start), then its group."""
    aggregation = _aggregation(table)
    if aggregation.interval is None:
        return [table.time_column, *aggregation.group_by]
    return [_DAY_NAME, aggregation.interval.start, *aggregation.group_by]


def _day_instants(instant: sql.Composable) -> sql.Composed:
    """`instant` lies on the local day d._service_day: within its instants widened by the
    margin, for an index, then by its exact local date."""
    return sql.SQL(
        "{instant} >= (d.{day}::timestamp AT TIME ZONE %(timezone)s) - {margin}"
        " AND {instant} < ((d.{day} + 1)::timestamp AT TIME ZONE %(timezone)s) + {margin}"
        " AND ({instant} AT TIME ZONE %(timezone)s)::date = d.{day}"
    ).format(instant=instant, day=_DAY, margin=_MARGIN)


def in_days(table: Table) -> sql.Composed:
    """The condition that a stored row of the aggregate lies on one of the days in %(days)s."""
    time = sql.Identifier(table.time_column)
    if _aggregation(table).interval is None:
        return sql.SQL("{} = ANY(%(days)s::date[])").format(time)
    return sql.SQL("EXISTS (SELECT FROM unnest(%(days)s::date[]) AS d({}) WHERE {})").format(
        _DAY, _day_instants(time)
    )


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
    """The measures of one fact table for the days in %(days)s, by day (and interval) and group;
    the other tables' measures NULL (so that the parts can be stacked)."""
    aggregation = _aggregation(table)
    instant = sql.SQL("f.{}").format(sql.Identifier(day_of))
    placed = [sql.SQL("d.{}").format(_DAY)]
    if aggregation.interval is not None:
        # Counted from the day's local midnight (when a clock change skips it, the instant the
        # day begins at; when it repeats, the later one), taken a day earlier: no fact of the
        # day precedes the origin then (date_bin rounds an instant before its origin wrongly
        # when it lies a whole number of intervals before it), and a whole day keeps the
        # intervals where they are.
        placed.append(
            sql.SQL(
                "date_bin(make_interval(mins => %(interval_minutes)s::integer), {}, "
                "(d.{}::timestamp AT TIME ZONE %(timezone)s) - interval '1 day')"
            ).format(instant, _DAY)
        )
    values = [_typed(c.formula or "", c) if c in mine else _typed("NULL", c) for c in measures]
    return sql.SQL(
        "SELECT {keys}, {values}"
        " FROM unnest(%(days)s::date[]) AS d({day}) JOIN {facts} AS f ON {on_day}"
        " WHERE {where}"
        " GROUP BY {positions}"
    ).format(
        keys=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(expression, sql.Identifier(name))
            for expression, name in zip([*placed, *groups], _keys(table), strict=True)
        ),
        values=sql.SQL(", ").join(values),
        day=_DAY,
        facts=facts,
        on_day=_day_instants(instant),
        where=sql.SQL(where),
        positions=sql.SQL(", ").join(
            sql.SQL(str(n)) for n in range(1, len(placed) + len(groups) + 1)
        ),
    )


def aggregated_rows(table: Table, schema: str) -> sql.Composed:
    """SELECT of the table's rows, in declared column order, for the days in %(days)s.

    Each fact table gives its own measures by day (or interval) and group; a day (or interval)
    and group that any of them has facts on gives one row, where a count over a table without
    facts there is 0 and any other measure NULL. Then the derived columns, from the measures."""
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
    keys = [sql.Identifier(name) for name in _keys(table)]
    # One row per part and group at most, so max() picks the part's value.
    combined = [
        sql.SQL("coalesce(max({0}), 0) AS {0}" if not c.nullable else "max({0}) AS {0}").format(
            sql.Identifier(c.name)
        )
        for c in measures
    ]
    minutes = aggregation.interval.minutes if aggregation.interval else None
    outer = [
        _typed(column.formula or "", column)
        if column.name in aggregation.derived
        else _typed("%(interval_minutes)s", column)
        if column.name == minutes
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
