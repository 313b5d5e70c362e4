"""The suppression list: erased subjects stay erased, whatever lands later.

An erasure (`chat_assets.privacy.erasure`) records the pseudonyms of the subject it erased in
`<schema>._erased_subjects`, never the raw ids. Every landing then applies the list twice: in
memory, right after sanitizing, to the chats it fetched (read when the fetch starts), and in
SQL, in the landing's own transaction, to the window's stored rows (read then), so that an
erasure recorded while a run was fetching holds once that run lands. A chat is the subject's
when any of its customer pseudonyms is on the list: `unlink` sets every customer pseudonym of
the chat to null, as sanitizing does with a placeholder; `delete` drops the chat.

Without `also_future` an entry covers past data only: chats created before the erasure (and
chats whose creation time cannot be read). Later versions of those chats are covered too, so a
re-fetch never re-links them; a chat the subject opens after the erasure is not.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import dagster as dg
import sqlalchemy as sa
from psycopg import sql
from psycopg.types.json import Jsonb

from chat_assets.grammar import parse_instant
from chat_assets.privacy import bookkeeping
from chat_assets.privacy.catalog import Rule
from chat_assets.privacy.lookup import CUSTOMER_PSEUDONYMS, customer_columns
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.stored_keys import unknown_keys
from chat_assets.settings import KeyNames
from chat_assets.tables import (
    CHAT_ID_FIELD,
    CHATS,
    RAW_CHATS,
    RAW_PARTITION,
    RAW_PAYLOAD,
    TABLES,
    Table,
)
from chat_assets.warehouse.bookkeeping import count_rows
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.sql_parts import qualified

SUPPRESSION_TABLE = "_erased_subjects"
NO_ERASED_SUBJECT = "no_erased_subject"
EXAMPLES = 5
_PSEUDONYM = re.compile(r"^([A-Za-z0-9_-]{1,16}):[0-9a-f]{32}$")


class Mode(StrEnum):
    """What an erasure does to the subject's chats."""

    UNLINK = "unlink"  # the chats and their facts stay, without any customer pseudonym
    DELETE = "delete"  # the chats leave every table


# The flattened tables that hold customer pseudonyms (`chats`).
LINKED_TABLES: tuple[Table, ...] = tuple(t for t in TABLES.values() if customer_columns(t))


def _at(value: Any, parts: list[str]) -> Iterator[Any]:
    """The values at a catalog path (`participants[].end_user_id`) under `value`."""
    if not parts:
        yield value
        return
    if not isinstance(value, dict):
        return
    head, rest = parts[0], parts[1:]
    child = value.get(head.removesuffix("[]"))
    if head.endswith("[]"):
        for item in child if isinstance(child, list) else ():
            yield from _at(item, rest)
    else:
        yield from _at(child, rest)


def held_pseudonyms(record: Mapping[str, Any]) -> set[str]:
    """The customer pseudonyms a sanitized chat holds."""
    return {
        value
        for rule in CUSTOMER_PSEUDONYMS
        for value in _at(record, rule.path.split("."))
        if isinstance(value, str)
    }


def _cleared(value: Any, parts: list[str]) -> tuple[Any, int]:
    """`value` with every non-null value at the path set to null (a new object where anything
    changed), and how many were."""
    if not isinstance(value, dict):
        return value, 0
    head, rest = parts[0], parts[1:]
    name = head.removesuffix("[]")
    child = value.get(name)
    if head.endswith("[]") and isinstance(child, list):
        items = [_cleared(item, rest) if rest else (None, item is not None) for item in child]
        changed = sum(n for _, n in items)
        return ({**value, name: [item for item, _ in items]}, changed) if changed else (value, 0)
    if head.endswith("[]") or child is None:
        return value, 0
    if not rest:
        return {**value, name: None}, 1
    new, changed = _cleared(child, rest)
    return ({**value, name: new}, changed) if changed else (value, 0)


def unlinked(
    record: dict[str, Any], rules: tuple[Rule, ...] = CUSTOMER_PSEUDONYMS
) -> tuple[dict[str, Any], int]:
    """A copy of the chat without any pseudonym of the rules (customers' unless told; null, as
    sanitizing leaves an absent id), and how many values were removed; the chat itself when it
    holds none."""
    removed = 0
    for rule in rules:
        record, n = _cleared(record, rule.path.split("."))
        removed += n
    return record, removed


@dataclass(frozen=True)
class Erased:
    """One pseudonym on the list, and how it was erased."""

    pseudonym: str
    mode: Mode
    erased_at: datetime
    also_future: bool

    def covers(self, created_at: datetime | None) -> bool:
        """Whether the erasure reaches a chat created then (None: not known, so it does)."""
        return self.also_future or created_at is None or created_at < self.erased_at


@dataclass(frozen=True)
class Suppression:
    """The suppression list, as read at one moment: pure decisions on chats."""

    entries: Mapping[str, Erased]

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def pseudonyms(self) -> list[str]:
        return sorted(self.entries)

    def versions(self) -> set[str]:
        """The key versions (`k1`) the list's pseudonyms were made under."""
        return {m.group(1) for p in self.entries if (m := _PSEUDONYM.match(p))}

    def decide(self, held: Iterable[str], created_at: datetime | None) -> Mode | None:
        """What the list does to a chat holding these pseudonyms: delete wins over unlink."""
        covering = [
            e for p in held if (e := self.entries.get(p)) is not None and e.covers(created_at)
        ]
        if not covering:
            return None
        return Mode.DELETE if any(e.mode is Mode.DELETE for e in covering) else Mode.UNLINK

    def action(self, record: Mapping[str, Any]) -> Mode | None:
        """What the list does to a sanitized chat."""
        return self.decide(held_pseudonyms(record), parse_instant(record.get("created_at")))

    def apply(
        self, records: Iterable[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], Counter[Mode]]:
        """The sanitized chats as the list leaves them, and how many it unlinked or dropped."""
        kept: list[dict[str, Any]] = []
        done: Counter[Mode] = Counter()
        for record in records:
            mode = self.action(record) if self.entries else None
            if mode is Mode.DELETE:
                done[mode] += 1
                continue
            if mode is Mode.UNLINK:
                record, removed = unlinked(record)
                if removed:
                    done[mode] += 1
            kept.append(record)
        return kept, done


EMPTY = Suppression({})


def counted(done: Counter[Mode]) -> dg.MetadataValue:
    """What the list did to a run's chats, as metadata: counts only."""
    return dg.MetadataValue.json({"unlinked": done[Mode.UNLINK], "dropped": done[Mode.DELETE]})


def _table(schema: str) -> sql.Composed:
    return bookkeeping.qualified(schema, SUPPRESSION_TABLE)


def ensure(cursor: Any, schema: str) -> None:
    bookkeeping.ensure_table(
        cursor,
        schema,
        SUPPRESSION_TABLE,
        "pseudonym text PRIMARY KEY, mode text NOT NULL, also_future boolean NOT NULL,"
        " erased_at timestamptz NOT NULL, request_ref text NOT NULL",
    )


def read(cursor: Any, schema: str) -> Suppression:
    """The list as this statement sees it (empty before the first erasure)."""
    if not bookkeeping.exists(cursor, schema, SUPPRESSION_TABLE):
        return EMPTY
    rows = cursor.execute(
        sql.SQL("SELECT pseudonym, mode, erased_at, also_future FROM {}").format(_table(schema))
    ).fetchall()
    return Suppression({p: Erased(p, Mode(m), at, future) for p, m, at, future in rows})


def load(
    engine: sa.Engine, schema: str, pseudonymizer: Pseudonymizer, names: KeyNames | None = None
) -> Suppression:
    """The list at the start of a fetch. Pseudonyms made under another key never match, so a
    list holding any would silently stop holding: the run fails instead, saying what to do.
    Under the current version that shows only in raw_chats: rows made under a key the chain
    does not hold (a key swapped without the old one) mean the list was made under it too."""
    key_version = pseudonymizer.version
    with cursor_for(engine) as cursor:
        suppression = read(cursor, schema)
        unknown = unknown_keys(cursor, schema, pseudonymizer.fingerprints) if suppression else {}
    if others := sorted(suppression.versions() - {key_version}):
        raise dg.Failure(
            f"The suppression list holds erased subjects under key version(s) {others}, not the "
            f"current {key_version}: their pseudonyms no longer match. Finish the key rotation "
            "first (python -m chat_assets.privacy rotate), which re-keys the list with the rest."
        )
    if unknown:
        names = names or KeyNames()
        raise dg.Failure(
            f"The suppression list holds erased subjects, and raw_chats holds "
            f"{sum(unknown.values())} rows made under keys the configured chain does not hold "
            f"(fingerprints {', '.join(sorted(unknown))}; this key's: {pseudonymizer.fingerprint})"
            ": under this key the erased subjects would not be recognised and would land linked. "
            f"Keep the key that made them in {names.previous_label} (oldest first), give the new "
            f"key a new version, and run python -m chat_assets.privacy rotate."
        )
    return suppression


def erased_before(cursor: Any, schema: str, pseudonyms: Sequence[str]) -> tuple[Mode, str] | None:
    """The mode and request ref under which one of a subject's pseudonyms (one per key of the
    chain) went on the list, if one is on it."""
    row = cursor.execute(
        sql.SQL("SELECT mode, request_ref FROM {} WHERE pseudonym = ANY(%s) LIMIT 1").format(
            _table(schema)
        ),
        (list(pseudonyms),),
    ).fetchone()
    return None if row is None else (Mode(row[0]), row[1])


def record(
    cursor: Any,
    schema: str,
    pseudonyms: Iterable[str],
    mode: Mode,
    *,
    also_future: bool,
    ref: str,
) -> None:
    """Put pseudonyms on the list (again: the stronger mode and the wider reach win)."""
    cursor.execute(
        sql.SQL(
            "INSERT INTO {t} AS s (pseudonym, mode, also_future, erased_at, request_ref)"
            " SELECT p, %s, %s, now(), %s FROM unnest(%s::text[]) AS p"
            " ON CONFLICT (pseudonym) DO UPDATE SET"
            " mode = CASE WHEN s.mode = 'delete' THEN s.mode ELSE EXCLUDED.mode END,"
            " also_future = s.also_future OR EXCLUDED.also_future,"
            " erased_at = EXCLUDED.erased_at, request_ref = EXCLUDED.request_ref"
        ).format(t=_table(schema)),
        (mode.value, also_future, ref, sorted(pseudonyms)),
    )


def payload_holds(payload: sql.Composable) -> sql.Composed:
    """SQL: the JSONB chat holds a customer pseudonym of `%(pseudonyms)s` (a text[])."""
    paths = [
        sql.SQL("SELECT v FROM jsonb_path_query({}, {}) AS v").format(
            payload, sql.Literal("$." + rule.path.replace("[]", "[*]"))
        )
        for rule in CUSTOMER_PSEUDONYMS
    ]
    return sql.SQL(
        "EXISTS (SELECT 1 FROM ({}) AS held(v) WHERE held.v #>> '{{}}' = ANY(%(pseudonyms)s))"
    ).format(sql.SQL(" UNION ALL ").join(paths))


def columns_hold(table: Table) -> sql.Composed:
    """SQL: a row of a flattened table holds a customer pseudonym of `%(pseudonyms)s`."""
    return sql.SQL(" OR ").join(
        sql.SQL("{} = ANY(%(pseudonyms)s)").format(sql.Identifier(c))
        for c in customer_columns(table)
    )


def linked_raw(
    cursor: Any, schema: str, pseudonyms: list[str], where: sql.Composable, params: dict[str, Any]
) -> list[tuple[str, int, dict[str, Any]]]:
    """(partition, chat id, payload) of the stored versions that hold any of the pseudonyms,
    among those `where` selects."""
    query = sql.SQL("SELECT {}, {}, {} FROM {} WHERE {} AND {}").format(
        sql.Identifier(RAW_PARTITION),
        sql.Identifier(CHAT_ID_FIELD),
        sql.Identifier(RAW_PAYLOAD),
        qualified(schema, RAW_CHATS),
        where,
        payload_holds(sql.Identifier(RAW_PAYLOAD)),
    )
    return cursor.execute(query, {**params, "pseudonyms": pseudonyms}).fetchall()


def rewrite_raw(
    cursor: Any,
    schema: str,
    versions: Iterable[tuple[str, int, dict[str, Any]]],
    mode: Mode,
    rules: tuple[Rule, ...] = CUSTOMER_PSEUDONYMS,
) -> int:
    """Unlink (the pseudonyms of the rules: customers' unless told) or delete these stored
    versions; returns the rows changed."""
    target = qualified(schema, RAW_CHATS)
    key = sql.SQL("{} = %s AND {} = %s").format(
        sql.Identifier(RAW_PARTITION), sql.Identifier(CHAT_ID_FIELD)
    )
    changed = 0
    for partition, chat_id, payload in versions:
        if mode is Mode.DELETE:
            cursor.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(target, key), (partition, chat_id)
            )
            changed += cursor.rowcount
            continue
        clean, removed = unlinked(payload, rules)
        if removed:
            cursor.execute(
                sql.SQL("UPDATE {} SET {} = %s WHERE {}").format(
                    target, sql.Identifier(RAW_PAYLOAD), key
                ),
                (Jsonb(clean), partition, chat_id),
            )
            changed += cursor.rowcount
    if mode is Mode.DELETE and changed:
        count_rows(cursor, schema, RAW_CHATS, -changed)
    return changed


def _window(table: Table) -> sql.Composed:
    time = sql.Identifier(table.time_column)
    return sql.SQL("{} >= %(start)s AND {} < %(end)s").format(time, time)


def reapply(cursor: Any, schema: str, start: datetime, end: datetime) -> tuple[int, dict[str, Any]]:
    """In a landing's transaction, once the window's rows are in place: the list as it is now,
    applied to them. Returns the rows it removed and the landing's metadata."""
    suppression = read(cursor, schema)
    done: Counter[Mode] = Counter()
    if suppression:
        found = linked_raw(
            cursor, schema, suppression.pseudonyms, _window(RAW_CHATS), {"start": start, "end": end}
        )
        for version in found:
            mode = suppression.action(version[2])
            if mode is not None:
                done[mode] += rewrite_raw(cursor, schema, [version], mode)
    return done[Mode.DELETE], {"erased_subjects_at_landing": counted(done)}


def erased_subject_spec(table: Table, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NO_ERASED_SUBJECT,
        asset=table.name,
        partitions_def=partitions,
        blocking=True,
        description="No chat of the partition is linked to a subject on the suppression list "
        "(by a customer pseudonym the erasure covers).",
    )


def erased_subject(
    engine: sa.Engine, schema: str, table: Table, start: datetime, end: datetime
) -> dg.AssetCheckResult:
    """Fails while a chat of the partition still links an erased subject: raw_chats by its
    payloads, a flattened table by its customer pseudonym columns. Names chats by id only."""
    with cursor_for(engine) as cursor:
        suppression = read(cursor, schema)
        linked: list[int] = []
        if suppression and table is RAW_CHATS:
            found = linked_raw(
                cursor, schema, suppression.pseudonyms, _window(table), {"start": start, "end": end}
            )
            linked = [chat_id for _, chat_id, payload in found if suppression.action(payload)]
        elif suppression:
            columns = customer_columns(table)
            # The chat's creation decides whether the erasure covers it (see `covers`); a list
            # item's chat is the row of chats it belongs to.
            created = sql.SQL("created_at")
            if table is not CHATS:
                created = sql.SQL("(SELECT c.created_at FROM {} AS c WHERE c.{} = {})").format(
                    qualified(schema, CHATS),
                    sql.Identifier(CHAT_ID_FIELD),
                    sql.Identifier(table.key[0]),
                )
            query = sql.SQL("SELECT {}, {}, {} FROM {} WHERE {} AND ({})").format(
                sql.Identifier(table.key[0]),
                created,
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                qualified(schema, table),
                _window(table),
                columns_hold(table),
            )
            rows = cursor.execute(
                query, {"start": start, "end": end, "pseudonyms": suppression.pseudonyms}
            ).fetchall()
            linked = [row[0] for row in rows if suppression.decide(row[2:], row[1])]
    return dg.AssetCheckResult(
        check_name=NO_ERASED_SUBJECT,
        asset_key=table.name,
        passed=not linked,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "erased_subjects_listed": len(suppression.entries),
            "linked_chats": len(linked),
            "chat_ids": dg.MetadataValue.json(sorted(linked)[:EXAMPLES]),
        },
    )
