"""Erase one data subject from the warehouse, in one transaction.

The subject is named by the pseudonym of its id (`end_user` or `crm_contact`), computed with
the key by the caller; the raw id never reaches this module, the database or any output. Its
chats are every chat, in any stored version or flattened row, holding that pseudonym, and its
pseudonyms are every customer pseudonym those chats hold (its CRM contact and tickets, other
end-user ids of the same contact). Then every chat holding any of them is:

- unlinked: every customer pseudonym of the chat becomes null in every stored version and in
  the flattened rows; the chat, its segments and the marts stay exactly as they were;
- or deleted: the chat leaves raw_chats, the flattened tables and the version registry, and
  the marts' days it touched are recomputed from the remaining facts.

The pseudonyms go on the suppression list, so the erasure holds (see `suppression`), and the
ledger gets the request ref, the mode and the rows per table. A dry run does all of it and rolls
back. Erasing again finds nothing: every count is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from chat_assets.plural import counted, noun
from chat_assets.privacy import bookkeeping, ledger, lookup, suppression
from chat_assets.privacy.lookup import customer_columns
from chat_assets.privacy.stored_keys import unknown_keys
from chat_assets.privacy.suppression import LINKED_TABLES, Mode
from chat_assets.tables import (
    AGGREGATE_TABLES,
    CHAT_ID_FIELD,
    DERIVED_TABLES,
    RAW_CHATS,
)
from chat_assets.warehouse import aggregates, newest_wins
from chat_assets.warehouse.bookkeeping import VERSIONS_TABLE, count_rows
from chat_assets.warehouse.sql_parts import qualified

# The kinds of id a subject is named by (a ticket names a request, not a person).
SUBJECT_NAMESPACES = ("end_user", "crm_contact")
REGISTRY = VERSIONS_TABLE


@dataclass(frozen=True)
class Request:
    """One erasure request: whom (by pseudonym), under which ref, and how."""

    namespace: str
    pseudonym: str
    ref: str
    mode: Mode = Mode.UNLINK
    also_future: bool = False
    # The fingerprints of the key chain that made `pseudonym`, current last: stored payloads
    # under any other key cannot be found by it, and the erasure is refused (empty: not checked).
    fingerprints: tuple[str, ...] = ()
    # The same id's pseudonyms under the chain's older keys: what rows hold that a rotation
    # has not re-keyed yet (a new key deployed, `rotate` still to run).
    earlier: tuple[str, ...] = ()


class ErasureRefused(Exception):
    """The erasure cannot find what it is asked to erase; nothing changed."""


@dataclass(frozen=True)
class Outcome:
    """What an erasure did (or, dry, would do): rows per table, no id, no pseudonym."""

    ref: str
    mode: Mode
    dry_run: bool
    chats: int
    rows: dict[str, int]
    days_recomputed: int
    # The mode and request ref of an earlier erasure of the subject, if any.
    erased_before: tuple[Mode, str] | None = None

    def report(self) -> str:
        """What the command prints."""
        verb = "would change" if self.dry_run else "changed"
        head = (
            f"erasure {self.ref}: {self.mode.value}"
            f"{' (dry run: nothing was changed)' if self.dry_run else ''}, "
            f"{counted(self.chats, 'chat')} of the subject"
        )
        marts = "+".join(a.name for a in AGGREGATE_TABLES)
        width = max(map(len, [*self.rows, marts]))
        lines = [head]
        if self.erased_before:
            mode, ref = self.erased_before
            lines.append(f"  the subject was erased before, under {ref} ({mode.value})")
        lines += [
            f"  {name:<{width}}  {n:>7} {noun(n, 'row')} {verb}" for name, n in self.rows.items()
        ]
        recomputed = "would be recomputed" if self.dry_run else "recomputed"
        days = self.days_recomputed
        lines.append(f"  {marts:<{width}}  {days:>7} {noun(days, 'day')} {recomputed}")
        return "\n".join(lines)


def erase(
    engine: sa.Engine,
    schema: str,
    request: Request,
    *,
    timezone: str,
    interval_minutes: int,
    dry: bool,
) -> Outcome:
    """Apply the request at once, in one transaction (rolled back when `dry`)."""
    if request.namespace not in SUBJECT_NAMESPACES:
        raise ValueError(f"a subject is named by one of {SUBJECT_NAMESPACES}")
    if dry and not bookkeeping.landed(engine, schema):
        return Outcome(request.ref, request.mode, dry, 0, {RAW_CHATS.name: 0}, 0)
    return bookkeeping.in_one_transaction(
        engine,
        schema,
        lambda cursor: _erase(cursor, schema, request, timezone, interval_minutes, dry),
        dry=dry,
    )


def _erase(
    cursor: Any, schema: str, request: Request, timezone: str, interval_minutes: int, dry: bool
) -> Outcome:
    cursor.execute("SET LOCAL TimeZone = 'UTC'")
    # Landings (ROW EXCLUSIVE) and applies (SHARE, their first lock) wait until this commits,
    # and this waits for them: the subject's chats cannot change under it, and no other writer
    # holds a row counter meanwhile. Taken before anything else is touched.
    cursor.execute(
        sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(qualified(schema, RAW_CHATS))
    )
    if request.fingerprints and (unknown := unknown_keys(cursor, schema, request.fingerprints)):
        raise ErasureRefused(
            f"raw_chats holds {sum(unknown.values())} rows pseudonymised under other keys "
            f"(fingerprints {', '.join(sorted(unknown))}; this key's: "
            f"{request.fingerprints[-1]}), whose chats an erasure under this key "
            "cannot find: set the pseudonym key that wrote them; nothing changed"
        )
    suppression.ensure(cursor, schema)
    ledger.ensure(cursor, schema)
    named = (request.pseudonym, *request.earlier)
    before = suppression.erased_before(cursor, schema, named)
    # An earlier version goes on the list only where a row holds it: the list holding one
    # stops every landing until `rotate` has re-keyed it.
    pseudonyms = {request.pseudonym} | _held_by(
        cursor, schema, _chats_holding(cursor, schema, set(named))
    )
    chats = sorted(_chats_holding(cursor, schema, pseudonyms))
    suppression.record(
        cursor,
        schema,
        pseudonyms,
        request.mode,
        also_future=request.also_future,
        ref=request.ref,
    )
    if request.mode is Mode.UNLINK:
        rows, days = _unlink(cursor, schema, chats), 0
    else:
        rows, days = _delete(cursor, schema, chats, timezone, interval_minutes)
    outcome = Outcome(request.ref, request.mode, dry, len(chats), rows, days, before)
    if not dry:
        ledger.append(
            cursor,
            schema,
            "erase",
            ref=request.ref,
            namespace=request.namespace,
            mode=request.mode.value,
            also_future=request.also_future,
            counts={**rows, "chats": len(chats), "days_recomputed": days},
            key_version=request.pseudonym.partition(":")[0],
        )
    return outcome


def _chats_holding(cursor: Any, schema: str, pseudonyms: set[str]) -> set[int]:
    """Ids of the chats with any of the pseudonyms, in a stored version or a flattened row,
    found through the lookup indexes (never by reading every chat)."""
    found: set[int] = set()
    for table in (RAW_CHATS, *LINKED_TABLES):
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.Identifier(table.key[0] if table is not RAW_CHATS else CHAT_ID_FIELD),
            qualified(schema, table),
            lookup.holds(schema, table),
        )
        found |= {row[0] for row in cursor.execute(query, {"pseudonyms": sorted(pseudonyms)})}
    return found


def _held_by(cursor: Any, schema: str, chats: set[int]) -> set[str]:
    """Every customer pseudonym the chats hold, in any version or flattened row."""
    ids = {"ids": sorted(chats)}
    held: set[str] = set()
    raw = sql.SQL("SELECT payload FROM {} WHERE {} = ANY(%(ids)s)").format(
        qualified(schema, RAW_CHATS), sql.Identifier(CHAT_ID_FIELD)
    )
    for (payload,) in cursor.execute(raw, ids):
        held |= suppression.held_pseudonyms(payload)
    for table in LINKED_TABLES:
        query = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%(ids)s)").format(
            sql.SQL(", ").join(map(sql.Identifier, customer_columns(table))),
            qualified(schema, table),
            sql.Identifier(table.key[0]),
        )
        held |= {v for row in cursor.execute(query, ids) for v in row if v is not None}
    return held


def _versions(cursor: Any, schema: str, chats: list[int]) -> list[tuple[str, int, Any]]:
    query = sql.SQL("SELECT partition_key, {0}, payload FROM {1} WHERE {0} = ANY(%s)").format(
        sql.Identifier(CHAT_ID_FIELD), qualified(schema, RAW_CHATS)
    )
    return cursor.execute(query, (chats,)).fetchall()


def _unlink(cursor: Any, schema: str, chats: list[int]) -> dict[str, int]:
    """Null every customer pseudonym of the chats; rows changed per table."""
    rows = {
        RAW_CHATS.name: suppression.rewrite_raw(
            cursor, schema, _versions(cursor, schema, chats), Mode.UNLINK
        )
    }
    for table in DERIVED_TABLES:
        columns = customer_columns(table)
        if not columns:
            rows[table.name] = 0
            continue
        cursor.execute(
            sql.SQL("UPDATE {} SET {} WHERE {} = ANY(%s) AND ({})").format(
                qualified(schema, table),
                sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(table.key[0]),
                sql.SQL(" OR ").join(
                    sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns
                ),
            ),
            (chats,),
        )
        rows[table.name] = cursor.rowcount
    return rows


def _delete(
    cursor: Any, schema: str, chats: list[int], timezone: str, interval_minutes: int
) -> tuple[dict[str, int], int]:
    """Remove the chats from every table and recompute the marts' days they touched."""
    days = {
        a.name: aggregates.fact_days(
            cursor, schema, a, timezone, sql.SQL("= ANY(%(ids)s)"), {"ids": chats}
        )
        for a in AGGREGATE_TABLES
    }
    rows = {
        RAW_CHATS.name: suppression.rewrite_raw(
            cursor,
            schema,
            [(p, c, None) for p, c, _ in _versions(cursor, schema, chats)],
            Mode.DELETE,
        )
    }
    for table in DERIVED_TABLES:
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                qualified(schema, table), sql.Identifier(table.key[0])
            ),
            (chats,),
        )
        rows[table.name] = cursor.rowcount
        count_rows(cursor, schema, table, -cursor.rowcount)
    # By the registry's whole key: by chat_id alone it would be read whole.
    cursor.execute(
        sql.SQL("DELETE FROM {}.{} WHERE table_name = %s AND chat_id = ANY(%s)").format(
            sql.Identifier(schema), sql.Identifier(REGISTRY)
        ),
        (newest_wins.REGISTRY_KEY, chats),
    )
    rows[REGISTRY] = cursor.rowcount
    for aggregate in AGGREGATE_TABLES:
        # A day at a time, in order: the planner reads one day's facts through the index on
        # their instant, where for several days at once it may read the whole facts table.
        for day in sorted(days[aggregate.name]):
            aggregates.recompute_days(
                cursor,
                schema,
                aggregate,
                timezone,
                {day},
                mark=True,
                interval_minutes=interval_minutes,
            )
    return rows, len(set().union(*days.values()))
