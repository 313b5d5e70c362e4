"""The code location of the tenants in CHAT_ASSETS_TENANTS_FILE
(`dagster code-server start -m chat_assets.tenants_location`)."""

from chat_assets.load_error import load_location
from chat_assets.tenants import tenants_location

defs = load_location(tenants_location)
