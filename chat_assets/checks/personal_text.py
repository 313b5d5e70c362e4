"""No personal text where the declarations say there is none: one SQL query over a partition's
stored text in the columns declared non-personal, read as the Python detectors read it."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import sqlalchemy as sa
from psycopg import sql

from chat_assets.checks.specs import NO_PERSONAL_TEXT
from chat_assets.privacy.catalog import Treatment
from chat_assets.privacy.detect import FORMAT_CHARACTERS, PG_PATTERNS
from chat_assets.tables import PgType, Table
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.sql_parts import qualified
from chat_assets.warehouse.windows import window_bounds

# What joins a row's scanned columns into the one text its filter reads (see no_personal_text).
COLUMN_JOINER = "\n"


def _scanned(table: Table) -> list[tuple[str, sql.Composable, list[str]]]:
    """(column, text expression, pattern kinds) for every column declared non-personal.

    A JSONB payload is scanned as its JSON text for all but links: host-only links are kept
    there by design."""
    scanned: list[tuple[str, sql.Composable, list[str]]] = []
    for column in table.columns:
        if table.treatment(column) is not Treatment.KEEP:
            continue
        name = sql.Identifier(column.name)
        if column.type is PgType.TEXT:
            scanned.append((column.name, name, list(PG_PATTERNS)))
        elif column.type is PgType.JSONB:
            kinds = [kind for kind in PG_PATTERNS if kind != "url"]
            scanned.append((column.name, sql.SQL("{}::text").format(name), kinds))
    return scanned


def no_personal_text(
    engine: sa.Engine, schema: str, table: Table, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """One query over the partition's stored text in columns declared non-personal, each
    value read in the normalized form the Python patterns read (`detect.normalized`): NFKC,
    format characters removed."""
    scanned = _scanned(table)
    cells = [(name, n, kind) for n, (name, _, kinds) in enumerate(scanned) for kind in kinds]
    raw = [
        sql.SQL("{} AS {}").format(expr, sql.Identifier(f"r{n}"))
        for n, (_, expr, _) in enumerate(scanned)
    ]
    # ASCII text holds no format character and is its own NFKC, and most other text is NFKC
    # already (a quick check says so), so only the rest pays for normalizing, which costs many
    # times what one pattern does.
    texts = [
        sql.SQL(
            "CASE WHEN {r} ~ {non_ascii} THEN regexp_replace(CASE WHEN {r} IS NFKC NORMALIZED"
            " THEN {r} ELSE normalize({r}, NFKC) END, %s, '', 'g') ELSE {r} END AS {t}"
        ).format(
            r=sql.Identifier(f"r{n}"),
            non_ascii=sql.Literal("[^\\x01-\\x7f]"),
            t=sql.Identifier(f"t{n}"),
        )
        for n in range(len(scanned))
    ]
    counts = [
        sql.SQL("count(*) FILTER (WHERE {} ~ %s)").format(sql.Identifier(f"t{n}"))
        for _, n, _ in cells
    ]
    # A row is counted by kind only where one pattern of its alternation matches: clean rows,
    # nearly all of them, are read once, all the columns that share their patterns joined by
    # line breaks. No pattern's value holds a line break, and each boundary that accepts a
    # text's start or end accepts one too, so every match in a column is a match in the join;
    # one the join alone makes finds no column's count and so no leak.
    groups: dict[tuple[str, ...], list[int]] = {}
    for n, (_, _, kinds) in enumerate(scanned):
        groups.setdefault(tuple(kinds), []).append(n)
    matched = [
        sql.SQL("concat_ws({}, {}) ~ %s").format(
            sql.Literal(COLUMN_JOINER),
            sql.SQL(", ").join(sql.Identifier(f"t{n}") for n in columns),
        )
        for columns in groups.values()
    ]
    alternations = ["|".join(f"({PG_PATTERNS[kind]})" for kind in kinds) for kinds in groups]
    params = [PG_PATTERNS[kind] for _, _, kind in cells]
    time_column = sql.Identifier(table.time_column)
    # OFFSET 0 keeps each subquery apart, so a text is cast and normalized once, not once per
    # pattern that reads it.
    query = sql.SQL(
        "SELECT {} FROM (SELECT {} FROM (SELECT {} FROM {} WHERE {} >= %s AND {} < %s OFFSET 0)"
        " AS r OFFSET 0) AS s WHERE {}"
    ).format(
        sql.SQL(", ").join(counts) if counts else sql.SQL("0"),
        sql.SQL(", ").join(texts) if texts else sql.SQL("1"),
        sql.SQL(", ").join(raw) if raw else sql.SQL("1"),
        qualified(schema, table),
        time_column,
        time_column,
        sql.SQL(" OR ").join(matched) if matched else sql.SQL("false"),
    )
    format_class = f"[{FORMAT_CHARACTERS}]"
    bounds = window_bounds(table, start, end)
    with cursor_for(engine) as cursor:
        values = (
            cursor.execute(
                query, (*params, *[format_class] * len(texts), *bounds, *alternations)
            ).fetchone()
            if counts
            else ()
        )
    found = {
        f"{name}: {kind}": int(n) for (name, _, kind), n in zip(cells, values, strict=True) if n
    }
    return dg.AssetCheckResult(
        check_name=NO_PERSONAL_TEXT,
        asset_key=table.name,
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "columns_scanned": len(scanned),
            "cells_found": dg.MetadataValue.json(found),
        },
    )
