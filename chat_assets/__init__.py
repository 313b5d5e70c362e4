"""chat_assets: UJET chat records landed, flattened and guarded in PostgreSQL by Dagster.

`UjetChatsComponent` is the component a dg project declares (one YAML document per tenant) and
the Python API of a project that composes its definitions in code. The names below load on first
use, so importing one of the package's modules (a command, the demo) loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TenantRetention": "chat_assets.component",
    "TenantSchedules": "chat_assets.component",
    "UjetAccount": "chat_assets.component",
    "UjetChatsComponent": "chat_assets.component",
    "tenants_definitions": "chat_assets.component",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'chat_assets' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    # dg lists the package's components by dir() (the registry entry point names this package).
    return sorted({*globals(), *_EXPORTS})
