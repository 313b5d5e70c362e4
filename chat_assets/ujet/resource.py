"""The UJET account as a Dagster resource: where chats come from, and with which credentials."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from chat_assets.settings import DEFAULT_REQUESTS_PER_SECOND
from chat_assets.ujet.client import UjetClient


class UjetResource(dg.ConfigurableResource):
    """A UJET tenant's Manager API: UJET_BASE_URL, or UJET_SUBDOMAIN (and UJET_DOMAIN)."""

    base_url: str | None = Field(
        default=None, description="Full base up to /manager/api/v1 (UJET_BASE_URL)."
    )
    subdomain: str | None = Field(default=None, description="UJET_SUBDOMAIN, as in acme.ujet.co.")
    domain: str = Field(default="ujet.co", description="UJET_DOMAIN; regional domains exist.")
    company_key: str | None = Field(default=None, description="UJET_COMPANY_KEY.")
    company_secret: str | None = Field(default=None, description="UJET_COMPANY_SECRET.")
    requests_per_second: float = Field(
        default=DEFAULT_REQUESTS_PER_SECOND,
        gt=0,
        description="UJET_REQUESTS_PER_SECOND: the most requests per second of this process.",
    )
    # The settings messages name: environment variables here, a tenant's attributes in
    # chat_assets.component.
    address_settings: str | None = Field(
        default=None, description="Where the address is set (default: the UJET_* variables)."
    )
    credentials_from: str = Field(
        default="UJET_COMPANY_KEY and UJET_COMPANY_SECRET",
        description="Where the key and secret are set.",
    )
    rate_from: str = Field(
        default="UJET_REQUESTS_PER_SECOND", description="Where the request rate is set."
    )

    @property
    def source(self) -> str:
        """What materializations record as their source."""
        return "ujet"

    def endpoint(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.subdomain:
            return f"https://{self.subdomain}.{self.domain}/manager/api/v1"
        raise dg.Failure(
            "No UJET account is configured: set UJET_SUBDOMAIN (e.g. acme for acme.ujet.co) "
            "or UJET_BASE_URL"
        )

    def credentials(self) -> tuple[str, str]:
        if not self.company_key or not self.company_secret:
            raise dg.Failure(
                f"{self.credentials_from} must both be set for a real UJET source "
                "(UJET console: Settings > Developer Settings)"
            )
        return self.company_key, self.company_secret

    def address_from(self) -> str:
        """The setting(s) the endpoint is built from: what to check when its host is wrong."""
        if self.address_settings:
            return self.address_settings
        return "UJET_BASE_URL" if self.base_url else "UJET_SUBDOMAIN and UJET_DOMAIN"

    def open_client(self, log: Any = None) -> UjetClient:
        key, secret = self.credentials()
        return UjetClient(
            self.endpoint(),
            key,
            secret,
            requests_per_second=self.requests_per_second,
            log=log,
            address_from=self.address_from(),
            credentials_from=self.credentials_from,
            rate_from=self.rate_from,
        )
