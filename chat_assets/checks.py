"""Asset checks: pure functions from rows (or one SQL query) to check results.

Check names are constants so schedules, tests and the UI agree on them. Metadata names culprits
by ids and values of non-personal columns only, a few at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from psycopg import sql

from chat_assets.privacy.catalog import Treatment
from chat_assets.privacy.detect import FORMAT_CHARACTERS, PG_PATTERNS
from chat_assets.tables import (
    COUNTS_ADD_UP,
    RAW_CHATS,
    RAW_PII_KEY,
    SERVICE_LEVEL_IN_RANGE,
    SLA_CONSISTENT,
    PgType,
    Table,
)
from chat_assets.ujet.client import FetchResult
from chat_assets.warehouse import aggregate_sql
from chat_assets.warehouse.postgres import (
    any_of,
    cursor_for,
    qualified,
    window_bounds,
    window_days,
)

UNIQUE_IN_PARTITION = "unique_ids_in_partition"
UNIQUE_TABLE_WIDE = "unique_ids_table_wide"
COMPLETE_WINDOW = "complete_window"
NO_UNKNOWN_FIELDS = "no_unknown_fields"
PII_KEY_UNCHANGED = "pii_key_unchanged"
NO_PERSONAL_TEXT = "no_personal_text"
RECONCILED = "reconciled_with_facts"

EXAMPLES = 5


def check_specs(table: Table, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(table.name)
    wide = (
        "chat ids are unique."
        if len(table.unique_by) == 1
        else "(chat_id, id) is unique and no id belongs to two chats."
    )
    specs = [
        dg.AssetCheckSpec(
            UNIQUE_IN_PARTITION,
            asset=key,
            partitions_def=partitions,
            description=f"{', '.join(table.unique_by)} identify one row within the partition.",
        ),
    ]
    if table.aggregation is None:
        specs.append(
            dg.AssetCheckSpec(
                UNIQUE_TABLE_WIDE,
                asset=key,
                partitions_def=partitions,
                description="Across the whole table, in one SQL query: " + wide,
            )
        )
    else:
        specs.append(
            dg.AssetCheckSpec(
                RECONCILED,
                asset=key,
                partitions_def=partitions,
                description=f"The partition's rows equal a fresh aggregation of "
                f"{table.aggregation.facts.name}, in one SQL query.",
            )
        )
    specs.append(
        dg.AssetCheckSpec(
            NO_PERSONAL_TEXT,
            asset=key,
            partitions_def=partitions,
            blocking=True,
            description="No email, phone number or link in the partition's stored text of "
            "columns declared non-personal.",
        )
    )
    for name, column in table.valid_values:
        values = ", ".join(table.column(column).values)
        specs.append(
            dg.AssetCheckSpec(
                name,
                asset=key,
                partitions_def=partitions,
                description=f"{column} is one of the documented values: {values}.",
            )
        )
    specs += [
        dg.AssetCheckSpec(
            name,
            asset=key,
            partitions_def=partitions,
            description=_CONSISTENCY[name][0],
        )
        for name in table.consistency
    ]
    return specs


def raw_check_specs(partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    def spec(name: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            name, asset=RAW_CHATS.name, partitions_def=partitions, description=description
        )

    return [
        spec(
            COMPLETE_WINDOW,
            "Every chat of UJET's total for the window arrived (a short window is read twice) "
            "and none was left out for want of a usable id or updated_at.",
        ),
        spec(NO_UNKNOWN_FIELDS, "UJET sent no field the privacy catalog does not know."),
        spec(PII_KEY_UNCHANGED, "Every stored payload was pseudonymised with the current key."),
        dg.AssetCheckSpec(
            NO_PERSONAL_TEXT,
            asset=RAW_CHATS.name,
            partitions_def=partitions,
            blocking=True,
            description="No email or phone number in the partition's stored payloads.",
        ),
    ]


_SLA_COLUMNS = (
    "chat_id",
    "event",
    "queue_duration",
    "service_level_event",
    "service_level_target_time",
    "service_level_target_percent",
)


def columns_checked(table: Table) -> list[str]:
    """The stored columns the partition checks of `table` read."""
    names = [*table.unique_by, "chat_id", *(column for _, column in table.valid_values)]
    for check in table.consistency:
        names += _CONSISTENCY[check][1]
    return list(dict.fromkeys(n for n in names if n in table.column_names))


def partition_checks(table: Table, rows: pd.DataFrame) -> Iterator[dg.AssetCheckResult]:
    """The checks `table` declares beyond uniqueness, on the partition's stored rows."""
    for name, column in table.valid_values:
        yield values_valid(table, name, column, rows)
    for name in table.consistency:
        yield _CONSISTENCY[name][2](table, rows)


def _examples(values: pd.Series) -> list[Any]:
    return [v if not hasattr(v, "item") else v.item() for v in values.head(EXAMPLES).tolist()]


def _json_key(value: Any) -> Any:
    if value is None or pd.isna(value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else int(value)


def unique_in_partition(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """The unique_by columns identify one row. A nullable key column may be NULL (a group of
    its own, as in an aggregate); any other unique_by column must hold a value."""
    keys = rows[list(table.unique_by)]
    required = [c for c in table.unique_by if c not in table.key or not table.column(c).nullable]
    missing = int(keys[required].isna().any(axis=1).sum())
    complete = keys[required].notna().all(axis=1)
    duplicated = keys[keys.duplicated(keep=False) & complete]
    counts = duplicated.value_counts(dropna=False).head(EXAMPLES)
    return dg.AssetCheckResult(
        check_name=UNIQUE_IN_PARTITION,
        asset_key=table.name,
        passed=missing == 0 and duplicated.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": len(rows),
            "rows_without_id": missing,
            "duplicated_rows": len(duplicated),
            "duplicated_keys": dg.MetadataValue.json(
                [{"key": [_json_key(k) for k in key], "rows": int(n)} for key, n in counts.items()]
            ),
        },
    )


def unique_table_wide(
    engine: sa.Engine, schema: str, table: Table, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """The partition's ids, each looked up in the whole table through an index: a repeat
    anywhere involves a row some partition wrote, and that partition's check finds it. So the
    guarantee is table-wide while the work is the partition's, whatever the history."""
    target = qualified(schema, table)
    time_column = sql.Identifier(table.time_column)
    mine = sql.SQL("SELECT id FROM {} WHERE {} >= %s AND {} < %s AND id IS NOT NULL").format(
        target, time_column, time_column
    )
    if len(table.unique_by) == 1:
        query = sql.SQL(
            "SELECT id, count(*) FROM {} WHERE id {} GROUP BY id HAVING count(*) > 1"
            " ORDER BY id LIMIT %s"
        ).format(target, any_of(mine))
    else:
        query = sql.SQL(
            "SELECT id, array_agg(DISTINCT chat_id ORDER BY chat_id) FROM {}"
            " WHERE id {} GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT %s"
        ).format(target, any_of(mine))
    with cursor_for(engine) as cursor:
        found = cursor.execute(query, (start, end, EXAMPLES)).fetchall()
    if len(table.unique_by) == 1:
        culprits = [{"id": row[0], "rows": row[1]} for row in found]
    else:
        culprits = [{"id": row[0], "chat_ids": row[1][:EXAMPLES]} for row in found]
    return dg.AssetCheckResult(
        check_name=UNIQUE_TABLE_WIDE,
        asset_key=table.name,
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR
        if len(table.unique_by) == 1
        else dg.AssetCheckSeverity.WARN,
        metadata={"repeated_ids": dg.MetadataValue.json(culprits)},
    )


_ENUM_LIKE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def shown_value(value: str) -> str:
    """A bad enumeration value is shown only if it looks like one (snake_case, as every wire
    value is): anything else from the source could be personal data, so it is described."""
    return value if _ENUM_LIKE.match(value) else f"<{len(value)} characters, not shown>"


def values_valid(table: Table, name: str, column: str, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """Every value of `column` is one its declaration documents (NULL is not)."""
    bad = rows[~rows[column].isin(table.column(column).values)]
    details = [
        {
            "value": None if pd.isna(value) else shown_value(str(value)),
            "rows": len(group),
            "chat_ids": sorted({int(c) for c in group["chat_id"]})[:EXAMPLES],
        }
        for value, group in bad.groupby(bad[column].fillna("<null>"), sort=True)
    ]
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=table.name,
        passed=bad.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"bad_rows": len(bad), "bad_values": dg.MetadataValue.json(details)},
    )


def sla_consistent(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    queue = rows["queue_duration"]
    target = rows["service_level_target_time"]
    event = rows["service_level_event"]
    percent = rows["service_level_target_percent"]
    problems = {
        "in_sla_over_target": (event == "in_sla") & (queue > target),
        # An abandon past the abandon threshold is a miss whatever its queue time, so only
        # answered segments can contradict not_in_sla.
        "not_in_sla_within_target": (event == "not_in_sla")
        & (rows["event"] == "answered")
        & (queue <= target),
        "target_percent_out_of_range": (percent < 0) | (percent > 100),
        "negative_duration": (queue < 0) | (target < 0),
    }
    return _failed_rows(table, rows, SLA_CONSISTENT, problems, dg.AssetCheckSeverity.WARN)


def _failed_rows(
    table: Table,
    rows: pd.DataFrame,
    name: str,
    problems: dict[str, pd.Series],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """A check that fails on any row one of the named problems marks; metadata names the
    culprits by chat id (for an aggregate, by its group, e.g. the queue id), never by text."""
    group = table.aggregation.group_by[0] if table.aggregation else "chat_id"
    metadata: dict[str, Any] = {}
    for problem, mask in problems.items():
        mask = mask.fillna(False).astype(bool)
        metadata[problem] = int(mask.sum())
        if mask.any():
            culprits = sorted({_json_key(v) for v in rows.loc[mask, group]}, key=str)
            metadata[f"{problem}_{group}s"] = dg.MetadataValue.json(culprits[:EXAMPLES])
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=table.name,
        passed=not any(metadata[p] for p in problems),
        severity=severity,
        metadata=metadata,
    )


def counts_add_up(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """Every segment offered is counted once by its SLA verdict, and abandons are among them."""
    verdicts = rows["in_sla"] + rows["not_in_sla"] + rows["excluded"] + rows["unclassified"]
    return _failed_rows(
        table,
        rows,
        COUNTS_ADD_UP,
        {
            "verdicts_not_offered": verdicts != rows["offered"],
            "abandoned_over_offered": rows["abandoned"] > rows["offered"],
        },
    )


def service_level_in_range(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """service_level lies in [0, 1], is in_sla / (in_sla + not_in_sla), and NULL only
    without either."""
    counted = rows["in_sla"] + rows["not_in_sla"]
    level = rows["service_level"]
    expected = rows["in_sla"].astype("Float64") / counted.where(counted > 0).astype("Float64")
    return _failed_rows(
        table,
        rows,
        SERVICE_LEVEL_IN_RANGE,
        {
            "out_of_range": (level < 0) | (level > 1),
            "not_in_sla_share": (level - expected).abs() > 1e-12,
            "null_with_segments": level.isna() & (counted > 0),
            "set_without_segments": level.notna() & (counted == 0),
        },
    )


# Consistency checks by name: (description, columns read, the check).
_CONSISTENCY: dict[str, tuple[str, tuple[str, ...], Any]] = {
    SLA_CONSISTENT: (
        "SLA outcome agrees with queue time and target; sane figures.",
        _SLA_COLUMNS,
        sla_consistent,
    ),
    COUNTS_ADD_UP: (
        "in_sla + not_in_sla + excluded + unclassified = offered, and abandoned <= offered.",
        (
            "menu_path_id",
            "offered",
            "in_sla",
            "not_in_sla",
            "excluded",
            "unclassified",
            "abandoned",
        ),
        counts_add_up,
    ),
    SERVICE_LEVEL_IN_RANGE: (
        "service_level is within [0, 1] and equals in_sla / (in_sla + not_in_sla).",
        ("menu_path_id", "in_sla", "not_in_sla", "service_level"),
        service_level_in_range,
    ),
}


def reconciled(
    engine: sa.Engine, schema: str, table: Table, timezone: str, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """The partition's stored rows equal a fresh aggregation of the facts. One statement reads
    both, so it sees one snapshot: facts and aggregate are committed together."""
    aggregation = table.aggregation
    assert aggregation is not None
    days = window_days(table, start, end)
    group = sql.Identifier(aggregation.group_by[0])
    query = sql.SQL(
        "WITH fresh AS ({fresh}), stored AS (SELECT {columns} FROM {target}"
        " WHERE {time} = ANY(%(days)s))"
        " SELECT 'missing', {group} FROM (SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored) m"
        " UNION ALL"
        " SELECT 'unexpected', {group} FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM fresh) u"
    ).format(
        fresh=aggregate_sql.aggregated_rows(table, qualified(schema, aggregation.facts)),
        columns=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        target=qualified(schema, table),
        time=sql.Identifier(table.time_column),
        group=group,
    )
    with cursor_for(engine) as cursor:
        found = cursor.execute(query, {"days": days, "timezone": timezone}).fetchall()
    groups = sorted({_json_key(group) for _, group in found}, key=str)
    return dg.AssetCheckResult(
        check_name=RECONCILED,
        asset_key=table.name,
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            # A fresh row the table lacks (or holds with other figures), and a stored row no
            # fresh one equals: a queue with changed figures appears in both.
            "rows_missing": sum(kind == "missing" for kind, _ in found),
            "rows_unexpected": sum(kind == "unexpected" for kind, _ in found),
            f"{aggregation.group_by[0]}s": dg.MetadataValue.json(groups[:EXAMPLES]),
        },
    )


def complete_window(result: FetchResult) -> dg.AssetCheckResult:
    """Every chat UJET counted arrived, and none was left out unreadable. Distinct chats are
    counted before the half-open window trims the boundary; a short window was read twice."""
    return dg.AssetCheckResult(
        check_name=COMPLETE_WINDOW,
        asset_key=RAW_CHATS.name,
        passed=result.shortfall == 0 and not result.left_out,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "distinct_received": result.distinct,
            "api_total": -1 if result.total is None else result.total,
            "shortfall": result.shortfall,
            "reread": result.reread,
            "left_out": len(result.left_out),
            # Chat ids or page positions, never values.
            "left_out_chats": dg.MetadataValue.json(list(result.left_out[:20])),
        },
    )


def schema_drift(unknown: set[str], drifted: set[str]) -> dg.AssetCheckResult:
    """New or reshaped fields were dropped (untrusted by default): name their paths, not values."""
    return dg.AssetCheckResult(
        check_name=NO_UNKNOWN_FIELDS,
        asset_key=RAW_CHATS.name,
        passed=not unknown and not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "unknown_paths": dg.MetadataValue.json(sorted(unknown)),
            "drifted_paths": dg.MetadataValue.json(sorted(drifted)),
        },
    )


def pii_key_unchanged(engine: sa.Engine, schema: str, fingerprint: str) -> dg.AssetCheckResult:
    """Pseudonyms made with different keys never join: fail while any payload used another.
    Only rows of other keys are read (two ranges of an index), so the work does not grow with
    the history while every payload agrees."""
    query = sql.SQL("SELECT {0}, count(*) FROM {1} WHERE {0} < %s OR {0} > %s GROUP BY {0}").format(
        sql.Identifier(RAW_PII_KEY), qualified(schema, RAW_CHATS)
    )
    with cursor_for(engine) as cursor:
        others = dict(cursor.execute(query, (fingerprint, fingerprint)).fetchall())
    return dg.AssetCheckResult(
        check_name=PII_KEY_UNCHANGED,
        asset_key=RAW_CHATS.name,
        passed=not others,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "current_fingerprint": fingerprint,
            "rows_with_other_keys": dg.MetadataValue.json(others),
        },
    )


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


def personal_text(
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
    # already (a quick check says so), so only the rest pays for normalizing, ten patterns' cost.
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
    # nearly all of them, are read by one pattern per column.
    matched = [sql.SQL("{} ~ %s").format(sql.Identifier(f"t{n}")) for n in range(len(scanned))]
    alternations = ["|".join(f"({PG_PATTERNS[kind]})" for kind in kinds) for _, _, kinds in scanned]
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
