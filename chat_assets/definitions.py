"""The code location: every asset, check, schedule and resource of chat_assets."""

from __future__ import annotations

import dagster as dg

from chat_assets.derived import build_chat_tables
from chat_assets.landing import build_raw_chats
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.schedules import build_jobs_and_schedules
from chat_assets.settings import DATABASE_URL_ENV, PII_KEY_ENV, Settings
from chat_assets.source.resource import UjetResource
from chat_assets.warehouse.io_manager import PostgresIOManager


def ujet_resource(settings: Settings) -> UjetResource:
    """A real account when UJET_BASE_URL or UJET_SUBDOMAIN is set, else the demo source."""
    if settings.demo_source:
        return UjetResource(requests_per_second=settings.requests_per_second)
    return UjetResource(
        base_url=settings.ujet_base_url,
        subdomain=settings.ujet_subdomain,
        domain=settings.ujet_domain,
        company_key=dg.EnvVar("UJET_COMPANY_KEY"),
        company_secret=dg.EnvVar("UJET_COMPANY_SECRET"),
        requests_per_second=settings.requests_per_second,
    )


def privacy_resource(settings: Settings) -> PrivacyResource:
    """The pseudonym key: CHAT_ASSETS_PII_KEY, or, for the demo source only, a local key file."""
    return PrivacyResource(
        pii_key=dg.EnvVar(PII_KEY_ENV) if settings.pii_key_set else None,
        key_version=settings.pii_key_version,
        key_file=str(settings.state_dir / "pii.key"),
        allow_local_key=settings.demo_source,
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    raw_chats = build_raw_chats(partitions, settings.schema, settings.timezone)
    jobs, schedules = build_jobs_and_schedules(partitions, settings)
    return dg.Definitions(
        assets=[raw_chats, build_chat_tables(partitions, settings.schema)],
        jobs=jobs,
        schedules=schedules,
        resources={
            "ujet": ujet_resource(settings),
            "privacy": privacy_resource(settings),
            "warehouse": PostgresIOManager(
                # Through EnvVar, so the password never shows as resource config in the UI.
                database_url=dg.EnvVar(DATABASE_URL_ENV) if settings.database_url else None,
                db_schema=settings.schema,
                state_dir=str(settings.state_dir),
            ),
        },
    )


defs = build_definitions(Settings.from_env())
