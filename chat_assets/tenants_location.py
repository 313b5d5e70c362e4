"""The code location of the tenants in CHAT_ASSETS_TENANTS_FILE
(`dagster code-server start -m chat_assets.tenants_location`)."""

from chat_assets.collection import collected_rarely

# Every run's process loads the location anew; see `collected_rarely` for why its imports go
# faster with the collector held back.
with collected_rarely():
    from chat_assets.load_error import load_location
    from chat_assets.tenants import tenants_location

    defs = load_location(tenants_location)
