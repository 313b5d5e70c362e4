"""Several UJET tenants in one code location, declared in one YAML file.

`CHAT_ASSETS_TENANTS_FILE` names the file: one YAML document per tenant, each as a `defs.yaml` of
a dg project declares the component (`type: chat_assets.UjetChatsComponent` and `attributes:`).
`dagster code-server start -m chat_assets.tenants_location` serves it (as
deploy/tenants/docker-compose.yml does). A project managed by `dg` declares the same documents in
its own `defs/` folder instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from chat_assets.component import UjetChatsComponent, tenants_definitions
from chat_assets.settings import SettingsError

TENANTS_FILE_ENV = "CHAT_ASSETS_TENANTS_FILE"
COMPONENT_TYPE = "chat_assets.UjetChatsComponent"


def read_tenants(path: Path) -> list[UjetChatsComponent]:
    """The tenants of a YAML file; a document that is not one is refused, naming its place."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as error:
        raise SettingsError(f"cannot read the tenants file {path} ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError(f"{path}{at} is not valid YAML") from None
    tenants = []
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, dict) or document.get("type") != COMPONENT_TYPE:
            raise SettingsError(
                f"{path}: document {number} must have type: {COMPONENT_TYPE} and attributes:"
            )
        try:
            tenants.append(
                UjetChatsComponent.from_attributes_dict(attributes=document.get("attributes") or {})
            )
        except ValueError as error:  # pydantic's ValidationError is one
            raise SettingsError(f"{path}: document {number}: {_first_line(error)}") from None
    if not tenants:
        raise SettingsError(f"{path} declares no tenant")
    return tenants


def _first_line(error: ValueError) -> str:
    """A validation error as one line: which attribute, and what is wrong with it."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}"
    return str(error).splitlines()[0]


def tenants_location() -> dg.Definitions:
    raw = os.environ.get(TENANTS_FILE_ENV, "").strip()
    if not raw:
        raise SettingsError(
            f"{TENANTS_FILE_ENV} is not set: point it at a YAML file with one "
            f"type: {COMPONENT_TYPE} document per tenant"
        )
    return tenants_definitions(read_tenants(Path(raw)))
