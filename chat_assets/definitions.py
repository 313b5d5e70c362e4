"""The code location: every asset, check, schedule and resource of chat_assets."""

from __future__ import annotations

import os

import dagster as dg

from chat_assets.derived import build_chat_tables
from chat_assets.landing import build_raw_chats
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.pseudonyms import KEY_ENV
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.schedules import build_jobs_and_schedules
from chat_assets.settings import DATABASE_URL_ENV, Settings, SettingsError
from chat_assets.source.resource import UjetResource
from chat_assets.warehouse.io_manager import PostgresIOManager


def ujet_resource() -> UjetResource:
    """A real account when UJET_BASE_URL or UJET_SUBDOMAIN is set, else the demo source."""
    raw_rate = os.environ.get("UJET_REQUESTS_PER_SECOND", "").strip() or "1"
    try:
        rate = float(raw_rate)
        if not 0 < rate <= 100:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"UJET_REQUESTS_PER_SECOND={raw_rate!r} must be a number above 0 (at most 100)"
        ) from None
    base_url = os.environ.get("UJET_BASE_URL", "").strip() or None
    subdomain = os.environ.get("UJET_SUBDOMAIN", "").strip() or None
    if not (base_url or subdomain):
        return UjetResource(requests_per_second=rate)
    return UjetResource(
        base_url=base_url,
        subdomain=subdomain,
        domain=os.environ.get("UJET_DOMAIN", "").strip() or "ujet.co",
        company_key=dg.EnvVar("UJET_COMPANY_KEY"),
        company_secret=dg.EnvVar("UJET_COMPANY_SECRET"),
        requests_per_second=rate,
    )


def privacy_resource(settings: Settings, demo: bool) -> PrivacyResource:
    """The pseudonym key: CHAT_ASSETS_PII_KEY, or, for the demo source only, a local key file."""
    return PrivacyResource(
        pii_key=dg.EnvVar(KEY_ENV) if os.environ.get(KEY_ENV, "").strip() else None,
        key_version=os.environ.get("CHAT_ASSETS_PII_KEY_VERSION", "").strip() or "k1",
        key_file=str(settings.state_dir / "pii.key"),
        allow_local_key=demo,
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    raw_chats = build_raw_chats(partitions, settings.schema, settings.timezone)
    jobs, schedules = build_jobs_and_schedules(partitions, settings)
    ujet = ujet_resource()
    return dg.Definitions(
        assets=[raw_chats, build_chat_tables(partitions, settings.schema)],
        jobs=jobs,
        schedules=schedules,
        resources={
            "ujet": ujet,
            "privacy": privacy_resource(settings, demo=ujet.source == "demo"),
            "warehouse": PostgresIOManager(
                # Through EnvVar, so the password never shows as resource config in the UI.
                database_url=dg.EnvVar(DATABASE_URL_ENV) if settings.database_url else None,
                db_schema=settings.schema,
                state_dir=str(settings.state_dir),
            ),
        },
    )


defs = build_definitions(Settings.from_env())
