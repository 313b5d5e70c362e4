"""The demo source: the UJET resource pointed at an emulator in this process."""

from __future__ import annotations

import threading

from pydantic import Field

from chat_assets.ujet.resource import UjetResource
from chat_assets_demo.emulator import UjetEmulator

DEMO_KEY = "demo-key"
DEMO_SECRET = "demo-secret"

_demo: UjetEmulator | None = None
_demo_lock = threading.Lock()


def demo_emulator(chats_per_day: int, timezone: str) -> UjetEmulator:
    """The process's demo emulator on 127.0.0.1, started on first use."""
    global _demo
    with _demo_lock:
        if _demo is None:
            _demo = UjetEmulator(
                company_key=DEMO_KEY,
                company_secret=DEMO_SECRET,
                chats_per_day=chats_per_day,
                timezone=timezone,
            ).start()
        return _demo


class DemoUjetResource(UjetResource):
    """Synthetic, deterministic chats from the emulator, over real HTTP on 127.0.0.1."""

    demo_chats_per_day: int = Field(
        default=400, gt=0, description="Demo source volume: new chats per day, on average."
    )
    demo_timezone: str = Field(
        default="UTC", description="Local time of the demo's daily and weekly rhythm."
    )

    @property
    def source(self) -> str:
        return "demo"

    def endpoint(self) -> str:
        return demo_emulator(self.demo_chats_per_day, self.demo_timezone).base_url

    def credentials(self) -> tuple[str, str]:
        return DEMO_KEY, DEMO_SECRET
