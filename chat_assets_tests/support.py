"""Shared by the tests that run the asset graph through Dagster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from chat_assets.chat_tables import build_chat_tables
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.retention import Policy
from chat_assets.raw_chats import build_raw_chats
from chat_assets.settings import Settings
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse.io_manager import warehouse_resources
from chat_assets.warehouse.resource import Warehouse
from chat_assets_demo.emulator import UjetEmulator

# The vendor's sample and model, as JSON.
DATA = Path(__file__).parent / "data"

# The pseudonym key of the tests: fixed, so runs are comparable; never a real deployment's.
TEST_PII_KEY = "chat-assets-tests-only-" + "0123456789abcdef" * 2


def fullwidth(text: str) -> str:
    """ASCII text in its fullwidth forms (U+FF01 to U+FF5E), as a disguise."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def materialize_day(
    settings: Settings,
    emulator: UjetEmulator,
    database_url: str,
    schema: str,
    day: str,
    *,
    instance: dg.DagsterInstance | None = None,
    key: str = TEST_PII_KEY,
    raise_on_error: bool = True,
    downstream: tuple[dg.AssetsDefinition, ...] = (),
    policy: Policy | None = None,
    privacy: PrivacyResource | None = None,
    selection: str | None = None,
) -> dg.ExecuteInProcessResult:
    """raw_chats and the four flattened tables for one day, from the emulator (key k, secret s),
    and any assets given downstream of them; pseudonyms under `key`, or under the keys of
    `privacy` when given; only the assets `selection` names, when given."""
    partitions = daily_partitions(settings)
    warehouse = Warehouse(database_url=database_url, db_schema=schema)
    return dg.materialize(
        [
            build_raw_chats(partitions, warehouse),
            build_chat_tables(partitions, warehouse, interval_minutes=settings.interval_minutes),
            *downstream,
        ],
        partition_key=day,
        selection=selection,
        instance=instance,
        raise_on_error=raise_on_error,
        resources={
            "ujet": UjetResource(
                base_url=emulator.base_url,
                company_key="k",
                company_secret="s",
                requests_per_second=100,
            ),
            "privacy": privacy or PrivacyResource(pii_key=key),
            **warehouse_resources(warehouse, policy),
        },
    )
