"""What a newest-wins write did, as the metadata Dagster's UI shows and plots."""

from __future__ import annotations

from typing import Any

import dagster as dg

from chat_assets.tables import Table
from chat_assets.warehouse.newest_wins import Applied


def summary_markdown(table: Table, applied: Applied) -> str:
    """Row counts by the table's enumeration column. Only documented values are shown: any
    other value came from the source unchecked and could be personal data."""
    if table.summary_by is None or not applied.rows_written:
        return f"{applied.rows_written} rows"
    column = table.column(table.summary_by)
    lines = [f"| {column.name} | rows |", "|---|---:|"]
    lines += [f"| {value} | {applied.summary.get(value, 0)} |" for value in column.values]
    other = applied.rows_written - sum(applied.summary.values())
    lines.append(f"| other values (not shown) | {other} |")
    return "\n".join(lines)


def in_sla_rate(applied: Applied) -> float | None:
    """Share of answered-or-missed segments answered within the SLA (excluded ones left out)."""
    counted = applied.summary.get("in_sla", 0) + applied.summary.get("not_in_sla", 0)
    return applied.summary.get("in_sla", 0) / counted if counted else None


def applied_metadata(table: Table, applied: Applied) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "chats_accepted": applied.chats_accepted,
        "chats_stale": applied.chats_stale,
        "preview": dg.MetadataValue.md(summary_markdown(table, applied)),
        "coercion_failures": dg.MetadataValue.json(applied.coercion_failures),
    }
    summary_values = table.column(table.summary_by).values if table.summary_by else ()
    if "in_sla" in summary_values and (rate := in_sla_rate(applied)) is not None:
        metadata["in_sla_rate"] = dg.MetadataValue.float(round(rate, 4))
    if applied.days_recomputed:
        metadata["service_days_recomputed"] = dg.MetadataValue.json(
            [day.isoformat() for day in applied.days_recomputed]
        )
    return metadata
