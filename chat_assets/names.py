"""Every name a set of chat_assets definitions gives Dagster, bare or derived from a tenant.

The single-tenant location (`chat_assets.definitions`) uses the bare names: asset keys such as
`raw_chats`, resource keys `ujet`, `privacy`, `warehouse`, the job `chat_assets_daily`. A tenant
of `UjetChatsComponent` prefixes each of them with its name, so that tenants, and a project's own
definitions, never share one: asset keys `acme/raw_chats`, groups `acme_ujet`, jobs
`acme_chat_assets_daily`, resource keys `acme_warehouse`, and so on.

The checks (`chat_assets.checks`) describe a table and name its bare asset key; `check_spec` and
`check_results` put them on the asset key of these names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg

from chat_assets.warehouse.resource import IO_MANAGER_KEY, WAREHOUSE_KEY

UJET_KEY = "ujet"
PRIVACY_KEY = "privacy"
GROUP = "ujet"
PRIVACY_GROUP = "privacy"
TENANT_TAG = "chat_assets/tenant"

# A tenant name: it starts Dagster names (letters, digits, _) and a PostgreSQL schema's default.
TENANT_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")

_Event = TypeVar("_Event")


@dataclass(frozen=True)
class Names:
    """Names for one set of definitions: bare (`tenant=None`) or prefixed by the tenant."""

    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.tenant is not None and not TENANT_PATTERN.fullmatch(self.tenant):
            raise ValueError(
                f"tenant {self.tenant!r} must be lowercase letters, digits and _, starting with "
                "a letter, at most 40 characters (it prefixes asset keys and names)"
            )

    def __call__(self, name: str) -> str:
        """A job, schedule, sensor, group or resource key name."""
        return f"{self.tenant}_{name}" if self.tenant else name

    def asset(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.tenant, name] if self.tenant else [name])

    @property
    def ujet(self) -> str:
        return self(UJET_KEY)

    @property
    def privacy(self) -> str:
        return self(PRIVACY_KEY)

    @property
    def warehouse(self) -> str:
        return self(WAREHOUSE_KEY)

    @property
    def io_manager(self) -> str:
        return self(IO_MANAGER_KEY)

    @property
    def group(self) -> str:
        """The group of the daily assets."""
        return self(GROUP)

    @property
    def privacy_group(self) -> str:
        """The group of the retention asset."""
        return self(PRIVACY_GROUP)

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags of every run of these names' jobs: a tenant's runs carry its name, which the
        run queue's per-tenant limit (dagster.yaml) counts by."""
        return {TENANT_TAG: self.tenant} if self.tenant else {}

    def resources(self, resources: dict[str, Any]) -> dict[str, Any]:
        """Resources given under their bare keys, under these names' keys."""
        return {self(key): resource for key, resource in resources.items()}

    def check_spec(self, spec: dg.AssetCheckSpec) -> dg.AssetCheckSpec:
        """The spec on this tenant's key of its asset (a bare key names the table); additional
        deps, which no chat_assets check declares, are kept as given."""
        if not self.tenant:
            return spec
        return dg.AssetCheckSpec(
            spec.name,
            asset=self.asset(spec.asset_key.path[-1]),
            description=spec.description,
            additional_deps=spec.additional_deps,
            blocking=spec.blocking,
            metadata=spec.metadata,
            automation_condition=spec.automation_condition,
            partitions_def=spec.partitions_def,
        )

    def check_specs(self, specs: Iterable[dg.AssetCheckSpec]) -> list[dg.AssetCheckSpec]:
        return [self.check_spec(spec) for spec in specs]

    def check_results(self, events: Iterable[_Event]) -> Iterator[_Event]:
        """A step's outputs and check results, each check result on this tenant's key."""
        for event in events:
            if self.tenant and isinstance(event, dg.AssetCheckResult) and event.asset_key:
                event = event._replace(asset_key=self.asset(event.asset_key.path[-1]))
            yield event


BARE = Names()
