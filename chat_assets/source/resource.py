"""The UJET source as a Dagster resource: a real account, or the built-in demo emulator."""

from __future__ import annotations

import threading
from typing import Any

import dagster as dg
from pydantic import Field

from chat_assets.settings import DEFAULT_REQUESTS_PER_SECOND
from chat_assets.source.client import UjetClient
from chat_assets.source.emulator import UjetEmulator

DEMO_KEY = "demo-key"
DEMO_SECRET = "demo-secret"

_demo: UjetEmulator | None = None
_demo_lock = threading.Lock()


def demo_emulator(chats_per_day: int) -> UjetEmulator:
    """The process's demo emulator on 127.0.0.1, started on first use."""
    global _demo
    with _demo_lock:
        if _demo is None:
            _demo = UjetEmulator(
                company_key=DEMO_KEY, company_secret=DEMO_SECRET, chats_per_day=chats_per_day
            ).start()
        return _demo


class UjetResource(dg.ConfigurableResource):
    """Where chats come from. With neither base_url nor subdomain set, the demo source."""

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
    demo_chats_per_day: int = Field(default=48, gt=0, description="Demo source volume per day.")

    @property
    def source(self) -> str:
        return "ujet" if (self.base_url or self.subdomain) else "demo"

    def endpoint(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.subdomain:
            return f"https://{self.subdomain}.{self.domain}/manager/api/v1"
        return demo_emulator(self.demo_chats_per_day).base_url

    def open_client(self, log: Any = None) -> UjetClient:
        if self.source == "demo":
            key, secret = DEMO_KEY, DEMO_SECRET
        else:
            if not self.company_key or not self.company_secret:
                raise dg.Failure(
                    "UJET_COMPANY_KEY and UJET_COMPANY_SECRET must both be set for a real UJET "
                    "source (UJET console: Settings > Developer Settings)"
                )
            key, secret = self.company_key, self.company_secret
        return UjetClient(
            self.endpoint(),
            key,
            secret,
            requests_per_second=self.requests_per_second,
            log=log,
        )
