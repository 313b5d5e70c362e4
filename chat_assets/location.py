"""The code location: every asset, check, schedule and resource of chat_assets.

Production needs a UJET account (UJET_SUBDOMAIN or UJET_BASE_URL, with its key and secret) and
a warehouse (CHAT_ASSETS_DATABASE_URL); without either, loading fails and says which variable
to set. `chat_assets.definitions` holds the production location; the demo is a location of its
own, `chat_assets_demo.definitions`, which `bin/demo` chooses.
"""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg

from chat_assets.chat_tables import build_chat_tables
from chat_assets.names import BARE, Names
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.retention import Policy
from chat_assets.privacy_retention import build_retention, build_retention_job_and_schedule
from chat_assets.queue_intervals import build_queue_intervals
from chat_assets.raw_chats import build_raw_chats
from chat_assets.schedules import build_jobs_and_schedules
from chat_assets.service_levels import build_catch_up, build_queue_service_levels
from chat_assets.settings import (
    DATABASE_URL_ENV,
    PII_KEY_ENV,
    PII_PREVIOUS_KEYS_ENV,
    Settings,
    SettingsError,
    parse_base_url,
    parse_domain,
    parse_subdomain,
)
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse.io_manager import warehouse_resources
from chat_assets.warehouse.resource import Warehouse

# Per-partition asset checks are a Dagster preview feature this project relies on; the warning
# each declaration raises tells an operator nothing they could act on.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def missing_production_settings(settings: Settings) -> list[str]:
    """Everything production lacks, each with what to set: all of it at once."""
    missing = []
    if not settings.database_url:
        missing.append(
            f"{DATABASE_URL_ENV} is not set: point it at the warehouse, e.g. "
            "postgresql+psycopg://loader:password@db.internal:5432/warehouse "
            "(bin/demo runs on an embedded PostgreSQL instead)"
        )
    if not settings.ujet_configured:
        missing.append(
            "No UJET account is configured: set UJET_SUBDOMAIN (acme for acme.ujet.co) or "
            "UJET_BASE_URL, with UJET_COMPANY_KEY and UJET_COMPANY_SECRET "
            "(bin/demo runs on the built-in demo source instead)"
        )
    # The account's address, read here and not with every setting: the demo ignores it. The
    # base URL, when set, wins over the other two.
    address = (
        [(parse_base_url, settings.ujet_base_url)]
        if settings.ujet_base_url
        else [(parse_subdomain, settings.ujet_subdomain), (parse_domain, settings.ujet_domain)]
    )
    for parse, value in address:
        try:
            parse(value)
        except SettingsError as problem:
            missing.append(str(problem))
    if settings.missing_secrets:
        missing.append(
            f"{', '.join(settings.missing_secrets)} not set: a UJET account needs its company "
            "key and secret (UJET console: Settings > Developer Settings) and a pseudonym key "
            "(python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    if settings.pii_key_problem:
        missing.append(settings.pii_key_problem)
    return missing


def require_production_settings(settings: Settings) -> None:
    if missing := missing_production_settings(settings):
        raise SettingsError("\n".join(missing))


def production_warehouse(settings: Settings) -> Warehouse:
    require_production_settings(settings)
    # Through EnvVar, so the password never shows as resource config in the UI.
    return Warehouse(database_url=dg.EnvVar(DATABASE_URL_ENV), db_schema=settings.schema)


def production_resources(settings: Settings) -> dict[str, Any]:
    """The UJET account and the pseudonym key from the environment; secrets through EnvVar."""
    require_production_settings(settings)
    return {
        "ujet": UjetResource(
            base_url=settings.ujet_base_url,
            subdomain=settings.ujet_subdomain,
            domain=settings.ujet_domain,
            company_key=dg.EnvVar("UJET_COMPANY_KEY"),
            company_secret=dg.EnvVar("UJET_COMPANY_SECRET"),
            requests_per_second=settings.requests_per_second,
        ),
        "privacy": PrivacyResource(
            pii_key=dg.EnvVar(PII_KEY_ENV),
            key_version=settings.pii_key_version,
            previous_keys=(
                dg.EnvVar(PII_PREVIOUS_KEYS_ENV) if settings.pii_previous_versions else None
            ),
        ),
    }


def build_definitions(
    settings: Settings,
    warehouse: Warehouse,
    resources: dict[str, Any],
    names: Names = BARE,
    *,
    standalone: bool = True,
) -> dg.Definitions:
    """The assets, checks and schedules on the given warehouse, UJET source and privacy key.

    `resources` holds the UJET source and privacy key under their bare keys (`ujet`, `privacy`);
    the definitions bind them, and the warehouse's, under the keys of `names`. A `standalone`
    location sets the executor for every run; otherwise (definitions merged into a project's)
    only the jobs carry it, so the project's own executor stays its own.
    """
    partitions = daily_partitions(settings)
    executor = dg.in_process_executor
    jobs, schedules = build_jobs_and_schedules(partitions, settings, names, executor)
    refresh, catch_up = build_catch_up(partitions, settings.catch_up_sensor, names, executor)
    policy = Policy.from_settings(settings)
    retention, within_retention = build_retention(policy, partitions.timezone, names)
    retention_job, retention_schedule = build_retention_job_and_schedule(
        partitions.timezone, names, executor
    )
    return dg.Definitions(
        assets=[
            build_raw_chats(partitions, warehouse, names),
            build_chat_tables(partitions, warehouse, names, settings.interval_minutes),
            build_queue_service_levels(partitions, warehouse, names, settings.interval_minutes),
            build_queue_intervals(partitions, warehouse, names, settings.interval_minutes),
            retention,
        ],
        asset_checks=[within_retention],
        jobs=[*jobs, refresh, retention_job],
        schedules=[*schedules, retention_schedule],
        sensors=[catch_up],
        resources=names.resources({**resources, **warehouse_resources(warehouse, policy)}),
        # A day's steps depend on one another, so separate step processes would buy no
        # parallelism, only a process start each; pools are still honoured in process.
        executor=executor if standalone else None,
    )


def production_definitions() -> dg.Definitions:
    settings = Settings.from_env()
    return build_definitions(
        settings, production_warehouse(settings), production_resources(settings)
    )
