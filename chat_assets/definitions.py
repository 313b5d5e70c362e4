"""The production code location (`dagster dev`, `dagster code-server start -m ...`)."""

from chat_assets.load_error import load_location
from chat_assets.location import production_definitions

defs = load_location(production_definitions)
