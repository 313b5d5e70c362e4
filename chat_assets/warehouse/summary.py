"""What a newest-wins write did, or what a partition holds, as the metadata Dagster's UI shows
and plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from chat_assets.tables import Table
from chat_assets.warehouse.newest_wins import Applied


def summary_markdown(table: Table, rows: int, summary: Mapping[str, int]) -> str:
    """Row counts by the table's enumeration column. Only documented values are shown: any
    other value came from the source unchecked and could be personal data."""
    if table.summary_by is None or not rows:
        return f"{rows} rows"
    column = table.column(table.summary_by)
    lines = [f"| {column.name} | rows |", "|---|---:|"]
    lines += [f"| {value} | {summary.get(value, 0)} |" for value in column.values]
    other = rows - sum(summary.get(value, 0) for value in column.values)
    lines.append(f"| other values (not shown) | {other} |")
    return "\n".join(lines)


def in_sla_rate(summary: Mapping[str, int]) -> float | None:
    """Share of answered-or-missed segments answered within the SLA (excluded ones left out)."""
    counted = summary.get("in_sla", 0) + summary.get("not_in_sla", 0)
    return summary.get("in_sla", 0) / counted if counted else None


def rows_metadata(table: Table, rows: int, summary: Mapping[str, int]) -> dict[str, Any]:
    """The preview of `rows` by the table's enumeration column, and the SLA rate if it has one."""
    preview = summary_markdown(table, rows, summary)
    metadata: dict[str, Any] = {"preview": dg.MetadataValue.md(preview)}
    summary_values = table.column(table.summary_by).values if table.summary_by else ()
    if "in_sla" in summary_values and (rate := in_sla_rate(summary)) is not None:
        metadata["in_sla_rate"] = dg.MetadataValue.float(round(rate, 4))
    return metadata


def applied_metadata(
    tables: Sequence[Table], results: Sequence[Applied], own: Table
) -> dict[str, Any]:
    """The metadata of the output whose plan wrote `tables`: its own table's rows described,
    and what the write did to every table of the plan."""
    applied = results[tables.index(own)]
    written = {
        table.name: {
            "rows_written": result.rows_written,
            "coercion_failures": result.coercion_failures,
            **(
                {"service_days_recomputed": [day.isoformat() for day in result.days_recomputed]}
                if result.days_recomputed
                else {}
            ),
        }
        for table, result in zip(tables, results, strict=True)
    }
    return {
        "chats_accepted": applied.chats_accepted,
        "chats_stale": applied.chats_stale,
        **rows_metadata(own, applied.rows_written, applied.summary),
        "coercion_failures": dg.MetadataValue.json(applied.coercion_failures),
        "tables_written": dg.MetadataValue.json(written),
    }
