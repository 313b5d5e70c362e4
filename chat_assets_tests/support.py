"""Shared by the tests that run the asset graph through Dagster."""

from __future__ import annotations

import dagster as dg

from chat_assets.derived import build_chat_tables
from chat_assets.landing import build_raw_chats
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.settings import Settings
from chat_assets.source.emulator import UjetEmulator
from chat_assets.source.resource import UjetResource
from chat_assets.warehouse.io_manager import PostgresIOManager

# The pseudonym key of the tests: fixed, so runs are comparable; never a real deployment's.
TEST_PII_KEY = "chat-assets-tests-only-" + "0123456789abcdef" * 2


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
) -> dg.ExecuteInProcessResult:
    """raw_chats and the four flattened tables for one day, from the emulator (key k, secret s)."""
    partitions = daily_partitions(settings)
    return dg.materialize(
        [
            build_raw_chats(partitions, schema, settings.timezone),
            build_chat_tables(partitions, schema),
        ],
        partition_key=day,
        instance=instance,
        raise_on_error=raise_on_error,
        resources={
            "ujet": UjetResource(
                base_url=emulator.base_url,
                company_key="k",
                company_secret="s",
                requests_per_second=100,
            ),
            "privacy": PrivacyResource(pii_key=key),
            "warehouse": PostgresIOManager(database_url=database_url, db_schema=schema),
        },
    )
