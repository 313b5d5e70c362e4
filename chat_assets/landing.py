"""raw_chats: each day window's chats fetched from UJET and landed as they arrived."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets import checks
from chat_assets.partitions import local_day
from chat_assets.source.client import FetchResult
from chat_assets.source.resource import UjetResource
from chat_assets.tables import RAW_CHATS, typed_frame


def parse_time(value: Any) -> datetime:
    """UJET timestamps (`2019-07-17T07:27:14.000Z`) as aware UTC datetimes."""
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def landing_frame(records: list[dict[str, Any]], timezone: str) -> pd.DataFrame:
    """One row per chat, keyed by the local day of its `updated_at`."""
    rows = []
    for record in records:
        updated_at = parse_time(record["updated_at"])
        rows.append(
            (local_day(updated_at, timezone).isoformat(), int(record["id"]), updated_at, record)
        )
    return typed_frame(rows, RAW_CHATS)


def fetch_metadata(result: FetchResult, source: str, start: datetime, end: datetime) -> dict:
    return {
        "source": source,
        "records": len(result.records),
        "pages": result.pages,
        "api_total": result.total if result.total is not None else -1,
        "received": result.received,
        "duplicates_dropped": result.duplicates_dropped,
        "requests": result.requests,
        "throttled": result.throttled,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
    }


def build_raw_chats(partitions: dg.PartitionsDefinition, schema: str, timezone: str):
    @dg.asset(
        name=RAW_CHATS.name,
        group_name="ujet",
        partitions_def=partitions,
        pool="ujet_api",
        io_manager_key="warehouse",
        kinds={"postgres", "pandas"},
        description=RAW_CHATS.description,
        metadata={
            "dagster/column_schema": RAW_CHATS.dagster_schema(),
            "dagster/table_name": f"{schema}.{RAW_CHATS.name}",
            "partition_expr": RAW_CHATS.time_column,
        },
        check_specs=[
            dg.AssetCheckSpec(
                checks.COMPLETE_WINDOW,
                asset=RAW_CHATS.name,
                partitions_def=partitions,
                description="At least as many chats arrived as UJET's total for the window.",
            )
        ],
    )
    def raw_chats(
        context: dg.AssetExecutionContext, ujet: UjetResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        window = context.partition_time_window
        context.log.info(
            f"Fetching chats updated in [{window.start.isoformat()}, {window.end.isoformat()}) "
            f"from source: {ujet.source}"
        )
        with ujet.open_client(log=context.log) as client:
            result = client.fetch_window(window.start, window.end)
        frame = landing_frame(result.records, timezone)
        metadata = fetch_metadata(result, ujet.source, window.start, window.end)
        context.log.info(
            f"source: {ujet.source}: {len(frame)} chats from {result.pages} pages "
            f"(API total {result.total}, {result.duplicates_dropped} duplicates dropped)"
        )
        yield dg.Output(frame, metadata=metadata)
        yield checks.complete_window(result.received, result.total)

    return raw_chats
