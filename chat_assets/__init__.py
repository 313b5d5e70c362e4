"""chat_assets: UJET chat records landed, flattened and guarded in PostgreSQL by Dagster.

`UjetChatsComponent` is the component a dg project declares (one YAML document per tenant) and
the Python API of a project that composes its definitions in code.
"""

from chat_assets.component import (
    TenantRetention,
    TenantSchedules,
    UjetAccount,
    UjetChatsComponent,
    tenants_definitions,
)

__all__ = [
    "TenantRetention",
    "TenantSchedules",
    "UjetAccount",
    "UjetChatsComponent",
    "tenants_definitions",
]
