"""Guards that look for personal data after sanitizing: a canary and pattern scans.

Why both: the catalog decides by field name, so it cannot see a customer's email echoed into a
field declared safe (a status text, a menu message). The canary finds the exact raw values that
sanitizing held back; the patterns find contact data that was never known to be sensitive.

Results are counts and column names only. A guard that printed what it found would itself copy
personal data into logs and Dagster metadata.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# Canary values shorter than this many UTF-8 bytes are ignored: "en", "1" or "007" match
# everywhere by chance. Bytes rather than characters so a three-syllable Korean name (9 bytes,
# as specific as a long Latin name) is still watched; for ASCII it is 4 characters.
MIN_CANARY_BYTES = 4

# Each pattern is written once in the syntax that Python's re and PostgreSQL's regular
# expressions (POSIX ARE) share: [0-9] rather than \d (Unicode digits in Python), explicit case
# in brackets rather than flags, no lookaround (PostgreSQL has no lookbehind). A match only has
# to exist, so the two engines' different choices of match never change the answer.

# Before and after a phone number: no letter or digit (no "+" before, no "." joined to a digit)
# so ids, decimals, UUIDs and timestamps are not read as phone numbers.
_PHONE_START = r"(^|[^0-9A-Za-z.+]|[^0-9][.])"
_PHONE_END = r"([^0-9A-Za-z.]|[.]([^0-9]|$)|$)"
_PHONE_FORMS = "|".join(
    (
        r"\+[1-9][0-9]{7,14}",  # E.164: +14155550134
        r"\+[1-9][0-9]{0,2}[ .-]\(?[0-9]{1,4}\)?([ .-][0-9]{2,4}){2,3}",  # +1 415 555 0134
        r"\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}",  # (415) 555-0134
        r"[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}",  # 415-555-0134, 415.555.0134
        r"01[016789][ .-]?[0-9]{3,4}[ .-]?[0-9]{4}",  # Korean mobile: 010-1234-5678, 01012345678
    )
)

# Like phone numbers, RRNs and cards stand apart from letters and digits, so hex pseudonyms,
# UUIDs and ids are not read as them.
# A Korean resident registration number: YYMMDD, a hyphen or not, a sex-and-century digit
# (1-8) and six more. The check digit is not verified: numbers issued since 2020 have none.
_RRN = (
    r"(^|[^0-9A-Za-z])([0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[ -]?[1-8][0-9]{6})"
    r"([^0-9A-Za-z]|$)"
)
# A payment card as people write it: four groups of four digits (or Amex's 4-6-5), separated
# by spaces or hyphens. In Python, any 13 to 19 digits (so separated or not) that pass Luhn's
# check count too (`_card_numbers`); SQL has no Luhn, so its scan keeps to the grouped forms.
_CARD = (
    r"(^|[^0-9A-Za-z])([0-9]{4}([ -][0-9]{4}){3}|[0-9]{4}[ -][0-9]{6}[ -][0-9]{5})"
    r"([^0-9A-Za-z]|$)"
)

PG_PATTERNS: dict[str, str] = {
    # local@domain.tld; the TLD has letters only, so "v1.2@3.4" is not an email.
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}",
    # Bare 10-digit runs are left out on purpose: they cannot be told apart from ids.
    "phone": f"{_PHONE_START}({_PHONE_FORMS}){_PHONE_END}",
    "rrn": _RRN,
    "card": _CARD,
    # An http(s) link with something after the scheme.
    "url": r"[Hh][Tt][Tt][Pp][Ss]?://[^ \t\r\n/?#]+",
}

PATTERNS: dict[str, re.Pattern[str]] = {kind: re.compile(p) for kind, p in PG_PATTERNS.items()}
# The group of each pattern that is the value itself (the others hold its boundaries).
_VALUE_GROUP = {"email": 0, "phone": 2, "rrn": 2, "card": 2, "url": 0}
# What replaces a match in kept text; links are not redacted (kept fields hold none by design,
# and the scans report one if it appears).
REDACTED_KINDS = ("email", "phone", "rrn", "card")

# Characters that change no letter but hide a pattern: format and zero-width characters (soft
# hyphen, zero-width space and joiners, direction marks and embeddings, word joiner, BOM).
# Removed after NFKC, before every pattern, in Python and in PostgreSQL alike.
FORMAT_CHARACTERS = (
    "\u00ad\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
_FORMAT = re.compile(f"[{FORMAT_CHARACTERS}]")
_WITHOUT_DIGITS = str.maketrans("", "", "0123456789")
# The fewest digits any phone, RRN or card pattern matches: "+1 2 34 56" (E.164 with spaces).
MIN_DIGITS = 6
# An ISO 8601 instant, as every timestamp of the API reads, matches no pattern: its digit runs
# are at most four long (nine after the seconds' dot, which follows two digits) and are joined
# by "-", ":" and "T", never as a phone number, an RRN or a card number.
INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?"
)
# Not inside a word: hex pseudonyms and ids hold long digit runs that pass Luhn by chance.
_CARD_DIGITS = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])")


def normalized(text: str) -> str:
    """The one form every pattern reads: NFKC (a fullwidth at sign reads as @), then format
    characters removed."""
    if text.isascii():
        return text  # ASCII is its own NFKC and holds none of the format characters
    return _FORMAT.sub("", unicodedata.normalize("NFKC", text))


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _card_numbers(text: str) -> list[tuple[int, int]]:
    """Spans of 13 to 19 digits (spaces or hyphens between them allowed) that pass Luhn."""
    spans = []
    for match in _CARD_DIGITS.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if _luhn(digits):
            spans.append(match.span())
    return spans


def _spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every match in normalized text, for every kind."""
    found = [
        (*m.span(_VALUE_GROUP[kind]), kind)
        for kind, pattern in PATTERNS.items()
        for m in pattern.finditer(text)
    ]
    found += [(start, end, "card") for start, end in _card_numbers(text)]
    return found


def _may_hold_personal(clean: str) -> bool:
    """False when no pattern can match the normalized text: every email has an @, every link
    "://", and every number of these kinds at least MIN_DIGITS digits; an instant has none."""
    if "@" in clean or "://" in clean:
        return True
    digits = len(clean) - len(clean.translate(_WITHOUT_DIGITS))
    return digits >= MIN_DIGITS and INSTANT.fullmatch(clean) is None


def find_personal(text: Any) -> set[str]:
    """The kinds of personal data ("email", "phone", "rrn", "card", "url") a text holds,
    read in its normalized form."""
    if not isinstance(text, str):
        return set()
    clean = normalized(text)
    if not _may_hold_personal(clean):
        return set()
    return {kind for _, _, kind in _spans(clean)}


def redact(text: str) -> tuple[str, list[str]]:
    """The text with every email, phone number, resident registration number and card number
    replaced by a typed marker (`[email]`, ...), and the kinds replaced, one per match. Text
    with nothing to replace comes back as it was; text with something, normalized."""
    clean = normalized(text)
    if not _may_hold_personal(clean):
        return text, []
    spans = sorted(
        (span for span in _spans(clean) if span[2] in REDACTED_KINDS), key=lambda s: (s[0], -s[1])
    )
    if not spans:
        return text, []
    parts, kinds, at = [], [], 0
    for start, end, kind in spans:
        if start < at:
            continue  # inside a match already replaced (a card number is also digits)
        parts += [clean[at:start], f"[{kind}]"]
        kinds.append(kind)
        at = end
    parts.append(clean[at:])
    return "".join(parts), kinds


def watchlist(sensitive: Iterable[str], allow: Iterable[str] = ()) -> frozenset[str]:
    """The sensitive values worth watching: stripped, long enough, and not allow-listed.

    `allow` holds configuration values that may legitimately equal a sensitive one (a menu or
    queue name that happens to equal an agent's name).
    """
    allowed = {a.strip() for a in allow}
    values = (s.strip() for s in sensitive if isinstance(s, str))
    return frozenset(v for v in values if len(v.encode()) >= MIN_CANARY_BYTES and v not in allowed)
