"""The grammar of values UJET sends as text, stated once.

The flattening SQL (`chat_assets.warehouse.flatten_sql`) renders these patterns and sets, the
tests' reference flattening reads by them, and `parse_instant` is the one reader of UJET's
timestamps on their way in.
"""

from __future__ import annotations

from datetime import UTC, datetime

WHITESPACE = " \t\n\r\f\v"
NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?"
TIMESTAMP = (
    r"([1-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"(?:[T ]([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9])(?:\.([0-9]{1,6}))?)?"
    r"(Z|[+-](?:0[0-9]|1[0-4])(?::?[0-5][0-9])?)?)?"
)
TRUE = ("true", "t", "1", "yes", "y")
FALSE = ("false", "f", "0", "no", "n")
# Doubles are kept between these magnitudes (or zero): beyond them PostgreSQL refuses the value.
SMALLEST_DOUBLE = 1e-307
LARGEST_DOUBLE = 1.7976931348623157e308
# Exclusive magnitude bounds of the integer column types, by their PostgreSQL names.
INT_BOUNDS = {"bigint": 2**63, "integer": 2**31}


def parse_instant(value: object) -> datetime | None:
    """UJET's ISO-8601 times (`2019-07-17T07:27:14.000Z`) as aware UTC datetimes; a time without
    an offset is UTC, as the API documents its times. None when the value is not one."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
