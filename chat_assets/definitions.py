"""The production code location (`dagster dev`, `dagster code-server start -m ...`)."""

from chat_assets.location import production_definitions

defs = production_definitions()
