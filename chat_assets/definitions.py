"""The production code location (`dagster dev`, `dagster code-server start -m ...`)."""

from chat_assets.collection import collected_rarely

# Every run's process loads the location anew; see `collected_rarely` for why its imports go
# faster with the collector held back.
with collected_rarely():
    from chat_assets.load_error import load_location
    from chat_assets.location import production_definitions

    defs = load_location(production_definitions)
