"""What can stop a UJET fetch. Every message says what happened and what to check, and never
holds a record's values or a credential: chats carry personal data and the secret opens them."""


class UjetError(Exception):
    """Anything that stopped a UJET fetch."""


class UjetAuthError(UjetError):
    """UJET refused the credentials (401) or their permissions (403); retrying cannot help."""


class UjetAddressError(UjetError):
    """The configured address cannot be used as written: its host name does not resolve, or
    TLS with it fails; a setting to fix, so never retried."""


class UjetNotFoundError(UjetError):
    """The chats endpoint does not exist at the configured address (404)."""


class UjetResponseError(UjetError):
    """UJET answered, but not with something we can trust as a page of chats."""


class UjetUnavailableError(UjetError):
    """UJET stayed throttled, failing or unreachable through every retry."""
