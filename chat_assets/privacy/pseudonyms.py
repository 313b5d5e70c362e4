"""Keyed pseudonyms: stable, joinable stand-ins for identifiers that cannot be reversed.

Why HMAC with a secret key and not a plain hash: customer and agent ids are small integers and
phone numbers have few digits, so an unkeyed hash is reversed by trying every value. With a key
held outside the warehouse, the same id always yields the same pseudonym (so tables still join)
and nobody holding only the warehouse can recover the id.

Why a namespace: the same number may be an agent id and a customer id; hashing the namespace in
keeps unrelated ids from colliding and keeps one kind of id from being joined to another.

Why a version prefix (`k1:`): when the key is rotated, old and new pseudonyms must be told apart
instead of silently failing to join.

Why a chain of keys: a keyed pseudonym cannot be recomputed from the stored value, and the raw
id is gone by design, so a rotation cannot start from the id again. A new key is added instead
of swapped in: the pseudonym under keys k1, k2 is the k1 pseudonym put through HMAC under k2
(`k2:` + HMAC(k2, "k1:...")). A stored `k1:` value is re-keyed to exactly what a fetch under
both keys computes for the same id, so joins hold across the rotation, and someone holding
only k1 can no longer compute anything the warehouse stores.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chat_assets.settings import KEY_VERSION, PII_KEY_ENV, KeyNames

KEY_ENV = PII_KEY_ENV
MIN_KEY_CHARS = 32

# Values that mean "no value" in UJET payloads: the vendor's model fills every field with
# "string" or 0, and other clients send "null"/"undefined" text. Hashing them would give every
# chat without a customer the same fake customer. 0 (and "0", "000") is a placeholder because
# UJET numbers its records from 1: an id of 0 never names a real record.
PLACEHOLDERS = frozenset({"", "string", "null", "none", "nil", "undefined", "nan", "n/a"})

_REKEY = b"rekey\x00"
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


def _digest(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


class UnknownKeyVersion(ValueError):
    """A stored pseudonym's version is not among the configured keys; names the version only."""


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms under a chain of secret keys (usually one); the keys never leave
    this object.

    `previous` are the keys used before the current one, oldest first, each with its version:
    a pseudonym is made under the oldest and re-keyed under each later key in turn.
    """

    __slots__ = ("_chain", "version")

    def __init__(
        self, key: bytes, version: str = "k1", previous: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        chain = [*previous, (version, key)]
        for chain_version, chain_key in chain:
            if not isinstance(chain_key, bytes) or len(chain_key) < MIN_KEY_CHARS:
                raise ValueError(f"a pseudonym key must be at least {MIN_KEY_CHARS} bytes")
            if not KEY_VERSION.fullmatch(chain_version):
                raise ValueError("a key version is 1-16 letters, digits, '-' or '_'")
        if len({v for v, _ in chain}) < len(chain):
            raise ValueError("each key of the chain needs a version of its own")
        if len({k for _, k in chain}) < len(chain):
            raise ValueError("each key of the chain must differ from the others")
        self._chain = tuple(chain)
        self.version = version

    @property
    def versions(self) -> tuple[str, ...]:
        """The versions of the chain, oldest first; the last is the current one."""
        return tuple(v for v, _ in self._chain)

    def pseudonym(self, namespace: str, value: Any) -> str | None:
        """`version:32 hex` for a present identifier; None for null, empty or placeholder."""
        versions = self.every_version(namespace, value)
        return versions[-1] if versions else None

    def every_version(self, namespace: str, value: Any) -> tuple[str, ...]:
        """The pseudonym of an identifier under each key of the chain, oldest first (the last
        is `pseudonym`): rows a rotation has not re-keyed yet hold an earlier one. Empty for
        null, empty or placeholder."""
        if not namespace or "\x00" in namespace:
            raise ValueError("a namespace is a non-empty name without NUL characters")
        text = normalize(value)
        if text is None:
            return ()
        first_version, first_key = self._chain[0]
        digest = _digest(first_key, f"{namespace}\x00{text}".encode())
        return tuple(self._steps(f"{first_version}:{digest}", 0))

    def rekey(self, pseudonym: str) -> str:
        """The stored pseudonym as the current key makes it: itself when it carries the current
        version, else put through every later key of the chain. Its namespace is hashed in
        already, so none is needed. A version not in the chain raises `UnknownKeyVersion`."""
        version = pseudonym.partition(":")[0]
        if version not in self.versions:
            raise UnknownKeyVersion(
                f"a pseudonym under key version {version!r}, which is not configured "
                f"(configured: {', '.join(self.versions)})"
            )
        return self._steps(pseudonym, self.versions.index(version))[-1]

    def _steps(self, pseudonym: str, position: int) -> list[str]:
        """The pseudonym made under the chain's key at `position`, then put through each later
        key in turn: one value per key from there on."""
        found = [pseudonym]
        # _REKEY keeps a step's message apart from a first pseudonym's (namespace, NUL).
        for version, key in self._chain[position + 1 :]:
            found.append(f"{version}:{_digest(key, _REKEY + found[-1].encode())}")
        return found

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The fingerprint of each key of the chain with those before it, oldest first: what
        raw_chats records of the keys that made a payload. One key's is its fingerprint alone,
        as before chains existed."""
        found: list[str] = []
        for version, key in self._chain:
            message = b"fingerprint" + (b"\x00" + found[-1].encode() if found else b"")
            found.append(f"{version}:{hmac.new(key, message, hashlib.sha256).hexdigest()[:16]}")
        return tuple(found)

    @property
    def fingerprint(self) -> str:
        """Tells keys apart in metadata without revealing them.

        The first key's message holds no NUL, so it never equals a pseudonym's input; a later
        key's starts "fingerprint", never "rekey", so it never equals a re-keying step's.
        """
        return self.fingerprints[-1]

    def __repr__(self) -> str:
        return f"Pseudonymizer(versions={self.versions!r}, fingerprint={self.fingerprint!r})"


MIN_DISTINCT_BYTES = 10
# Keys shown in documentation: anyone can read them, so they protect no one.
EXAMPLE_KEYS = frozenset({"0123456789abcdef" * 2, "0123456789abcdef" * 4})
_HOW = "make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"


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
    env_value: str | None,
    *,
    key_file: Path | None,
    allow_create: bool,
    names: KeyNames | None = None,
) -> tuple[bytes, str]:
    """The pseudonym key and a note saying where it came from (never the key itself).

    `env_value` is the key's variable (CHAT_ASSETS_PII_KEY, or the one a tenant's pii_key_env
    names, as `names` says in messages): at least 32 characters of hex or any text, used as its
    UTF-8 bytes. Without it, only the embedded demo (`allow_create`) may fall back to a local
    key file, created with 64 random hex characters and mode 0600 on first use; a real UJET
    source must be given a key, because pseudonyms made with a throwaway key never join again.
    """
    where = (names or KeyNames()).key_label
    if env_value is not None and env_value.strip():
        return _checked(env_value.strip(), where), f"key from {where}"
    if not allow_create:
        raise PrivacyKeyError(
            f"{where} is not set: a real UJET source needs a secret key for pseudonyms "
            "(see docs/personal-data.md)"
        )
    if key_file is None:
        raise PrivacyKeyError(f"{where} is not set and no local key file was given")
    created = _create_key_file(key_file)
    text = key_file.read_text(encoding="utf-8").strip()
    key = _checked(text, f"key file {key_file}")
    note = "created local key file" if created else "key from local key file"
    return key, f"{note} {key_file}"


def load_previous_keys(
    env_value: str | None, names: KeyNames | None = None
) -> tuple[tuple[str, bytes], ...]:
    """The previous keys' variable (CHAT_ASSETS_PII_PREVIOUS_KEYS, or a tenant's, as `names`
    says in messages): the keys used before the current one, oldest first, as `VERSION:KEY`
    entries separated by commas (`k1:...,k2:...`); unset or empty: none. Each key is held to
    the current key's standard; messages name versions and positions, never keys."""
    if env_value is None or not env_value.strip():
        return ()
    where = (names or KeyNames()).previous_label
    previous = []
    for position, entry in enumerate(env_value.split(","), start=1):
        version, found, text = entry.strip().partition(":")
        if not found or not KEY_VERSION.fullmatch(version):
            raise PrivacyKeyError(
                f"{where}: entry {position} is not VERSION:KEY (a version of 1-16 "
                "letters, digits, '-' or '_', e.g. k1:<the old key>), entries separated by commas"
            )
        previous.append((version, _checked(text.strip(), f"{where}: the key of version {version}")))
    versions = [v for v, _ in previous]
    if len(set(versions)) < len(versions):
        raise PrivacyKeyError(f"{where} names a key version twice")
    return tuple(previous)


def chain_problem(
    key: bytes,
    version: str,
    previous: Sequence[tuple[str, bytes]],
    names: KeyNames | None = None,
) -> str | None:
    """Why the current key cannot follow the previous ones (one line, no key); None if it can."""
    names = names or KeyNames()
    if version in {v for v, _ in previous}:
        return (
            f"{names.label(f'{names.version}={version}')} is also a version in "
            f"{names.previous_label}: give the new key a new version (e.g. k2)"
        )
    if key in {k for _, k in previous}:
        return f"{names.key_label} is also a key in {names.previous_label}: the new key must be new"
    return None


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
