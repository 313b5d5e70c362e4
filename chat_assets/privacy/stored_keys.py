"""Which keys the stored payloads were pseudonymised under, by the fingerprint each raw version
records (`raw_chats.pii_key`): counts only, never a key or a pseudonym."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from chat_assets.tables import RAW_CHATS, RAW_PII_KEY
from chat_assets.warehouse.sql_parts import qualified


def under_other_key(fingerprint: str) -> sql.Composed:
    """SQL: raw_chats rows under another fingerprint, as two ranges of its index, so the work
    does not grow with the history while every payload agrees."""
    column = sql.Identifier(RAW_PII_KEY)
    return sql.SQL("({0} < {1} OR {0} > {1})").format(column, sql.Literal(fingerprint))


def other_keys(cursor: Any, schema: str, fingerprint: str) -> dict[str, int]:
    """Rows of raw_chats per fingerprint other than `fingerprint`."""
    query = sql.SQL("SELECT {0}, count(*) FROM {1} WHERE {2} GROUP BY {0}").format(
        sql.Identifier(RAW_PII_KEY), qualified(schema, RAW_CHATS), under_other_key(fingerprint)
    )
    return dict(cursor.execute(query).fetchall())


def unknown_keys(cursor: Any, schema: str, chain: tuple[str, ...]) -> dict[str, int]:
    """Rows of raw_chats per fingerprint that is none of a key chain's (`chain`: its
    fingerprints, oldest first): pseudonyms under those keys cannot be made or re-keyed by it."""
    return {fp: n for fp, n in other_keys(cursor, schema, chain[-1]).items() if fp not in chain}
