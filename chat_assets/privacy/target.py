"""What the key holder's commands work on: the single-tenant location's warehouse and keys, read
from its environment variables, or one tenant's (`--tenant NAME`), read from the variables its
document in the tenants file names (`CHAT_ASSETS_TENANTS_FILE`, or `--tenants-file PATH`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chat_assets.privacy.pseudonyms import (
    PrivacyKeyError,
    Pseudonymizer,
    chain_problem,
    load_key,
    load_previous_keys,
)
from chat_assets.settings import (
    DATABASE_URL_ENV,
    KeyNames,
    Settings,
    SettingsError,
    env_value,
    parse_database_url,
)
from chat_assets.tenants import TENANTS_FILE_ENV, read_tenants


@dataclass(frozen=True)
class Target:
    """The settings of one warehouse schema and the variables of its keys (never their values)."""

    settings: Settings
    keys: KeyNames
    database_url_env: str = DATABASE_URL_ENV

    @property
    def tenant(self) -> str | None:
        return self.keys.tenant

    def pseudonymizer(self) -> Pseudonymizer:
        """The chain of keys the target's variables hold; a refusal names them, never a key."""
        keys = self.keys
        if env_value(keys.key) is None:
            demo_key = self.settings.local_key_file
            raise PrivacyKeyError(
                f"{keys.key_label} is not set: give the key the warehouse's pseudonyms were made "
                "with"
                + (
                    f" (bin/demo's: {keys.key_label}=$(cat {demo_key}))"
                    if keys.tenant is None and demo_key.is_file()
                    else ""
                )
            )
        key, _ = load_key(env_value(keys.key), key_file=None, allow_create=False, names=keys)
        previous = load_previous_keys(env_value(keys.previous), keys)
        version = self.settings.pii_key_version
        if (problem := chain_problem(key, version, previous, keys)) is not None:
            raise PrivacyKeyError(problem)
        return Pseudonymizer(key, version, previous)


def target_for(tenant: str | None, tenants_file: str | None = None) -> Target:
    """The single-tenant location's target, or the named tenant's from the tenants file; a
    tenant the file lacks, or a file that cannot be read, raises one line."""
    if tenant is None:
        if tenants_file is not None:
            raise SettingsError("--tenants-file is read for --tenant NAME only: name the tenant")
        return Target(Settings.from_env(), KeyNames())
    path = tenants_file or env_value(TENANTS_FILE_ENV)
    if path is None:
        raise SettingsError(
            f"--tenant {tenant} needs the tenants file: set {TENANTS_FILE_ENV} or give "
            "--tenants-file PATH"
        )
    declared = read_tenants(Path(path))
    found = [component for component in declared if component.tenant == tenant]
    if not found:
        raise SettingsError(
            f"tenant {tenant!r} is not in {path} (its tenants: "
            f"{', '.join(component.tenant for component in declared)})"
        )
    component = found[0]
    validated = component.validated()
    parse_database_url(
        env_value(component.database_url_env), validated.key_names.label(component.database_url_env)
    )
    return Target(validated.environment_settings(), validated.key_names, component.database_url_env)
