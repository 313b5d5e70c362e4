"""The pseudonym key as a Dagster resource."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from chat_assets.privacy.pseudonyms import (
    PrivacyKeyError,
    Pseudonymizer,
    chain_problem,
    load_key,
    load_previous_keys,
)
from chat_assets.settings import PII_KEY_ENV, PII_KEY_VERSION_ENV, PII_PREVIOUS_KEYS_ENV, KeyNames


class PrivacyResource(dg.ConfigurableResource):
    """Where the pseudonym key comes from; only the demo may fall back to a local key file."""

    pii_key: str | None = Field(
        default=None, description="CHAT_ASSETS_PII_KEY: at least 32 characters, kept secret."
    )
    key_version: str = Field(
        default="k1", description="CHAT_ASSETS_PII_KEY_VERSION: prefix of every pseudonym."
    )
    previous_keys: str | None = Field(
        default=None,
        description="CHAT_ASSETS_PII_PREVIOUS_KEYS: the keys before the current one, oldest "
        "first, as VERSION:KEY separated by commas; kept secret.",
    )
    key_file: str = Field(
        default=".chat_assets/pii.key", description="Local key file of the embedded demo."
    )
    allow_local_key: bool = Field(
        default=False, description="Whether a missing key may be created locally (demo only)."
    )
    # Where the values above come from, for messages: a tenant's own variables and attributes.
    key_env: str = Field(default=PII_KEY_ENV, description="The key's variable, for messages.")
    version_setting: str = Field(
        default=PII_KEY_VERSION_ENV, description="The key version's setting, for messages."
    )
    previous_keys_env: str | None = Field(
        default=PII_PREVIOUS_KEYS_ENV,
        description="The previous keys' variable, for messages (None: a tenant names none).",
    )
    tenant: str | None = Field(default=None, description="The tenant, for messages.")

    @property
    def key_names(self) -> KeyNames:
        return KeyNames(self.key_env, self.version_setting, self.previous_keys_env, self.tenant)

    def pseudonymizer(self) -> tuple[Pseudonymizer, str]:
        """The pseudonymizer and a note on where its key came from (never the key)."""
        try:
            key, note = load_key(
                self.pii_key,
                key_file=Path(self.key_file),
                allow_create=self.allow_local_key,
                names=self.key_names,
            )
            previous = load_previous_keys(self.previous_keys, self.key_names)
        except PrivacyKeyError as error:
            raise dg.Failure(str(error)) from None
        if (problem := chain_problem(key, self.key_version, previous, self.key_names)) is not None:
            raise dg.Failure(problem)
        if previous:
            note += f", after the keys of versions {', '.join(v for v, _ in previous)}"
        return Pseudonymizer(key, self.key_version, previous), note
