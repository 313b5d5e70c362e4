"""How a check names its culprits: a few at a time, by ids, groups and documented values, never
by text that could be personal data; and the common shape of a check that fails on rows."""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets.tables import Table

EXAMPLES = 5


def culprit_column(table: Table) -> str:
    """The column a failed row is named by: an aggregate's group (e.g. the queue id), or else
    the chat id (every chat table's first key column)."""
    return table.aggregation.group_by[0] if table.aggregation else table.key[0]


def json_key(value: Any) -> Any:
    """A key value as JSON metadata: NULL, an ISO date or instant, an integer, or a text as
    `shown_value` shows it."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, str):
        return shown_value(value)
    return value.isoformat() if hasattr(value, "isoformat") else int(value)


_ENUM_LIKE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def shown_value(value: str) -> str:
    """A bad enumeration value is shown only if it looks like one (snake_case, as every wire
    value is): anything else from the source could be personal data, so it is described."""
    return value if _ENUM_LIKE.match(value) else f"<{len(value)} characters, not shown>"


def failed_rows(
    table: Table,
    rows: pd.DataFrame,
    name: str,
    problems: dict[str, pd.Series],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """A check that fails on any row one of the named problems marks; metadata names the
    culprits by `culprit_column`, never by text."""
    group = culprit_column(table)
    metadata: dict[str, Any] = {}
    for problem, mask in problems.items():
        mask = mask.fillna(False).astype(bool)
        metadata[problem] = int(mask.sum())
        if mask.any():
            culprits = sorted({json_key(v) for v in rows.loc[mask, group]}, key=str)
            metadata[f"{problem}_{group}s"] = dg.MetadataValue.json(culprits[:EXAMPLES])
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=table.name,
        passed=not any(metadata[p] for p in problems),
        severity=severity,
        metadata=metadata,
    )
