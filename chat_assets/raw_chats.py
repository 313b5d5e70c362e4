"""raw_chats: each day window's chats fetched from UJET, sanitized in memory and landed, page by
page, in the transaction that replaces the window."""

from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets import checks
from chat_assets.grammar import parse_instant
from chat_assets.handoff import hand_over
from chat_assets.partitions import local_day
from chat_assets.privacy import suppression
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.sanitize import SanitizeReport, WindowSanitizer
from chat_assets.tables import CHAT_ID_FIELD, RAW_CHATS, typed_frame
from chat_assets.ujet.client import FetchResult
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse import postgres
from chat_assets.warehouse.resource import IO_MANAGER_KEY, Warehouse

# Pages a fetch may be ahead of their sanitizing and landing: about a megabyte each.
PAGES_AHEAD = 10


def landing_rows(records: list[dict[str, Any]], timezone: str, pii_key: str) -> list[tuple]:
    """One row per (sanitized) chat, keyed by the local day of its `updated_at`."""
    rows = []
    for record in records:
        updated_at = parse_instant(record["updated_at"])
        assert updated_at is not None  # the client kept only chats with a readable one
        day = local_day(updated_at, timezone).isoformat()
        rows.append((day, int(record["id"]), updated_at, pii_key, record))
    return rows


def landing_frame(records: list[dict[str, Any]], timezone: str, pii_key: str) -> pd.DataFrame:
    """`landing_rows` as a DataFrame with the declared dtypes."""
    return typed_frame(landing_rows(records, timezone, pii_key), RAW_CHATS)


def canary_failure(leaks: int) -> dg.Failure:
    """The message holds counts, never values."""
    return dg.Failure(
        f"Privacy canary: {leaks} raw sensitive values from UJET would have reached raw_chats "
        "after sanitizing; nothing was written. Check the privacy catalog."
    )


def sanitize_window(
    records: list[dict[str, Any]], pseudonymizer: Pseudonymizer
) -> tuple[list[dict[str, Any]], SanitizeReport]:
    """Sanitize a fetched batch, then prove no raw sensitive value survived (the canary).

    Raises before anything is written.
    """
    sanitizer = WindowSanitizer(pseudonymizer)
    clean = sanitizer.page(records)
    if leaks := sanitizer.leaks():
        raise canary_failure(leaks)
    return clean, sanitizer.report


def landed_metadata(
    result: FetchResult,
    report: SanitizeReport,
    fingerprint: str,
    source: str,
    window: dg.TimeWindow,
) -> dict[str, Any]:
    """What a landed window records: the fetch's figures and what sanitizing did."""
    sanitized = report.as_metadata()
    return {
        "source": source,
        "records": result.kept,
        "pages": result.pages,
        "api_total": result.total if result.total is not None else -1,
        "received": result.received,
        "duplicates_dropped": result.duplicates_dropped,
        "left_out": len(result.left_out),
        "repaired": result.repaired,
        "reread": result.reread,
        "shortfall": result.shortfall,
        "requests": result.requests,
        "throttled": result.throttled,
        "pace_reached": round(result.pace, 2),
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "pii_key_fingerprint": fingerprint,
        "sanitized": dg.MetadataValue.json(sanitized["treated"]),
        "unknown_paths": dg.MetadataValue.json(sanitized["unknown_paths"]),
        "drifted_paths": dg.MetadataValue.json(sanitized["drifted_paths"]),
        "unnamed_keys": sanitized["unnamed_keys"],
        # Per kept field and kind: how many values had personal data replaced by a marker.
        "redacted": dg.MetadataValue.json(sanitized["redacted"]),
    }


def fetch_lock(origin: str) -> str:
    """The lock every fetch from one UJET account holds: UJET's request budget is the
    account's, so two fetches at once would only share it, and a strict limiter counts their
    interleaved requests as a burst."""
    return f"chat_assets ujet_api {origin}"


def build_raw_chats(partitions: dg.TimeWindowPartitionsDefinition, configured: Warehouse):
    """raw_chats for these partitions (their time zone places each chat's day)."""
    timezone = partitions.timezone

    @dg.asset(
        name=RAW_CHATS.name,
        group_name="ujet",
        partitions_def=partitions,
        # No backfill policy: an asset backfill (the UI's "Materialize all" over days) then
        # launches one run per day tagged with its partition, so every check result is stored
        # with its day and a failed day retries alone. (With a multi_run policy, each run is
        # tagged with a one-day range instead, and checks are stored without a partition.)
        io_manager_key=IO_MANAGER_KEY,
        kinds={"postgres", "pandas"},
        description=RAW_CHATS.description,
        metadata=RAW_CHATS.asset_metadata(configured.db_schema),
        check_specs=[
            *checks.raw_check_specs(partitions),
            suppression.erased_subject_spec(RAW_CHATS, partitions),
        ],
    )
    def raw_chats(
        context: dg.AssetExecutionContext,
        ujet: UjetResource,
        privacy: PrivacyResource,
        warehouse: Warehouse,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        window = context.partition_time_window
        pseudonymizer, key_note = privacy.pseudonymizer()
        context.log.info(f"Pseudonym key {pseudonymizer.fingerprint}: {key_note}")
        context.log.info(
            f"Fetching chats updated in [{window.start.isoformat()}, {window.end.isoformat()}) "
            f"from source: {ujet.source}"
        )
        engine = warehouse.engine()
        try:
            postgres.check_reachable(engine)  # before a day's fetch, not after it
        except postgres.WarehouseUnreachable as exc:
            raise dg.Failure(str(exc)) from None
        # Erased subjects, as listed when the fetch starts (and again when it lands).
        suppressed = suppression.load(engine, warehouse.db_schema, pseudonymizer.version)
        erased: Counter[suppression.Mode] = Counter()
        sanitizer = WindowSanitizer(pseudonymizer)
        fetched: list[FetchResult] = []

        def fill(write: Callable[[list[tuple]], None]) -> dict[str, Any]:
            """Fetch, sanitize and write page by page, inside the landing's transaction."""

            def land(page: list[dict[str, Any]]) -> None:
                clean, done = suppressed.apply(sanitizer.page(page))
                erased.update(done)
                write(landing_rows(clean, timezone, pseudonymizer.fingerprint))

            def fetch(hand: Callable[[list[dict[str, Any]]], None]) -> FetchResult:
                # A lock in the warehouse rather than a Dagster pool: a step waiting for a pool
                # slot spins a core and polls at growing intervals (up to 15 s), which in a
                # backfill costs more than the fetches themselves.
                with (
                    ujet.open_client(log=context.log) as client,
                    postgres.held_lock(engine, fetch_lock(client.origin)) as waited,
                ):
                    if waited >= 1:
                        context.log.info(
                            f"Waited {waited:.0f} s for another run's fetch from this UJET account"
                        )
                    result = client.fetch_window(window.start, window.end, sink=hand)
                    client.settle()
                return result

            # The fetch has a thread of its own, so the lock covers its requests only: this
            # thread sanitizes and lands the pages meanwhile, and may still be at the last few
            # when the next run's fetch begins.
            result = hand_over(fetch, land, depth=PAGES_AHEAD, name="ujet-fetch")
            if leaks := sanitizer.leaks():
                raise canary_failure(leaks)
            fetched.append(result)
            context.log.info(
                f"source: {ujet.source}: {result.kept} chats from {result.pages} pages "
                f"(API total {result.total}, {result.duplicates_dropped} duplicates dropped)"
            )
            return {
                **landed_metadata(
                    result, sanitizer.report, pseudonymizer.fingerprint, ujet.source, window
                ),
                "erased_subjects": suppression.counted(erased),
            }

        # The IO manager calls `fill` in the transaction that replaces the window.
        settle = partial(
            suppression.reapply, schema=warehouse.db_schema, start=window.start, end=window.end
        )
        yield dg.Output(postgres.Landing(fill, one_row_per=(CHAT_ID_FIELD,), settle=settle))
        (result,) = fetched
        report = sanitizer.report
        yield checks.complete_window(result)
        yield checks.schema_drift(report.unknown_paths, report.drifted_paths)
        yield checks.pii_key_unchanged(engine, warehouse.db_schema, pseudonymizer.fingerprint)
        yield checks.personal_text(engine, warehouse.db_schema, RAW_CHATS, window.start, window.end)
        yield suppression.erased_subject(
            engine, warehouse.db_schema, RAW_CHATS, window.start, window.end
        )

    return raw_chats
