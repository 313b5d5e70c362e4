"""raw_chats: each day window's chats fetched from UJET, sanitized in memory page by page, staged
on local disk, and landed by the IO manager in one short transaction that replaces the window."""

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from chat_assets.checks import landing, personal_text, specs
from chat_assets.collection import collected_rarely
from chat_assets.grammar import parse_instant
from chat_assets.handoff import hand_over
from chat_assets.names import BARE, Names
from chat_assets.partitions import local_day
from chat_assets.plural import counted
from chat_assets.privacy import suppression
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.sanitize import SanitizeReport, WindowSanitizer
from chat_assets.tables import CHAT_ID_FIELD, RAW_CHATS
from chat_assets.ujet.client import FetchResult
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse.connection import WarehouseUnreachable, check_reachable
from chat_assets.warehouse.request_turns import request_turns
from chat_assets.warehouse.resource import Warehouse
from chat_assets.warehouse.staged_window import WindowStage

# Pages a fetch may be ahead of their sanitizing and landing, about a megabyte each, besides the
# page each lane of the fetch holds while it waits to hand it over.
PAGES_AHEAD = 4


def landing_rows(records: list[dict[str, Any]], timezone: str, pii_key: str) -> list[tuple]:
    """One row per (sanitized) chat, keyed by the local day of its `updated_at`."""
    rows = []
    for record in records:
        updated_at = parse_instant(record["updated_at"])
        assert updated_at is not None  # the client kept only chats with a readable one
        day = local_day(updated_at, timezone).isoformat()
        rows.append((day, int(record["id"]), updated_at, pii_key, record))
    return rows


def canary_failure(leaks: int) -> dg.Failure:
    """The message holds counts, never values."""
    return dg.Failure(
        f"Privacy canary: {leaks} raw sensitive values from UJET would have reached raw_chats "
        "after sanitizing; nothing was written. Check the privacy catalog."
    )


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
        "requests_in_flight": result.lanes,
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


def build_raw_chats(
    partitions: dg.TimeWindowPartitionsDefinition, warehouse: Warehouse, names: Names = BARE
):
    """raw_chats for these partitions (their time zone places each chat's day); `warehouse`
    gives the schema the asset's metadata names (a run writes through the warehouse resource of
    `names`, and fetches through its UJET and privacy resources)."""
    timezone = partitions.timezone

    @dg.asset(
        key=names.asset(RAW_CHATS.name),
        group_name=names.group,
        partitions_def=partitions,
        # No backfill policy: an asset backfill (the UI's "Materialize all" over days) then
        # launches one run per day tagged with its partition, so every check result is stored
        # with its day and a failed day retries alone. (With a multi_run policy, each run is
        # tagged with a one-day range instead, and checks are stored without a partition.)
        io_manager_key=names.io_manager,
        kinds={"postgres", "pandas"},
        description=RAW_CHATS.description,
        metadata=RAW_CHATS.asset_metadata(warehouse.db_schema),
        check_specs=names.check_specs(
            [
                *specs.raw_check_specs(partitions),
                suppression.erased_subject_spec(RAW_CHATS, partitions),
            ]
        ),
        required_resource_keys={names.ujet, names.privacy, names.warehouse},
    )
    def raw_chats(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckResult]:
        resources = context.resources
        ujet, privacy = getattr(resources, names.ujet), getattr(resources, names.privacy)
        yield from names.check_results(
            land_window(context, ujet, privacy, getattr(resources, names.warehouse))
        )

    def land_window(
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
            check_reachable(engine, warehouse.url_from)  # before a day's fetch, not after it
        except WarehouseUnreachable as exc:
            raise dg.Failure(str(exc)) from None
        # Erased subjects, as listed when the fetch starts (the IO manager applies the list
        # again as it lands the window, so an erasure made meanwhile holds too).
        suppressed = suppression.load(engine, warehouse.db_schema, pseudonymizer, privacy.key_names)
        erased: Counter[suppression.Mode] = Counter()
        sanitizer = WindowSanitizer(pseudonymizer)
        with WindowStage(RAW_CHATS, one_row_per=(CHAT_ID_FIELD,)) as stage:

            def land(page: list[dict[str, Any]]) -> None:
                clean, done = suppressed.apply(sanitizer.page(page))
                erased.update(done)
                stage.write(landing_rows(clean, timezone, pseudonymizer.fingerprint))

            def fetch(hand: Callable[[list[dict[str, Any]]], None]) -> FetchResult:
                # Runs of other processes fetch from the account at the same time: they take
                # turns request by request, through the warehouse.
                with (
                    ujet.open_client(log=context.log) as client,
                    request_turns(engine, warehouse.db_schema, client.origin) as turns,
                ):
                    client.share(turns)
                    try:
                        return client.fetch_window(window.start, window.end, sink=hand)
                    finally:
                        client.share(None)

            # The fetch has a thread of its own; this one sanitizes and stages the pages
            # meanwhile.
            with collected_rarely():
                result = hand_over(fetch, land, depth=PAGES_AHEAD, name="ujet-fetch")
            if leaks := sanitizer.leaks():
                raise canary_failure(leaks)
            context.log.info(
                f"source: {ujet.source}: {counted(result.kept, 'chat')} from "
                f"{counted(result.pages, 'page')} (API total {result.total}, "
                f"{counted(result.duplicates_dropped, 'duplicate')} dropped, "
                f"at most {counted(result.lanes, 'request')} in flight at once)"
            )
            metadata = landed_metadata(
                result, sanitizer.report, pseudonymizer.fingerprint, ujet.source, window
            )
            metadata["erased_subjects"] = suppression.counted(erased)
            # The IO manager replaces the window with the staged rows in one transaction.
            yield dg.Output(stage.staged(), metadata=metadata)
        report = sanitizer.report
        yield landing.complete_window(result)
        yield landing.schema_drift(report.unknown_paths, report.drifted_paths)
        yield landing.pii_key_unchanged(engine, warehouse.db_schema, pseudonymizer.fingerprint)
        yield personal_text.no_personal_text(
            engine, warehouse.db_schema, RAW_CHATS, window.start, window.end
        )
        yield suppression.erased_subject(
            engine, warehouse.db_schema, RAW_CHATS, window.start, window.end
        )

    return raw_chats
