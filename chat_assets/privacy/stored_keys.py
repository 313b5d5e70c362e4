"""Which keys the stored payloads were pseudonymised under, by the fingerprint each raw version
records (`raw_chats.pii_key`): counts only, never a key or a pseudonym."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from chat_assets.tables import RAW_CHATS, RAW_PII_KEY
from chat_assets.warehouse.sql_parts import qualified


def other_keys(cursor: Any, schema: str, fingerprint: str) -> dict[str, int]:
    """Rows of raw_chats per fingerprint other than `fingerprint`. Only those rows are read (two
    ranges of the column's index), so the work does not grow with the history while every
    payload agrees."""
    query = sql.SQL("SELECT {0}, count(*) FROM {1} WHERE {0} < %s OR {0} > %s GROUP BY {0}").format(
        sql.Identifier(RAW_PII_KEY), qualified(schema, RAW_CHATS)
    )
    return dict(cursor.execute(query, (fingerprint, fingerprint)).fetchall())
