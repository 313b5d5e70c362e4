"""Guards that look for personal data after sanitizing: a canary and pattern scans.

Why both: the catalog decides by field name, so it cannot see a customer's email echoed into a
field declared safe (a status text, a menu message). The canary finds the exact raw values that
sanitizing held back; the patterns find contact data that was never known to be sensitive.

Results are counts and column names only. A guard that printed what it found would itself copy
personal data into logs and Dagster metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
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

PG_PATTERNS: dict[str, str] = {
    # local@domain.tld; the TLD has letters only, so "v1.2@3.4" is not an email.
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}",
    # Bare 10-digit runs are left out on purpose: they cannot be told apart from ids.
    "phone": f"{_PHONE_START}({_PHONE_FORMS}){_PHONE_END}",
    # An http(s) link with something after the scheme.
    "url": r"[Hh][Tt][Tt][Pp][Ss]?://[^ \t\r\n/?#]+",
}

PATTERNS: dict[str, re.Pattern[str]] = {kind: re.compile(p) for kind, p in PG_PATTERNS.items()}


def find_personal(text: Any) -> set[str]:
    """The kinds of contact data ("email", "phone", "url") that a text holds."""
    if not isinstance(text, str):
        return set()
    return {kind for kind, pattern in PATTERNS.items() if pattern.search(text)}


def watchlist(sensitive: Iterable[str], allow: Iterable[str] = ()) -> frozenset[str]:
    """The sensitive values worth watching: stripped, long enough, and not allow-listed.

    `allow` holds configuration values that may legitimately equal a sensitive one (a menu or
    queue name that happens to equal an agent's name).
    """
    allowed = {a.strip() for a in allow}
    values = (s.strip() for s in sensitive if isinstance(s, str))
    return frozenset(v for v in values if len(v.encode()) >= MIN_CANARY_BYTES and v not in allowed)


def _hits(watched: frozenset[str], cells: Iterable[Any]) -> int:
    return sum(1 for cell in cells if isinstance(cell, str) and cell.strip() in watched)


def leak_count(sensitive: Iterable[str], cells: Iterable[Any], allow: Iterable[str] = ()) -> int:
    """How many text cells equal a sensitive value (exact, after stripping)."""
    return _hits(watchlist(sensitive, allow), cells)


def leaked_columns(
    sensitive: Iterable[str],
    frame_columns: Mapping[str, Iterable[Any]],
    allow: Iterable[str] = (),
) -> dict[str, int]:
    """Column -> number of text cells equal to a sensitive value; clean columns are left out.

    Exact equality: a canary looks for a value copied whole into a cell, not for substrings
    (that is what the patterns are for), so "Billing" never trips over "Billing team".
    """
    watched = watchlist(sensitive, allow)
    counts = {name: _hits(watched, cells) for name, cells in frame_columns.items()}
    return {name: n for name, n in counts.items() if n}


def json_strings(document: Any) -> Iterator[str]:
    """Every string (keys too) in a JSON document, so a payload column can be canaried.

    Accepts parsed JSON, or JSON text as bytes (how jsonb payloads load into pandas).
    """
    if isinstance(document, bytes | bytearray | memoryview):
        document = json.loads(bytes(document))
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield str(key)
            yield from json_strings(value)
    elif isinstance(document, list):
        for item in document:
            yield from json_strings(item)
