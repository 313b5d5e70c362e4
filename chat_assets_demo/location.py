"""The demo code location: chat_assets on the built-in demo source and a local warehouse.

Chats come from the UJET emulator in each run's process (synthetic, deterministic data over
real HTTP on 127.0.0.1); the warehouse is CHAT_ASSETS_DATABASE_URL, which `bin/demo` points at
an embedded PostgreSQL when it is unset; the pseudonym key is CHAT_ASSETS_PII_KEY or a local key
file the demo creates, after the keys of CHAT_ASSETS_PII_PREVIOUS_KEYS once it has been rotated.
`chat_assets_demo.definitions` holds it for `bin/demo` (`dagster dev -m
chat_assets_demo.definitions`).
"""

from __future__ import annotations

import dagster as dg

from chat_assets.location import build_definitions
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.settings import (
    DATABASE_URL_ENV,
    PII_KEY_ENV,
    PII_PREVIOUS_KEYS_ENV,
    Settings,
    SettingsError,
)
from chat_assets.warehouse.resource import Warehouse
from chat_assets_demo.embedded import embedded_database_url
from chat_assets_demo.resource import DemoUjetResource


def demo_definitions() -> dg.Definitions:
    settings = Settings.from_env()
    if settings.pii_key_problem:  # the first run would refuse it: said before anything starts
        raise SettingsError(settings.pii_key_problem)
    database_url = (
        dg.EnvVar(DATABASE_URL_ENV)
        if settings.database_url
        else embedded_database_url(settings.state_dir)
    )
    resources = {
        "ujet": DemoUjetResource(
            requests_per_second=settings.requests_per_second, demo_timezone=settings.timezone
        ),
        "privacy": PrivacyResource(
            pii_key=dg.EnvVar(PII_KEY_ENV) if settings.pii_key_set else None,
            key_version=settings.pii_key_version,
            previous_keys=(
                dg.EnvVar(PII_PREVIOUS_KEYS_ENV) if settings.pii_previous_versions else None
            ),
            key_file=str(settings.local_key_file),
            allow_local_key=True,
        ),
    }
    warehouse = Warehouse(database_url=database_url, db_schema=settings.schema)
    return build_definitions(settings, warehouse, resources)
