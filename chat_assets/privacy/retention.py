"""Retention: raw payloads and pseudonyms are let go once older than their limits.

A chat's age is its day: the local day (in the partitions' time zone) of the stored version's
`updated_at`, which is raw_chats' `partition_key` and the day of each flattened row's time
column (`updated_at`, `chat_updated_at`). With a limit of N days, on day T every day before
T - N has expired (N = 1 keeps yesterday and today).

- **Raw payloads** (`CHAT_ASSETS_RETAIN_RAW_DAYS`): the rows of raw_chats of expired days are
  deleted once flattened (a row landed and not flattened yet stays until the flattening of its
  day, which drops it, however the steps and runs interleave). The flattened tables and the
  marts keep their rows: a flattening only rewrites the chats present in its window of
  raw_chats, so nothing flattened changes, and service levels stay as they were. A day can no
  longer be re-flattened without fetching it again.
- **Customer / agent pseudonyms** (`CHAT_ASSETS_RETAIN_CUSTOMER_DAYS`, `..._AGENT_DAYS`): every
  pseudonym the catalog gives that subject becomes null in every stored raw version and every
  flattened row of an expired day (unlink, keep the facts, as `erasure` does); the marts hold
  none.

The job's cost follows what expires: raw rows are deleted through raw_chats' key (partition_key
first), which holds no expired row after the previous run; for pseudonyms `_retention_through`
keeps per subject the last day unlinked, and a run touches only the days after it (through the
time-column indexes), so a day is unlinked once.

A day landed from beyond a limit lands within the policy: the landing unlinks the window's
expired pseudonyms in its own transaction (`at_landing`), so the flattening that follows has
none to copy; and when the window is past the raw limit, the flattening drops the window's raw
rows once it has flattened them (`drop_expired_raw`), so its facts land and its payloads do not
stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from psycopg import sql

from chat_assets.privacy import bookkeeping, ledger
from chat_assets.privacy.catalog import CATALOG, Rule, Subject, Treatment
from chat_assets.privacy.lookup import pseudonym_columns
from chat_assets.privacy.suppression import Mode, rewrite_raw
from chat_assets.settings import Settings
from chat_assets.tables import (
    CHAT_ID_FIELD,
    DERIVED_TABLES,
    RAW_CHATS,
    RAW_PARTITION,
    VERSION_FIELD,
    Table,
)
from chat_assets.warehouse import ddl
from chat_assets.warehouse.bookkeeping import VERSIONS_TABLE, count_rows
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.newest_wins import REGISTRY_KEY
from chat_assets.warehouse.sql_parts import qualified, qualified_name

THROUGH_TABLE = "_retention_through"
RAW = "raw"
SUBJECTS = (Subject.CUSTOMER, Subject.AGENT)

# Every field the catalog turns into a pseudonym, per subject.
PSEUDONYMS: dict[Subject, tuple[Rule, ...]] = {
    subject: tuple(
        r for r in CATALOG if r.subject is subject and r.treatment is Treatment.PSEUDONYM
    )
    for subject in SUBJECTS
}


@dataclass(frozen=True)
class Policy:
    """How many days each kind of data is kept (None: forever)."""

    raw_days: int | None = None
    customer_days: int | None = None
    agent_days: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.retain_raw_days, settings.retain_customer_days, settings.retain_agent_days
        )

    def __bool__(self) -> bool:
        return any(d is not None for d in (self.raw_days, self.customer_days, self.agent_days))

    def first_kept(self, today: date) -> dict[str, date]:
        """Per kind with a limit ("raw", "customer", "agent"): the oldest day still kept on
        `today`; every day before it has expired."""
        days = {RAW: self.raw_days, Subject.CUSTOMER: self.customer_days}
        days[Subject.AGENT] = self.agent_days
        return {str(k): today - timedelta(days=n) for k, n in days.items() if n is not None}

    def expired_on(self, day: date, today: date) -> set[str]:
        """The kinds of data of `day` that have expired on `today`."""
        return {kind for kind, first in self.first_kept(today).items() if day < first}


def newly_expired(through: date | None, first_kept: date) -> tuple[date | None, date] | None:
    """The days to unlink now, [since, first_kept) (since None: from the beginning), given the
    last day unlinked before; None when there is none."""
    if through is not None and through >= first_kept - timedelta(days=1):
        return None
    return (None if through is None else through + timedelta(days=1), first_kept)


def midnight(day: date, timezone: str) -> datetime:
    """The instant `day` begins in the partitions' time zone."""
    return datetime.combine(day, time(), ZoneInfo(timezone))


def _through_table(schema: str) -> sql.Composed:
    return bookkeeping.qualified(schema, THROUGH_TABLE)


def ensure(cursor: Any, schema: str) -> None:
    bookkeeping.ensure_table(
        cursor, schema, THROUGH_TABLE, "subject text PRIMARY KEY, through date NOT NULL"
    )


def _read_through(cursor: Any, schema: str) -> dict[str, date]:
    rows = cursor.execute(
        sql.SQL("SELECT subject, through FROM {}").format(_through_table(schema))
    ).fetchall()
    return dict(rows)


def _raw_between(since: date | None, until: date) -> tuple[sql.Composed, dict[str, Any]]:
    """SQL: raw_chats rows of the days [since, until), by partition_key (the key's first)."""
    partition = sql.Identifier(RAW_PARTITION)
    where = sql.SQL("{} < %(until)s").format(partition)
    if since is not None:
        where = sql.SQL("{} >= %(since)s AND {}").format(partition, where)
    return where, {"until": until.isoformat(), "since": since and since.isoformat()}


def _time_between(table: Table, start: datetime | None, end: datetime) -> sql.Composed:
    column = sql.Identifier(table.time_column)
    where = sql.SQL("{} < %(end)s").format(column)
    if start is not None:
        where = sql.SQL("{} >= %(start)s AND {}").format(column, where)
    return where


def _unlink_raw(cursor: Any, schema: str, subject: Subject, where: sql.Composable, params) -> int:
    """Unlink the subject's pseudonyms in the raw versions `where` selects; rows changed."""
    versions = cursor.execute(
        sql.SQL("SELECT {}, id, payload FROM {} WHERE {}").format(
            sql.Identifier(RAW_PARTITION), qualified(schema, RAW_CHATS), where
        ),
        params,
    ).fetchall()
    return rewrite_raw(cursor, schema, versions, Mode.UNLINK, PSEUDONYMS[subject])


def _unlink_flat(
    cursor: Any, schema: str, subject: Subject, start: datetime | None, end: datetime
) -> dict[str, int]:
    """Null the subject's pseudonym columns in the flattened rows of [start, end)."""
    rows = {}
    for table in DERIVED_TABLES:
        columns = pseudonym_columns(table, PSEUDONYMS[subject])
        if not columns:
            continue
        cursor.execute(
            sql.SQL("UPDATE {} SET {} WHERE {} AND ({})").format(
                qualified(schema, table),
                sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in columns),
                _time_between(table, start, end),
                sql.SQL(" OR ").join(
                    sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns
                ),
            ),
            {"start": start, "end": end},
        )
        rows[table.name] = cursor.rowcount
    return rows


def _drop_raw(cursor: Any, schema: str, first_kept: date, since: date | None = None) -> int:
    """Delete raw_chats' rows of the days [since, first_kept) that have been flattened (the
    version registry holds their version or a newer one); the rows deleted. A row landed and
    not flattened yet stays for the flattening that follows, which drops it: no chat is let
    go before its facts land. The row counter is the caller's to update, last."""
    if not bookkeeping.exists(cursor, schema, VERSIONS_TABLE):
        return 0  # nothing was ever flattened
    where, params = _raw_between(since, first_kept)
    cursor.execute(
        sql.SQL(
            "DELETE FROM {raw} AS r WHERE {where} AND EXISTS (SELECT FROM {registry} AS v"
            " WHERE v.table_name = %(registry_key)s AND v.chat_id = r.{id}"
            " AND v.updated_at >= r.{updated_at})"
        ).format(
            raw=qualified(schema, RAW_CHATS),
            where=where,
            registry=qualified_name(schema, VERSIONS_TABLE),
            id=sql.Identifier(CHAT_ID_FIELD),
            updated_at=sql.Identifier(VERSION_FIELD),
        ),
        {**params, "registry_key": REGISTRY_KEY},
    )
    return cursor.rowcount


@dataclass(frozen=True)
class Outcome:
    """What a retention run did: counts only (no id, no pseudonym)."""

    today: date
    first_kept: dict[str, date]
    counts: dict[str, int]

    def summary(self) -> str:
        """One line for the run's log: the first day kept of each kind with a limit, and the
        rows let go (counts only)."""
        kept = ", ".join(f"{kind} from {day.isoformat()}" for kind, day in self.first_kept.items())
        gone = ", ".join(f"{name} {n:,}" for name, n in self.counts.items() if n)
        return f"Retention on {self.today.isoformat()}: kept {kept}; " + (
            gone or "nothing newly expired"
        )


def apply(engine: sa.Engine, schema: str, policy: Policy, today: date, timezone: str) -> Outcome:
    """Let go of everything older than its limit on `today`, in one transaction, and record
    the run in the ledger (counts only)."""
    for table in (RAW_CHATS, *DERIVED_TABLES):
        ddl.prepare(engine, schema, table)
    first_kept = policy.first_kept(today)
    counts: dict[str, int] = {}
    with cursor_for(engine, transaction=True) as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        # As an erasure: landings and applies wait until this commits, and this waits for them.
        cursor.execute(
            sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                qualified(schema, RAW_CHATS)
            )
        )
        ensure(cursor, schema)
        ledger.ensure(cursor, schema)
        through = _read_through(cursor, schema)
        for subject in SUBJECTS:
            if (first := first_kept.get(subject)) is None:
                continue
            days = newly_expired(through.get(subject), first)
            if days is None:
                continue
            since, until = days
            where, params = _raw_between(since, until)
            counts[f"{subject}_raw_chats_unlinked"] = _unlink_raw(
                cursor, schema, subject, where, params
            )
            start = None if since is None else midnight(since, timezone)
            flat = _unlink_flat(cursor, schema, subject, start, midnight(until, timezone))
            counts.update({f"{subject}_{name}_unlinked": n for name, n in flat.items()})
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (subject, through) VALUES (%s, %s) ON CONFLICT (subject)"
                    " DO UPDATE SET through = EXCLUDED.through"
                ).format(_through_table(schema)),
                (str(subject), until - timedelta(days=1)),
            )
        dropped = 0
        if (first := first_kept.get(RAW)) is not None:
            dropped = counts["raw_chats_deleted"] = _drop_raw(cursor, schema, first)
        ledger.append(cursor, schema, "retention", counts=dict(counts))
        if dropped:
            count_rows(cursor, schema, RAW_CHATS, -dropped)
    return Outcome(today, first_kept, counts)


def at_landing(
    cursor: Any, schema: str, policy: Policy, today: date, start: datetime, end: datetime
) -> tuple[int, dict[str, Any]]:
    """In raw_chats' landing transaction, once the window's rows are in place: the pseudonyms
    of the window that have expired by `today` unlinked. Its raw rows stay for the flattening
    that follows, which drops them (`drop_expired_raw`) when the window is past the raw limit.
    Returns the rows removed (none) and the landing's metadata."""
    expired = policy.expired_on(start.date(), today)
    unlinked = {}
    for subject in SUBJECTS:
        if str(subject) in expired:
            where = sql.SQL("{0} >= %(start)s AND {0} < %(end)s").format(
                sql.Identifier(RAW_CHATS.time_column)
            )
            unlinked[str(subject)] = _unlink_raw(
                cursor, schema, subject, where, {"start": start, "end": end}
            )
    return 0, {"retention_at_landing": {"unlinked": unlinked}} if unlinked else {}


def drop_expired_raw(
    engine: sa.Engine, schema: str, policy: Policy, today: date, start: date, end: date
) -> int:
    """After a flattening of the days [start, end) past the raw limit: their raw_chats rows
    deleted, in a transaction of their own (the flattening's holds raw_chats in SHARE mode).
    Other days' rows stay: one landed and not flattened yet waits for its own flattening."""
    first = policy.first_kept(today).get(RAW)
    if first is None:
        return 0
    with cursor_for(engine, transaction=True) as cursor:
        dropped = _drop_raw(cursor, schema, min(first, end), start)
        if dropped:
            count_rows(cursor, schema, RAW_CHATS, -dropped)
    return dropped


def expired(engine: sa.Engine, schema: str, policy: Policy, today: date, timezone: str) -> dict:
    """What is older than its limit on `today`, per kind and table: counts only. Reads every
    stored row older than a limit (unlike the job, which reads only the newly expired days)."""
    found: dict[str, int] = {}
    with cursor_for(engine) as cursor:
        if not bookkeeping.exists(cursor, schema, RAW_CHATS.name):
            return found
        cursor.execute("SET TimeZone = 'UTC'")
        for kind, first in policy.first_kept(today).items():
            where, params = _raw_between(None, first)
            raw = qualified(schema, RAW_CHATS)
            if kind == RAW:
                query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(raw, where)
                found["raw_chats"] = cursor.execute(query, params).fetchone()[0]
                continue
            subject = Subject(kind)
            paths = sql.SQL(" OR ").join(
                sql.SQL("jsonb_path_exists(payload, {})").format(
                    sql.Literal("$." + r.path.replace("[]", "[*]") + " ? (@ != null)")
                )
                for r in PSEUDONYMS[subject]
            )
            query = sql.SQL("SELECT count(*) FROM {} WHERE {} AND ({})").format(raw, where, paths)
            found[f"{kind}_raw_chats"] = cursor.execute(query, params).fetchone()[0]
            end = midnight(first, timezone)
            for table in DERIVED_TABLES:
                columns = pseudonym_columns(table, PSEUDONYMS[subject])
                if not columns or not bookkeeping.exists(cursor, schema, table.name):
                    continue
                query = sql.SQL("SELECT count(*) FROM {} WHERE {} AND ({})").format(
                    qualified(schema, table),
                    _time_between(table, None, end),
                    sql.SQL(" OR ").join(
                        sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns
                    ),
                )
                found[f"{kind}_{table.name}"] = cursor.execute(query, {"end": end}).fetchone()[0]
        cursor.execute("RESET TimeZone")
    return found
