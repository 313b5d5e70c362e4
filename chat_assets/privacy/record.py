"""A record of processing for one deployment, from the privacy catalog and its settings.

GDPR Art. 30(1) asks a controller to keep, for each processing, its purposes, the categories of
data subjects and of personal data, the recipients, transfers, "where possible, the envisaged
time limits for erasure of the different categories of data" and a general description of the
security measures; PIPA Art. 28-4 asks for records of the processing of pseudonymised
information and for the additional information (here, the keys) to be kept apart. chat_assets
knows the subjects, categories, treatments, retention limits and safeguards, and writes those;
what only the operator knows (who the controller is, the purposes and legal basis, who
receives the tables) is left as marked blanks to fill in.

The record holds no secret: keys appear by version, the warehouse by schema, never by URL.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from chat_assets.names import Names
from chat_assets.privacy.catalog import CATALOG, Category, Subject, Treatment
from chat_assets.privacy_retention import RETENTION_CRON, RETENTION_JOB
from chat_assets.settings import (
    RETAIN_AGENT_DAYS_ENV,
    RETAIN_CUSTOMER_DAYS_ENV,
    RETAIN_RAW_DAYS_ENV,
    KeyNames,
    Settings,
)
from chat_assets.tables import TABLES, TREATED

OPERATOR = "_(operator: fill in)_"

SUBJECTS = {
    Subject.CUSTOMER: "Customers (end users) of the contact center who chatted with it",
    Subject.AGENT: "Agents (employees or contractors) who handled or were transferred chats",
}


def _source(settings: Settings) -> str:
    if settings.ujet_base_url:
        return settings.ujet_base_url
    if settings.ujet_subdomain:
        return f"https://{settings.ujet_subdomain}.{settings.ujet_domain}/manager/api/v1"
    return "UJET Manager API (no account configured in this environment)"


def _limit(days: int | None, variable: str) -> str:
    if days is None:
        return f"no limit set (`{variable}` unset): kept until erased"
    return f"{days} days after the chat's day (`{variable}={days}`)"


def _categories() -> list[str]:
    """Per subject and category: the fields and what is stored of them."""
    grouped: dict[tuple[Subject, Category], dict[Treatment, list[str]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for rule in CATALOG:
        if rule.subject is not Subject.NONE:
            grouped[rule.subject, rule.category][rule.treatment].append(f"`{rule.path}`")
    lines = [
        "| subject | category | fields | stored as |",
        "|---|---|---|---|",
    ]
    for (subject, category), treated in sorted(grouped.items()):
        for treatment, paths in treated.items():
            lines.append(f"| {subject} | {category} | {', '.join(paths)} | {TREATED[treatment]} |")
    return lines


def _retention_settings(tenant: str | None) -> tuple[str, str, str]:
    """Where the raw, customer and agent limits are set: variables, or a tenant's attributes."""
    if tenant is None:
        return RETAIN_RAW_DAYS_ENV, RETAIN_CUSTOMER_DAYS_ENV, RETAIN_AGENT_DAYS_ENV
    return "retention.raw_days", "retention.customer_days", "retention.agent_days"


def _key_settings(names: KeyNames, version: str, previous: str) -> str:
    """The settings holding the keys, by name (and the versions), never their values."""
    where = f"`{names.key}` (version `{version}`, `{names.version}`) and "
    if names.previous is None:
        return where + "no previous keys (`pii_previous_keys_env` unset)"
    return where + f"`{names.previous}` (previous versions: {previous})"


def record_of_processing(settings: Settings, today: date, names: KeyNames | None = None) -> str:
    """The record as Markdown, for these settings, written on `today`; `names` are the key
    settings of a tenant (its `tenant` set), by default the single-tenant location's."""
    names = names or KeyNames()
    keys = [*settings.pii_previous_versions, settings.pii_key_version]
    previous = ", ".join(settings.pii_previous_versions) or "none"
    raw_days, customer_days, agent_days = _retention_settings(names.tenant)
    tenant = [] if names.tenant is None else [f"- **Tenant:** `{names.tenant}` (tenants file)"]
    kept = sum(r.treatment is Treatment.KEEP and r.subject is Subject.NONE for r in CATALOG)
    lines = [
        "# Record of processing: UJET chats in the warehouse",
        "",
        f"Written by `python -m chat_assets.docs --record` on {today.isoformat()}, from the "
        "privacy catalog of chat_assets and the settings of this deployment. It assumes the "
        "operator is the controller (GDPR Art. 30(1)) or the personal information controller "
        "(PIPA), or keeps it for one; blanks marked for the operator are theirs to fill.",
        "",
        "## The processing",
        "",
        f"- **Controller, representative, data protection officer:** {OPERATOR}",
        f"- **Purposes and legal basis:** {OPERATOR} (chat_assets computes contact-center "
        "figures: chats, transfers, queue and handle times, service levels per queue and day, "
        "and per interval)",
        f"- **Recipients of the warehouse tables:** {OPERATOR}",
        f"- **Transfers to third countries and their safeguards:** {OPERATOR}",
        *tenant,
        f"- **Source:** {_source(settings)} (chats by the day they were last updated)",
        f"- **Stored in:** PostgreSQL, schema `{settings.schema}` (tables "
        f"{', '.join(f'`{name}`' for name in TABLES)}; bookkeeping tables beginning with `_`)",
        f"- **Days:** from {settings.start_date.isoformat()}, in {settings.timezone}",
        "",
        "## Data subjects",
        "",
        *(f"- **{subject}**: {text}" for subject, text in SUBJECTS.items()),
        "",
        "## Categories of personal data and their treatment",
        "",
        "Every field of a UJET chat is classified; a field UJET adds later is dropped until it "
        f"is classified. {kept} fields hold no personal data (configuration, metrics) and are "
        "kept. The others, by subject and category:",
        "",
        *_categories(),
        "",
        "## Time limits for erasure",
        "",
        "| data | limit |",
        "|---|---|",
        f"| raw payloads (`raw_chats`) | {_limit(settings.retain_raw_days, raw_days)} |",
        f"| customer pseudonyms | {_limit(settings.retain_customer_days, customer_days)} |",
        f"| agent pseudonyms | {_limit(settings.retain_agent_days, agent_days)} |",
        "| chats' facts (durations, statuses, service levels) | kept: no personal data once "
        "their pseudonyms are unlinked |",
        "| erasure requests (`_erased_subjects`: pseudonyms, ref, time) | kept, so an erasure "
        "holds against later fetches |",
        "| the privacy ledger (`_privacy_ledger`: counts, refs, times; no id, no pseudonym) | "
        "kept, append-only (PIPA Art. 28-4 asks for at least 3 years after destruction) |",
        "",
        f"The job `{Names(names.tenant)(RETENTION_JOB)}` applies the limits daily (cron "
        f"`{RETENTION_CRON}`, {settings.timezone}); a day landed from beyond a limit lands "
        "within it. A data subject is erased on request with `python -m chat_assets.privacy "
        f"erase{'' if names.tenant is None else f' ... --tenant {names.tenant}'}`.",
        "",
        "## Safeguards",
        "",
        "- Personal data is sanitized in memory before anything is written: direct "
        "identifiers and contact data are dropped, links cut to their host, ids replaced by "
        "keyed pseudonyms (HMAC-SHA256), emails, phone numbers, resident registration numbers "
        "and card numbers in kept text replaced by markers.",
        "- A canary fails the run, writing nothing, if a value sanitizing held back is still "
        "present in kept text; blocking checks scan the stored text for the same patterns and "
        "for erased subjects.",
        "- Logs, run metadata and error messages carry counts, paths and chat ids, never "
        "personal values or pseudonyms.",
        "- Erasure (unlink or delete) in one transaction, a suppression list applied to every "
        "later landing, retention limits, key rotation without re-fetching: each recorded in "
        "the append-only ledger.",
        "",
        "## Pseudonymised information (PIPA Art. 28-4)",
        "",
        f"- **Additional information:** the pseudonym keys, "
        f"{_key_settings(names, settings.pii_key_version, previous)}, held outside the "
        "warehouse where the operator keeps secrets; the warehouse holds only their "
        f"fingerprints. Pseudonyms are made under the chain {' > '.join(keys)}.",
        "- **Re-identification** is possible only for a holder of every key of the chain who "
        "already knows an id (`python -m chat_assets.privacy pseudonym`, each use recorded in "
        "the ledger with its ref). Processing pseudonymised information to identify a person "
        "is prohibited (PIPA Art. 28-5).",
        f"- **Who holds the keys, and who may use the `pseudonym` command:** {OPERATOR}",
        "",
        "## Outside chat_assets",
        "",
        "- UJET keeps its own copy of every chat: erase a subject there too (Settings > "
        "Consumer Management).",
        "- Backups and WAL archives of the warehouse keep rows erased, expired or re-keyed until "
        "they expire; PostgreSQL keeps their old bytes until `VACUUM`.",
        f"- Access control to the warehouse and to the keys: {OPERATOR}",
    ]
    return "\n".join(lines) + "\n"
