"""The checks of raw_chats' landing: every chat arrived, no unknown field, one pseudonym key."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from chat_assets.checks.specs import COMPLETE_WINDOW, NO_UNKNOWN_FIELDS, PII_KEY_UNCHANGED
from chat_assets.privacy.stored_keys import other_keys
from chat_assets.tables import RAW_CHATS
from chat_assets.ujet.client import FetchResult
from chat_assets.warehouse.connection import cursor_for


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
    with cursor_for(engine) as cursor:
        others = other_keys(cursor, schema, fingerprint)
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
