"""The privacy ledger: an append-only record of what was done with the key and to whom, without
saying to whom.

`<schema>._privacy_ledger` gets one row per erasure (request ref, mode, rows per table), one
per retention run (rows per kind and table), one per key rotation (rows re-keyed per table) and
one per use of the `pseudonym` command (the namespace asked about), each with the key version it
used where it used one, so an operator can show
what was processed and when (GDPR Art. 30, PIPA Art. 28-4). It never holds an id or a
pseudonym: a request ref that looks like either is refused before anything runs. A trigger
refuses UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from chat_assets.privacy import bookkeeping

LEDGER_TABLE = "_privacy_ledger"
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,79}$")
_LOOKS_PSEUDONYMOUS = re.compile(r"[0-9a-f]{32}", re.IGNORECASE)  # a pseudonym's digest


class LedgerRefError(ValueError):
    """A request ref the ledger cannot hold; the message never repeats the ref or the id."""


def checked_ref(ref: str, subject_id: str | None = None) -> str:
    """The request ref as the ledger keeps it: a ticket number of the request, never the
    subject's id or a pseudonym."""
    ref = ref.strip()
    if not _REF.match(ref):
        raise LedgerRefError(
            "--ref must be 1 to 80 letters, digits and . _ : / # -, starting with a letter or "
            "digit: the ticket number of the request, e.g. DSR-2026-0012"
        )
    if _LOOKS_PSEUDONYMOUS.search(ref):
        raise LedgerRefError("--ref holds a long hexadecimal run, like a pseudonym: use the ticket")
    if subject_id is not None and len(subject_id.strip()) >= 3 and subject_id.strip() in ref:
        raise LedgerRefError("--ref holds the subject's id, which the ledger never keeps")
    return ref


def _table(schema: str) -> sql.Composed:
    return bookkeeping.qualified(schema, LEDGER_TABLE)


def _has_key_version(cursor: Any, schema: str) -> bool:
    return (
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = %s AND column_name = 'key_version'",
            (schema, LEDGER_TABLE),
        ).fetchone()
        is not None
    )


def ensure(cursor: Any, schema: str) -> None:
    """The ledger and its append-only trigger (and the key version column, added to a ledger
    made before it)."""
    if bookkeeping.exists(cursor, schema, LEDGER_TABLE):
        if not _has_key_version(cursor, schema):
            cursor.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS key_version text").format(
                    _table(schema)
                )
            )
        return
    bookkeeping.ensure_table(
        cursor,
        schema,
        LEDGER_TABLE,
        "entry bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " at timestamptz NOT NULL DEFAULT now(), action text NOT NULL, request_ref text,"
        " namespace text, mode text, also_future boolean, counts jsonb NOT NULL DEFAULT '{}',"
        " key_version text",
    )
    refuse = sql.Identifier(schema, "_privacy_ledger_append_only")
    cursor.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'the privacy ledger is append-only'; END$$"
        ).format(refuse)
    )
    for name, events, level in (
        ("_privacy_ledger_no_change", "UPDATE OR DELETE", "ROW"),
        ("_privacy_ledger_no_truncate", "TRUNCATE", "STATEMENT"),
    ):
        cursor.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE {} ON {} FOR EACH {} EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(name), sql.SQL(events), _table(schema), sql.SQL(level), refuse)
        )


def append(
    cursor: Any,
    schema: str,
    action: str,
    *,
    ref: str | None = None,
    namespace: str | None = None,
    mode: str | None = None,
    also_future: bool | None = None,
    counts: dict[str, int] | None = None,
    key_version: str | None = None,
) -> None:
    """One row, in the caller's transaction: it commits with what it records."""
    cursor.execute(
        sql.SQL(
            "INSERT INTO {} (action, request_ref, namespace, mode, also_future, counts,"
            " key_version) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        ).format(_table(schema)),
        (action, ref, namespace, mode, also_future, Jsonb(counts or {}), key_version),
    )
