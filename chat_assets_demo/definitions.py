"""The demo code location, for `dagster dev -m chat_assets_demo.definitions` (`bin/demo`)."""

from chat_assets.collection import collected_rarely

# As the production locations load (chat_assets.definitions).
with collected_rarely():
    from chat_assets.load_error import load_location
    from chat_assets_demo.location import demo_definitions

    defs = load_location(demo_definitions)
