"""SQL compiled from an aggregate table's declaration: its rows for given local days.

The query takes two parameters: `%(days)s`, a date[] of local days, and `%(timezone)s`, the
partitions' time zone. A fact belongs to the day its `day_of` instant falls on in that zone; the
facts are found through an index on `day_of`, over the day's instants widened by `_MARGIN` on
each side, then matched by their exact local date: however a zone resolves a midnight that a
clock change skips or repeats, no fact of the day is left out.
"""

from __future__ import annotations

from psycopg import sql

from chat_assets.tables import Aggregation, Column, Table

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


def local_day(aggregation: Aggregation) -> sql.Composed:
    """The local date of a fact's `day_of` instant."""
    return sql.SQL("({} AT TIME ZONE %(timezone)s)::date").format(
        sql.Identifier(aggregation.day_of)
    )


def aggregated_rows(table: Table, facts: sql.Composable) -> sql.Composed:
    """SELECT of the table's rows, in declared column order, for the days in %(days)s."""
    aggregation = _aggregation(table)
    grouped = [sql.Identifier(name) for name in aggregation.group_by]
    measures = [
        c for c in table.columns if c.formula is not None and c.name not in aggregation.derived
    ]
    day_of = sql.Identifier(aggregation.day_of)
    inner = sql.SQL(
        "SELECT d.{day} AS {time}, {grouped}, {measures}"
        " FROM unnest(%(days)s::date[]) AS d({day}) JOIN {facts} AS f"
        " ON f.{day_of} >= (d.{day}::timestamp AT TIME ZONE %(timezone)s) - {margin}"
        " AND f.{day_of} < ((d.{day} + 1)::timestamp AT TIME ZONE %(timezone)s) + {margin}"
        " AND {local_day} = d.{day}"
        " GROUP BY d.{day}, {grouped}"
    ).format(
        day=_DAY,
        time=sql.Identifier(table.time_column),
        grouped=sql.SQL(", ").join(sql.SQL("f.{}").format(g) for g in grouped),
        measures=sql.SQL(", ").join(_typed(c.formula or "", c) for c in measures),
        facts=facts,
        day_of=day_of,
        margin=_MARGIN,
        local_day=sql.SQL("(f.{} AT TIME ZONE %(timezone)s)::date").format(day_of),
    )
    outer = [
        _typed(column.formula or "", column)
        if column.name in aggregation.derived
        else sql.Identifier(column.name)
        for column in table.columns
    ]
    return sql.SQL("SELECT {} FROM ({}) AS measured").format(sql.SQL(", ").join(outer), inner)
