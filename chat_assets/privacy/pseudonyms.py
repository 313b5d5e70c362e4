"""Keyed pseudonyms: stable, joinable stand-ins for identifiers that cannot be reversed.

Why HMAC with a secret key and not a plain hash: customer and agent ids are small integers and
phone numbers have few digits, so an unkeyed hash is reversed by trying every value. With a key
held outside the warehouse, the same id always yields the same pseudonym (so tables still join)
and nobody holding only the warehouse can recover the id.

Why a namespace: the same number may be an agent id and a customer id; hashing the namespace in
keeps unrelated ids from colliding and keeps one kind of id from being joined to another.

Why a version prefix (`k1:`): when the key is rotated, old and new pseudonyms must be told apart
instead of silently failing to join.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import unicodedata
from pathlib import Path
from typing import Any

from chat_assets.settings import PII_KEY_ENV

KEY_ENV = PII_KEY_ENV
MIN_KEY_CHARS = 32

# Values that mean "no value" in UJET payloads: the vendor's model fills every field with
# "string" or 0, and other clients send "null"/"undefined" text. Hashing them would give every
# chat without a customer the same fake customer. 0 (and "0", "000") is a placeholder because
# UJET numbers its records from 1: an id of 0 never names a real record.
PLACEHOLDERS = frozenset({"", "string", "null", "none", "nil", "undefined", "nan", "n/a"})

_VERSION = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_ZEROS = re.compile(r"^0+$")


class PrivacyKeyError(RuntimeError):
    """No usable pseudonym key; the message says what to set, and never holds the key."""


def normalize(value: Any) -> str | None:
    """The canonical text of an identifier, or None when it is absent or a placeholder.

    Opaque ids keep their case ("AbC123" and "abc123" may be two customers); emails are
    lowercased because mail systems treat them case-insensitively and people type them both
    ways. Booleans are never identifiers (a flag in an id field is type drift), so None.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if text.count("@") == 1:
            text = text.lower()
    else:
        return None
    if text.casefold() in PLACEHOLDERS or _ZEROS.match(text):
        return None
    return text


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms under one secret key; the key never leaves this object."""

    __slots__ = ("_key", "version")

    def __init__(self, key: bytes, version: str = "k1") -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_CHARS:
            raise ValueError(f"a pseudonym key must be at least {MIN_KEY_CHARS} bytes")
        if not _VERSION.match(version):
            raise ValueError("a key version is 1-16 letters, digits, '-' or '_'")
        self._key = key
        self.version = version

    def pseudonym(self, namespace: str, value: Any) -> str | None:
        """`version:32 hex` for a present identifier; None for null, empty or placeholder."""
        if not namespace or "\x00" in namespace:
            raise ValueError("a namespace is a non-empty name without NUL characters")
        text = normalize(value)
        if text is None:
            return None
        message = f"{namespace}\x00{text}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return f"{self.version}:{digest[:32]}"

    @property
    def fingerprint(self) -> str:
        """Tells keys apart in metadata without revealing them.

        Its message holds no NUL, so it never equals a pseudonym's input.
        """
        digest = hmac.new(self._key, b"fingerprint", hashlib.sha256).hexdigest()
        return f"{self.version}:{digest[:16]}"

    def __repr__(self) -> str:
        return f"Pseudonymizer(version={self.version!r}, fingerprint={self.fingerprint!r})"


MIN_DISTINCT_BYTES = 10
# Keys shown in documentation: anyone can read them, so they protect no one.
EXAMPLE_KEYS = frozenset({"0123456789abcdef" * 2, "0123456789abcdef" * 4})
_HOW = "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"


def _periodic(text: str) -> bool:
    """Whether the text repeats a shorter unit (`abcabcabc...`), wholly or but for a tail."""
    return any(
        text == (text[:unit] * (len(text) // unit + 1))[: len(text)]
        for unit in range(1, len(text) // 2 + 1)
    )


def key_refusal(text: str, where: str) -> str | None:
    """Why a key is refused, as one line naming `where` it came from; None for a usable key.

    Refused: too short, too few distinct bytes, a repeated pattern, or a documented example.
    The message never holds the key."""
    data = text.encode()
    if len(text) < MIN_KEY_CHARS:
        problem = f"holds {len(text)} characters; a pseudonym key needs at least {MIN_KEY_CHARS}"
    elif text.lower() in EXAMPLE_KEYS:
        problem = "holds a key from documentation, which anyone can read"
    elif len(set(data)) < MIN_DISTINCT_BYTES:
        problem = f"uses fewer than {MIN_DISTINCT_BYTES} distinct bytes, so it is guessable"
    elif _periodic(text):
        problem = "repeats a shorter pattern, so it is guessable"
    else:
        return None
    return f"{where} {problem}: {_HOW}"


def _checked(text: str, where: str) -> bytes:
    """The key bytes: the text as UTF-8, never decoded from hex, so one secret is one key."""
    if (refusal := key_refusal(text, where)) is not None:
        raise PrivacyKeyError(refusal)
    return text.encode()


def load_key(
    env_value: str | None, *, key_file: Path | None, allow_create: bool
) -> tuple[bytes, str]:
    """The pseudonym key and a note saying where it came from (never the key itself).

    `env_value` is CHAT_ASSETS_PII_KEY: at least 32 characters of hex or any text, used as its
    UTF-8 bytes. Without it, only the embedded demo (`allow_create`) may fall back to a local
    key file, created with 64 random hex characters and mode 0600 on first use; a real UJET
    source must be given a key, because pseudonyms made with a throwaway key never join again.
    """
    if env_value is not None and env_value.strip():
        return _checked(env_value.strip(), KEY_ENV), f"key from {KEY_ENV}"
    if not allow_create:
        raise PrivacyKeyError(
            f"{KEY_ENV} is not set: a real UJET source needs a secret key for pseudonyms "
            "(see docs/personal-data.md)"
        )
    if key_file is None:
        raise PrivacyKeyError(f"{KEY_ENV} is not set and no local key file was given")
    created = _create_key_file(key_file)
    text = key_file.read_text(encoding="utf-8").strip()
    key = _checked(text, f"key file {key_file}")
    note = "created local key file" if created else "key from local key file"
    return key, f"{note} {key_file}"


def _create_key_file(path: Path) -> bool:
    """Write a new random key unless the file exists; O_EXCL so two runs never race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return True
