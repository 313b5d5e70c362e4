"""The checks a table declares beyond those every table has (`valid_values` and `consistency`
in `chat_assets.tables`), on the partition's stored rows: documented values, and figures that
hold together."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dagster as dg
import pandas as pd

from chat_assets.checks.culprits import EXAMPLES, culprit_column, failed_rows, shown_value
from chat_assets.tables import (
    COUNTS_ADD_UP,
    SERVICE_LEVEL_IN_RANGE,
    SLA_CONSISTENT,
    SLA_EVENT_VALID,
    Table,
)


def columns_checked(table: Table) -> list[str]:
    """The stored columns the partition checks of `table` read."""
    names = [
        *table.unique_by,
        culprit_column(table),
        *(column for _, column in table.valid_values),
    ]
    for check in table.consistency:
        names += _CONSISTENCY[check][0]
    return list(dict.fromkeys(n for n in names if n in table.column_names))


def partition_checks(table: Table, rows: pd.DataFrame) -> Iterator[dg.AssetCheckResult]:
    """The checks `table` declares beyond uniqueness, on the partition's stored rows."""
    for name, column in table.valid_values:
        yield values_valid(table, name, column, rows)
    for name in table.consistency:
        yield _CONSISTENCY[name][1](table, rows)


def values_valid(table: Table, name: str, column: str, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """Every value of `column` is one its declaration documents. NULL is no value: not
    recorded (a queue segment still waiting has no SLA verdict yet, and real data holds null
    verdicts of ended ones too), counted in the metadata but not failing."""
    values = rows[column]
    bad = rows[values.notna() & ~values.isin(table.column(column).values)]
    culprit = culprit_column(table)
    details = [
        {
            "value": shown_value(str(value)),
            "rows": len(group),
            "chat_ids": sorted({int(c) for c in group[culprit]})[:EXAMPLES],
        }
        for value, group in bad.groupby(bad[column], sort=True)
    ]
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=table.name,
        passed=bad.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "bad_rows": len(bad),
            "bad_values": dg.MetadataValue.json(details),
            "not_recorded": int(values.isna().sum()),
        },
    )


def sla_consistent(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """Declared with SLA_EVENT_VALID, whose column holds the SLA verdict of a queue segment."""
    queue = rows["queue_duration"]
    target = rows["service_level_target_time"]
    verdict = rows[dict(table.valid_values)[SLA_EVENT_VALID]]
    percent = rows["service_level_target_percent"]
    problems = {
        "in_sla_over_target": (verdict == "in_sla") & (queue > target),
        # An abandon past the abandon threshold is a miss whatever its queue time, so only
        # answered segments can contradict not_in_sla. Where the boundary lies is not
        # documented (a partner's production model counts a wait of exactly the target as a
        # miss), so a verdict either way at equality is consistent.
        "not_in_sla_within_target": (verdict == "not_in_sla")
        & (rows["event"] == "answered")
        & (queue < target),
        "target_percent_out_of_range": (percent < 0) | (percent > 100),
        "negative_duration": (queue < 0) | (target < 0),
    }
    return failed_rows(table, rows, SLA_CONSISTENT, problems, dg.AssetCheckSeverity.WARN)


def counts_add_up(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """Every segment offered is counted once by its SLA verdict and once as answered or not;
    abandons, long and short, are among those not answered; satisfied chats among the rated."""
    verdicts = rows["in_sla"] + rows["not_in_sla"] + rows["excluded"] + rows["unclassified"]
    abandons = rows["abandoned"] + rows["short_abandoned"]
    return failed_rows(
        table,
        rows,
        COUNTS_ADD_UP,
        {
            "verdicts_not_offered": verdicts != rows["offered"],
            "outcomes_not_offered": rows["answered"] + rows["not_answered"] != rows["offered"],
            "abandons_over_not_answered": abandons > rows["not_answered"],
            "rated_4_or_5_over_rated": rows["rated_4_or_5"] > rows["rated_chats"],
        },
    )


def service_level_in_range(table: Table, rows: pd.DataFrame) -> dg.AssetCheckResult:
    """service_level lies in [0, 1], is in_sla / (in_sla + not_in_sla), and NULL only
    without either."""
    counted = rows["in_sla"] + rows["not_in_sla"]
    level = rows["service_level"]
    expected = rows["in_sla"].astype("Float64") / counted.where(counted > 0).astype("Float64")
    return failed_rows(
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


_RowsCheck = Callable[[Table, pd.DataFrame], dg.AssetCheckResult]

# Consistency checks by name: (the columns each reads besides the culprit column and the
# declared values' columns, the check).
_CONSISTENCY: dict[str, tuple[tuple[str, ...], _RowsCheck]] = {
    SLA_CONSISTENT: (
        ("event", "queue_duration", "service_level_target_time", "service_level_target_percent"),
        sla_consistent,
    ),
    COUNTS_ADD_UP: (
        (
            "offered",
            "in_sla",
            "not_in_sla",
            "excluded",
            "unclassified",
            "answered",
            "not_answered",
            "abandoned",
            "short_abandoned",
            "rated_chats",
            "rated_4_or_5",
        ),
        counts_add_up,
    ),
    SERVICE_LEVEL_IN_RANGE: (("in_sla", "not_in_sla", "service_level"), service_level_in_range),
}
