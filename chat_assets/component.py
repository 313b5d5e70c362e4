"""`UjetChatsComponent`: one UJET tenant's chat_assets, declared in YAML or built in Python.

Each tenant gets the whole graph of the single-tenant location (raw_chats, the flattened tables,
queue_service_levels, queue_intervals, retention, their checks, jobs, schedules and sensor),
every name prefixed by its tenant (`chat_assets.names`): asset keys `acme/raw_chats`, resource
keys `acme_ujet`, ... So any number of tenants, and a project's own definitions, merge into one
code location.

Secrets are taken as the *names* of environment variables and bound with `dg.EnvVar`, which Dagster
reads when a run starts: they never appear as resource configuration in the UI. A variable a tenant
names but the environment lacks does not stop the location from loading: a warning names it, and
that tenant's runs fail at their start, naming it, while every other tenant runs.

Everything else is validated when the definitions load, each problem as one line naming the
tenant and the attribute: `dg check defs` finds them before a deployment does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import time, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from chat_assets.location import build_definitions
from chat_assets.names import TENANT_PATTERN, Names
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.settings import (
    DATABASE_URL_ENV,
    DEFAULT_INTERVAL_MINUTES,
    DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_START_DATE,
    KeyNames,
    Settings,
    SettingsError,
    env_value,
    key_chain_problem,
    parse_base_url,
    parse_database_url,
    parse_domain,
    parse_interval_minutes,
    parse_key_version,
    parse_lookback_days,
    parse_rate,
    parse_retention_days,
    parse_schema,
    parse_start_date,
    parse_subdomain,
    parse_timezone,
    previous_versions,
)
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse.resource import Warehouse

log = logging.getLogger("chat_assets")

# The name of an environment variable, in capitals as by convention: a secret written where its
# variable's name belongs is then refused, unless it happens to look like one.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# When the daily schedule asks for the day that just closed (chat_assets.schedules).
DAILY_RUN_AT = time(0, 30)


class UjetAccount(dg.Model):
    """Where a tenant's chats come from: its UJET Manager API and the variables of its secrets."""

    subdomain: str | None = Field(
        default=None, description="The tenant's subdomain: acme for https://acme.ujet.co."
    )
    base_url: str | None = Field(
        default=None,
        description="Full API base up to /manager/api/v1 (e.g. a proxy); wins over subdomain.",
    )
    domain: str = Field(default="ujet.co", description="Regional domain of the tenant.")
    company_key_env: str = Field(
        description="Name of the environment variable holding the company key (HTTP Basic user)."
    )
    company_secret_env: str = Field(
        description="Name of the environment variable holding the company secret."
    )
    requests_per_second: float = Field(
        default=DEFAULT_REQUESTS_PER_SECOND,
        description="The most requests per second this tenant's runs send together.",
    )


class TenantSchedules(dg.Model):
    """Which of the tenant's schedules and sensors start on (each can be turned on in the UI)."""

    daily: bool = Field(default=True, description="The last complete day at 00:30 local time.")
    lookback: bool = Field(default=False, description="The last lookback_days days at 04:00.")
    catch_up: bool = Field(
        default=True, description="The sensor that re-materializes changed service days."
    )


class TenantRetention(dg.Model):
    """Retention limits in days; unset: kept forever (see the README's Retention)."""

    raw_days: int | None = Field(default=None, description="Days raw_chats rows are kept.")
    customer_days: int | None = Field(default=None, description="Days customer pseudonyms live.")
    agent_days: int | None = Field(default=None, description="Days agent pseudonyms live.")


class UjetChatsComponent(dg.Component, dg.Resolvable, dg.Model):
    """UJET chats of one tenant landed, flattened and checked in PostgreSQL, partitioned by day.

    Declare one per tenant (one YAML document each); every asset key and name is prefixed by
    `tenant`. Secrets are named by environment variable, never written here.
    """

    tenant: str = Field(
        description="Prefixes every asset key (acme/raw_chats) and name (acme_chat_assets_daily)."
    )
    ujet: UjetAccount = Field(description="The tenant's UJET account.")
    pii_key_env: str = Field(
        description="Name of the environment variable holding the tenant's pseudonym key (at "
        "least 32 characters): a key per tenant, so one customer never links across tenants."
    )
    pii_key_version: str = Field(default="k1", description="Prefix of every pseudonym.")
    pii_previous_keys_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the tenant's keys used before "
        "pii_key_env's, oldest first, as VERSION:KEY separated by commas (k1:...,k2:...), as "
        "CHAT_ASSETS_PII_PREVIOUS_KEYS; set it when the tenant's key is rotated.",
    )
    database_url_env: str = Field(
        default=DATABASE_URL_ENV,
        description="Name of the environment variable holding the warehouse's URL "
        "(postgresql+psycopg://user:password@host:5432/dbname).",
    )
    db_schema: str | None = Field(
        default=None, description="Schema holding the tenant's tables; default ujet_<tenant>."
    )
    start_date: str = Field(default=DEFAULT_START_DATE, description="First daily partition.")
    timezone: str = Field(default="UTC", description="IANA zone of the daily partitions.")
    lookback_days: int = Field(default=3, description="Days the lookback schedule re-runs.")
    interval_minutes: int = Field(
        default=DEFAULT_INTERVAL_MINUTES,
        description="Length of queue_intervals' intervals, minutes: 15, 30 or 60.",
    )
    schedules: TenantSchedules = Field(default_factory=TenantSchedules)
    retention: TenantRetention = Field(default_factory=TenantRetention)
    fresh_by: str | None = Field(
        default="06:00",
        description="Local time (HH:MM) by which each day's run must have landed the day "
        "before; later, the tenant's assets show as stale. null: no freshness policy.",
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.definitions()

    def definitions(self) -> dg.Definitions:
        """The tenant's definitions, for a project that composes its own in Python."""
        tenant = self.validated()
        if missing := tenant.missing_variables():
            log.warning(
                f"chat_assets tenant {self.tenant}: {', '.join(missing)} not set; its runs fail "
                "until they are (the other tenants are not affected)"
            )
        for problem in (tenant.pii_key_problem(), tenant.database_url_problem()):
            if problem:
                # The problem names the tenant with its variable.
                log.warning(f"chat_assets: {problem}; its runs fail until it is mended")
        return tenant.definitions()

    def validated(self) -> Tenant:
        """The attributes checked and parsed; the first problem raises as one line."""
        return Tenant.from_component(self)


@dataclass(frozen=True)
class Tenant:
    """A tenant's validated settings, and the definitions they give."""

    component: UjetChatsComponent
    names: Names
    settings: Settings
    fresh_by: time | None

    @classmethod
    def from_component(cls, component: UjetChatsComponent) -> Tenant:
        where = f"chat_assets tenant {component.tenant!r}:"
        if not TENANT_PATTERN.fullmatch(component.tenant):
            raise SettingsError(
                f"{where} tenant must be lowercase letters, digits and _, starting with a letter, "
                "at most 40 characters (it prefixes asset keys and names), such as acme"
            )
        where = f"chat_assets tenant {component.tenant}:"
        account = component.ujet
        if not (account.subdomain or account.base_url):
            raise SettingsError(
                f"{where} ujet needs subdomain (acme for acme.ujet.co) or base_url "
                "(https://.../manager/api/v1)"
            )
        parse_subdomain(account.subdomain or None, f"{where} ujet.subdomain")
        parse_domain(account.domain, f"{where} ujet.domain")
        if account.base_url and not re.match(r"https?://[^/\s]+", account.base_url):
            raise SettingsError(
                f"{where} ujet.base_url must start with https:// (or http://) and a host"
            )
        parse_base_url(account.base_url, f"{where} ujet.base_url")
        for attribute, value in (
            ("ujet.company_key_env", account.company_key_env),
            ("ujet.company_secret_env", account.company_secret_env),
            ("pii_key_env", component.pii_key_env),
            ("pii_previous_keys_env", component.pii_previous_keys_env),
            ("database_url_env", component.database_url_env),
        ):
            if value is not None and not ENV_NAME.fullmatch(value):
                # Never the value: a secret put here by mistake must not reach a log.
                raise SettingsError(
                    f"{where} {attribute} must name an environment variable (capitals, digits, "
                    "_, such as ACME_UJET_KEY); the secret itself belongs in that variable"
                )
        retention = component.retention
        settings = Settings(
            start_date=parse_start_date(component.start_date, f"{where} start_date"),
            timezone=parse_timezone(component.timezone, f"{where} timezone"),
            schema=parse_schema(
                component.db_schema or f"ujet_{component.tenant}", f"{where} db_schema"
            ),
            database_url=None,
            # Local state of bin/demo only; a tenant keeps none.
            state_dir=Path(".chat_assets").resolve(),
            lookback_days=parse_lookback_days(
                str(component.lookback_days), f"{where} lookback_days"
            ),
            interval_minutes=parse_interval_minutes(
                str(component.interval_minutes), f"{where} interval_minutes"
            ),
            daily_schedule=component.schedules.daily,
            lookback_schedule=component.schedules.lookback,
            catch_up_sensor=component.schedules.catch_up,
            ujet_base_url=account.base_url,
            ujet_subdomain=account.subdomain,
            ujet_domain=account.domain,
            requests_per_second=parse_rate(
                str(account.requests_per_second), f"{where} ujet.requests_per_second"
            ),
            pii_key_version=parse_key_version(
                component.pii_key_version, f"{where} pii_key_version"
            ),
            retain_raw_days=_days(retention.raw_days, f"{where} retention.raw_days"),
            retain_customer_days=_days(retention.customer_days, f"{where} retention.customer_days"),
            retain_agent_days=_days(retention.agent_days, f"{where} retention.agent_days"),
        )
        fresh_by = _fresh_by(component.fresh_by, where)
        return cls(component, Names(component.tenant), settings, fresh_by)

    def missing_variables(self) -> list[str]:
        """The environment variables the tenant names that this process lacks."""
        account = self.component.ujet
        named = (
            account.company_key_env,
            account.company_secret_env,
            self.component.pii_key_env,
            self.component.pii_previous_keys_env,
            self.component.database_url_env,
        )
        return [name for name in named if name and not env_value(name)]

    @property
    def key_names(self) -> KeyNames:
        """The tenant's key settings, as messages name them."""
        return KeyNames(
            key=self.component.pii_key_env,
            version="pii_key_version",
            previous=self.component.pii_previous_keys_env,
            tenant=self.names.tenant,
        )

    def pii_key_problem(self) -> str | None:
        """Why the tenant's keys that are set would be refused by its first run (never a key)."""
        component = self.component
        return key_chain_problem(
            env_value(component.pii_key_env),
            component.pii_key_version,
            env_value(component.pii_previous_keys_env),
            self.key_names,
        )

    def database_url_problem(self) -> str | None:
        """Why the tenant's warehouse URL, when set, would be refused by its first run (never
        the URL, which holds a password)."""
        variable = self.component.database_url_env
        try:
            parse_database_url(env_value(variable), self.key_names.label(variable))
        except SettingsError as problem:
            return str(problem)
        return None

    def environment_settings(self) -> Settings:
        """The settings with what this process's environment holds for the tenant: its
        warehouse's URL and the versions of its previous keys (never a key)."""
        return replace(
            self.settings,
            database_url=env_value(self.component.database_url_env),
            pii_key_set=env_value(self.component.pii_key_env) is not None,
            pii_previous_versions=previous_versions(
                env_value(self.component.pii_previous_keys_env)
            ),
        )

    def freshness_policy(self) -> dg.FreshnessPolicy | None:
        """Each day's assets are due between local midnight and `fresh_by`; a day that has not
        landed by then shows as stale until it does."""
        if self.fresh_by is None:
            return None
        at = self.fresh_by
        return dg.FreshnessPolicy.cron(
            deadline_cron=f"{at.minute} {at.hour} * * *",
            lower_bound_delta=timedelta(hours=at.hour, minutes=at.minute),
            timezone=self.settings.timezone,
        )

    def definitions(self) -> dg.Definitions:
        component, settings, names = self.component, self.settings, self.names
        account = component.ujet
        warehouse = Warehouse(
            database_url=dg.EnvVar(component.database_url_env),
            db_schema=settings.schema,
            url_from=f"{component.database_url_env} (tenant {names.tenant})",
        )
        resources = {
            "ujet": UjetResource(
                base_url=account.base_url,
                subdomain=account.subdomain,
                domain=account.domain,
                company_key=dg.EnvVar(account.company_key_env),
                company_secret=dg.EnvVar(account.company_secret_env),
                requests_per_second=settings.requests_per_second,
                address_settings=f"tenant {names.tenant}'s ujet."
                + ("base_url" if account.base_url else "subdomain and ujet.domain"),
                credentials_from=f"{account.company_key_env} and {account.company_secret_env} "
                f"(tenant {names.tenant})",
                rate_from=f"tenant {names.tenant}'s ujet.requests_per_second",
            ),
            "privacy": PrivacyResource(
                pii_key=dg.EnvVar(component.pii_key_env),
                key_version=settings.pii_key_version,
                previous_keys=(
                    dg.EnvVar(component.pii_previous_keys_env)
                    if component.pii_previous_keys_env
                    else None
                ),
                key_env=component.pii_key_env,
                version_setting="pii_key_version",
                previous_keys_env=component.pii_previous_keys_env,
                tenant=names.tenant,
            ),
        }
        defs = build_definitions(settings, warehouse, resources, names, standalone=False)
        policy = self.freshness_policy()
        if policy is None:
            return defs
        return defs.map_resolved_asset_specs(
            func=lambda spec: spec.replace_attributes(freshness_policy=policy),
            selection=dg.AssetSelection.groups(names.group),
        )


def _days(value: int | None, name: str) -> int | None:
    return parse_retention_days(None if value is None else str(value), name)


def _fresh_by(raw: str | None, where: str) -> time | None:
    if raw is None:
        return None
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw.strip())
    if not match:
        raise SettingsError(f"{where} fresh_by={raw!r} must be a local time HH:MM, such as 06:00")
    at = time(int(match[1]), int(match[2]))
    if at <= DAILY_RUN_AT:
        raise SettingsError(
            f"{where} fresh_by={raw!r} must come after the daily run at "
            f"{DAILY_RUN_AT:%H:%M}, such as 06:00"
        )
    return at


def _warehouse_identity(variable: str) -> str:
    """Which database a warehouse URL points at (host, port, database: tenants with users of
    their own still share it), or the variable's name while it is not set or not readable."""
    raw = env_value(variable)
    try:
        url = sa.engine.make_url(raw) if raw else None
    except sa.exc.ArgumentError:
        url = None
    if url is None:
        return variable
    return f"{url.host}:{url.port or 5432}/{url.database}"


def tenants_definitions(tenants: Iterable[UjetChatsComponent]) -> dg.Definitions:
    """Several tenants in one set of definitions; two tenants may not share a name, a schema
    of one warehouse (a day one tenant lands would replace the other's) or a pseudonym key's
    variable (a customer's pseudonyms would link across them)."""
    seen: set[str] = set()
    schemas: dict[tuple[str, str], str] = {}
    keys: dict[str, str] = {}
    parts = []
    for tenant in tenants:
        if tenant.tenant in seen:
            raise SettingsError(f"chat_assets tenant {tenant.tenant}: declared twice")
        seen.add(tenant.tenant)
        schema = tenant.validated().settings.schema
        warehouse = _warehouse_identity(tenant.database_url_env)
        if (warehouse, schema) in schemas:
            raise SettingsError(
                f"chat_assets tenant {tenant.tenant}: db_schema {schema} is tenant "
                f"{schemas[warehouse, schema]}'s in the same warehouse; each tenant needs a "
                "schema of its own"
            )
        schemas[warehouse, schema] = tenant.tenant
        if tenant.pii_key_env in keys:
            raise SettingsError(
                f"chat_assets tenant {tenant.tenant}: pii_key_env {tenant.pii_key_env} is tenant "
                f"{keys[tenant.pii_key_env]}'s; each tenant needs a pseudonym key of its own, so "
                "that a customer never links across tenants"
            )
        keys[tenant.pii_key_env] = tenant.tenant
        parts.append(tenant.definitions())
    return dg.Definitions.merge(*parts)
