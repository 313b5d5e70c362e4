"""The pseudonym key as a Dagster resource."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from chat_assets.privacy.pseudonyms import PrivacyKeyError, Pseudonymizer, load_key


class PrivacyResource(dg.ConfigurableResource):
    """Where the pseudonym key comes from; only the demo may fall back to a local key file."""

    pii_key: str | None = Field(
        default=None, description="CHAT_ASSETS_PII_KEY: at least 32 characters, kept secret."
    )
    key_version: str = Field(
        default="k1", description="CHAT_ASSETS_PII_KEY_VERSION: prefix of every pseudonym."
    )
    key_file: str = Field(
        default=".chat_assets/pii.key", description="Local key file of the embedded demo."
    )
    allow_local_key: bool = Field(
        default=False, description="Whether a missing key may be created locally (demo only)."
    )

    def pseudonymizer(self) -> tuple[Pseudonymizer, str]:
        """The pseudonymizer and a note on where its key came from (never the key)."""
        try:
            key, note = load_key(
                self.pii_key, key_file=Path(self.key_file), allow_create=self.allow_local_key
            )
        except PrivacyKeyError as error:
            raise dg.Failure(str(error)) from None
        return Pseudonymizer(key, self.key_version), note
