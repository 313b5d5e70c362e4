"""Every environment variable chat_assets reads, parsed and validated in one place.

Secrets (UJET_COMPANY_KEY, UJET_COMPANY_SECRET, CHAT_ASSETS_PII_KEY, and the database URL with
its password) are only checked for presence here: Dagster reads them at run time through
`EnvVar`, so they never appear as configuration in the UI.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_START_DATE = "2025-01-01"
DATABASE_URL_ENV = "CHAT_ASSETS_DATABASE_URL"
PII_KEY_ENV = "CHAT_ASSETS_PII_KEY"
PII_KEY_VERSION_ENV = "CHAT_ASSETS_PII_KEY_VERSION"
PII_PREVIOUS_KEYS_ENV = "CHAT_ASSETS_PII_PREVIOUS_KEYS"
INTERVAL_MINUTES_ENV = "CHAT_ASSETS_INTERVAL_MINUTES"
# The lengths queue_intervals may count in: contact centers staff by 15 or 30 minutes, some by
# the hour, and each divides an hour, so every local day starts an interval at midnight.
INTERVAL_CHOICES = (15, 30, 60)
DEFAULT_INTERVAL_MINUTES = 30
DEFAULT_REQUESTS_PER_SECOND = 5.0
"""Half of UJET's documented 10 requests/s per customer, which every integration of the tenant
(WFM, other loaders) shares: the rest stays free for them."""


class SettingsError(ValueError):
    """A setting has a value chat_assets cannot use; the message names the variable."""


def said(error: Exception) -> str:
    """An error as chat_assets says it on a console: each of its lines after `chat_assets: `."""
    return "\n".join(f"chat_assets: {line}" for line in str(error).splitlines())


def env_value(name: str | None) -> str | None:
    """The variable's value, stripped; None when it is unset or empty, or no variable is named."""
    value = os.environ.get(name, "").strip() if name else ""
    return value or None


def _switch(name: str, default: bool) -> bool:
    """An on/off setting; anything else is refused rather than guessed."""
    raw = env_value(name)
    if raw is None:
        return default
    if raw.lower() not in ("on", "off"):
        raise SettingsError(f"{name}={raw!r} must be on or off")
    return raw.lower() == "on"


# Each parser below names the setting it reads (an environment variable here, a component
# attribute in chat_assets.component) in its messages.


def parse_rate(raw: str, name: str = "UJET_REQUESTS_PER_SECOND") -> float:
    try:
        rate = float(raw)
    except ValueError:
        rate = 0.0
    if not 0 < rate <= 100:
        raise SettingsError(f"{name}={raw!r} must be a number above 0 (at most 100), such as 5")
    return rate


def parse_schema(raw: str, name: str = "CHAT_ASSETS_SCHEMA") -> str:
    """A plain identifier PostgreSQL lets us create and keep: not reserved, not truncated."""
    schema = raw.lower()
    if (
        not schema
        or not (schema.isascii() and schema.replace("_", "").isalnum())
        or schema[0].isdigit()
    ):
        raise SettingsError(
            f"{name}={raw!r} must be a plain identifier (letters, digits, _), such as ujet"
        )
    if schema.startswith("pg_") or schema == "information_schema":
        raise SettingsError(
            f"{name}={raw!r} is reserved by PostgreSQL (pg_* and "
            "information_schema are system schemas): choose another name, such as ujet"
        )
    if len(schema.encode()) > 63:
        raise SettingsError(
            f"{name} is {len(schema)} characters long; PostgreSQL keeps at most 63 "
            "of an identifier: choose a shorter name, such as ujet"
        )
    return schema


def parse_database_url(raw: str | None, name: str = DATABASE_URL_ENV) -> str | None:
    """A PostgreSQL URL, or None when unset; never repeated, since it holds a password."""
    if raw and not raw.startswith(("postgresql", "postgres://")):
        raise SettingsError(
            f"{name} must be a PostgreSQL URL such as "
            "postgresql+psycopg://user:password@host:5432/dbname (a password's @, : or / "
            "percent-encoded: %40, %3A, %2F)"
        )
    return raw


def parse_base_url(raw: str | None, name: str = "UJET_BASE_URL") -> str | None:
    """A UJET base URL, or None when unset. It is resource configuration, shown in the UI, so
    a key or secret before its host is refused, never repeated."""
    try:
        netloc = urlsplit(raw.strip()).netloc if raw else ""
    except ValueError:  # e.g. an unclosed [ of an IPv6 host
        example = "https://acme.ujet.co/manager/api/v1"
        raise SettingsError(f"{name} is not a URL such as {example}") from None
    if "@" in netloc:
        raise SettingsError(
            f"{name} must not carry credentials before its host: the company key and secret "
            "belong in their own variables"
        )
    return raw


def parse_subdomain(raw: str | None, name: str = "UJET_SUBDOMAIN") -> str | None:
    """The account's host label (acme for acme.ujet.co), or None when unset. Never repeated: a
    URL pasted here may carry the key and secret."""
    if raw is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", raw):
        raise SettingsError(
            f"{name} must be a host label (lowercase letters, digits, -) such as acme, not a "
            "host or a URL"
        )
    return raw


def parse_domain(raw: str, name: str = "UJET_DOMAIN") -> str:
    """The domain the account's host is under, such as ujet.co. Never repeated, as above."""
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", raw):
        raise SettingsError(f"{name} must be a domain name such as ujet.co, not a host or a URL")
    return raw


def parse_start_date(raw: str, name: str = "CHAT_ASSETS_START_DATE") -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a date like 2025-01-01") from None


def parse_timezone(raw: str, name: str = "CHAT_ASSETS_TIMEZONE") -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not an IANA time zone such as Asia/Seoul") from None
    return raw


def parse_interval_minutes(raw: str, name: str = INTERVAL_MINUTES_ENV) -> int:
    if raw not in {str(n) for n in INTERVAL_CHOICES}:
        choices = ", ".join(map(str, INTERVAL_CHOICES[:-1])) + f" or {INTERVAL_CHOICES[-1]}"
        raise SettingsError(f"{name}={raw!r} must be {choices} (minutes), such as 30")
    return int(raw)


# A pseudonym key's version: the prefix of every pseudonym made under it.
KEY_VERSION = re.compile(r"[A-Za-z0-9_-]{1,16}")


def parse_key_version(raw: str, name: str) -> str:
    if not KEY_VERSION.fullmatch(raw):
        raise SettingsError(f"{name}={raw!r} must be 1-16 letters, digits, - or _, such as k2")
    return raw


def parse_lookback_days(raw: str, name: str = "CHAT_ASSETS_LOOKBACK_DAYS") -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 60:
        raise SettingsError(f"{name}={raw!r} must be a whole number from 1 to 60, such as 3")
    return int(raw)


def parse_retention_days(raw: str | None, name: str) -> int | None:
    """A retention limit in days; None: kept forever."""
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(
            f"{name}={raw!r} must be a whole number of days above 0, such as 365 "
            "(unset: kept forever)"
        )
    return int(raw)


RETAIN_RAW_DAYS_ENV = "CHAT_ASSETS_RETAIN_RAW_DAYS"
RETAIN_CUSTOMER_DAYS_ENV = "CHAT_ASSETS_RETAIN_CUSTOMER_DAYS"
RETAIN_AGENT_DAYS_ENV = "CHAT_ASSETS_RETAIN_AGENT_DAYS"


def _retention_days(name: str) -> int | None:
    return parse_retention_days(env_value(name), name)


@dataclass(frozen=True)
class KeyNames:
    """Where a chain of pseudonym keys is configured, as messages name it (never its values):
    the single-tenant location's variables, or a tenant's own (`tenant` set)."""

    key: str = PII_KEY_ENV
    version: str = PII_KEY_VERSION_ENV
    # None: a tenant that names no variable of previous keys (pii_previous_keys_env unset).
    previous: str | None = PII_PREVIOUS_KEYS_ENV
    tenant: str | None = None

    def label(self, name: str) -> str:
        return name if self.tenant is None else f"{name} (tenant {self.tenant})"

    @property
    def key_label(self) -> str:
        return self.label(self.key)

    @property
    def previous_label(self) -> str:
        """The variable of previous keys, or for a tenant without one the attribute naming it."""
        if self.previous is None:
            return self.label("the variable pii_previous_keys_env names")
        return self.label(self.previous)


def pii_key_problem(key: str | None, name: str = PII_KEY_ENV) -> str | None:
    """Why a pseudonym key that is set would be refused by the first run: said before it."""
    from chat_assets.privacy.pseudonyms import key_refusal  # it imports this module

    return None if key is None else key_refusal(key, name)


def key_chain_problem(
    key: str | None, version: str, previous: str | None, names: KeyNames | None = None
) -> str | None:
    """Why the pseudonym keys that are set would be refused by the first run: said before it
    (the current key, the previous ones, and how they follow each other)."""
    from chat_assets.privacy.pseudonyms import (  # it imports this module
        PrivacyKeyError,
        chain_problem,
        load_previous_keys,
    )

    names = names or KeyNames()
    if (refusal := pii_key_problem(key, names.key_label)) is not None:
        return refusal
    try:
        chain = load_previous_keys(previous, names)
    except PrivacyKeyError as error:
        return str(error)
    return None if key is None else chain_problem(key.encode(), version, chain, names)


def previous_versions(previous: str | None) -> tuple[str, ...]:
    """The versions a variable of previous keys (CHAT_ASSETS_PII_PREVIOUS_KEYS) names, oldest
    first (never its keys)."""
    if previous is None:
        return ()
    return tuple(entry.strip().partition(":")[0] for entry in previous.split(","))


@dataclass(frozen=True)
class Settings:
    start_date: date
    timezone: str
    schema: str
    database_url: str | None
    state_dir: Path
    lookback_days: int
    # The length of queue_intervals' intervals, minutes (one of INTERVAL_CHOICES).
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    daily_schedule: bool = True
    lookback_schedule: bool = False
    catch_up_sensor: bool = True
    ujet_base_url: str | None = None
    ujet_subdomain: str | None = None
    ujet_domain: str = "ujet.co"
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    pii_key_set: bool = False
    # Which of the secrets read at run time (through EnvVar) are missing from the environment.
    missing_secrets: tuple[str, ...] = ()
    pii_key_version: str = "k1"
    # Retention limits in days (None: kept forever); see chat_assets.privacy.retention.
    retain_raw_days: int | None = None
    retain_customer_days: int | None = None
    retain_agent_days: int | None = None
    # Why CHAT_ASSETS_PII_KEY (or a previous key) is refused when it is set but weak or does
    # not follow the previous ones (never the key itself).
    pii_key_problem: str | None = None
    # The versions of the keys used before the current one, oldest first (see
    # CHAT_ASSETS_PII_PREVIOUS_KEYS); the keys themselves are read at run time.
    pii_previous_versions: tuple[str, ...] = ()

    @property
    def local_key_file(self) -> Path:
        """Where the demo keeps the pseudonym key it made itself (CHAT_ASSETS_PII_KEY unset)."""
        return self.state_dir / "pii.key"

    @property
    def ujet_configured(self) -> bool:
        """Whether UJET_BASE_URL or UJET_SUBDOMAIN names an account."""
        return bool(self.ujet_base_url or self.ujet_subdomain)

    @classmethod
    def from_env(cls) -> Settings:
        start = parse_start_date(env_value("CHAT_ASSETS_START_DATE") or DEFAULT_START_DATE)
        tz = parse_timezone(env_value("CHAT_ASSETS_TIMEZONE") or "UTC")
        schema = parse_schema(env_value("CHAT_ASSETS_SCHEMA") or "ujet")
        database_url = parse_database_url(env_value(DATABASE_URL_ENV))
        return cls(
            start_date=start,
            timezone=tz,
            schema=schema,
            database_url=database_url,
            state_dir=Path(env_value("CHAT_ASSETS_HOME") or ".chat_assets").resolve(),
            lookback_days=parse_lookback_days(env_value("CHAT_ASSETS_LOOKBACK_DAYS") or "3"),
            interval_minutes=parse_interval_minutes(
                env_value(INTERVAL_MINUTES_ENV) or str(DEFAULT_INTERVAL_MINUTES)
            ),
            ujet_base_url=env_value("UJET_BASE_URL"),
            ujet_subdomain=env_value("UJET_SUBDOMAIN"),
            ujet_domain=env_value("UJET_DOMAIN") or "ujet.co",
            requests_per_second=parse_rate(
                env_value("UJET_REQUESTS_PER_SECOND") or str(DEFAULT_REQUESTS_PER_SECOND)
            ),
            pii_key_set=env_value(PII_KEY_ENV) is not None,
            missing_secrets=tuple(
                name
                for name in ("UJET_COMPANY_KEY", "UJET_COMPANY_SECRET", PII_KEY_ENV)
                if env_value(name) is None
            ),
            pii_key_version=parse_key_version(
                env_value(PII_KEY_VERSION_ENV) or "k1", PII_KEY_VERSION_ENV
            ),
            pii_key_problem=key_chain_problem(
                env_value(PII_KEY_ENV),
                env_value(PII_KEY_VERSION_ENV) or "k1",
                env_value(PII_PREVIOUS_KEYS_ENV),
            ),
            pii_previous_versions=previous_versions(env_value(PII_PREVIOUS_KEYS_ENV)),
            daily_schedule=_switch("CHAT_ASSETS_DAILY_SCHEDULE", default=True),
            lookback_schedule=_switch("CHAT_ASSETS_LOOKBACK_SCHEDULE", default=False),
            catch_up_sensor=_switch("CHAT_ASSETS_CATCH_UP_SENSOR", default=True),
            retain_raw_days=_retention_days(RETAIN_RAW_DAYS_ENV),
            retain_customer_days=_retention_days(RETAIN_CUSTOMER_DAYS_ENV),
            retain_agent_days=_retention_days(RETAIN_AGENT_DAYS_ENV),
        )
