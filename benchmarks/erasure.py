"""Erasing one data subject, and a retention run, with a million chats stored.

1. Fill (not the figure): consecutive demo days (default 5 x 20,000 new chats, no seasonality),
   each sanitized under a benchmark key and landed through the project's own functions
   (raw_chats' landing, then the newest-wins apply of the flattened tables); then copied in
   SQL, shifted by their span, until 50 days are stored (1,000,000 chats by default): ids moved
   out of the originals' range, every timestamp column moved by the shift, and each copy's
   pseudonyms given a version prefix of their own (`c1:`, ...), so no copy links a person of
   another. Generating and sanitizing every day in Python would take this machine hours; the
   stored rows have the same shape either way. Then every day of both marts is
   recomputed and the tables are vacuumed and analyzed, as autovacuum would have done.
2. Erasure: the end user of a chat of the middle day, unlinked with `erasure.erase` (as
   `python -m chat_assets.privacy erase` does, in this process), then another end user deleted;
   then a third erased by the command itself, in a process of its own (its wall time includes
   Python's start and imports). For each: seconds, chats found, rows changed per table, and
   the rows PostgreSQL read by sequential scans of the schema's tables meanwhile
   (`pg_stat_user_tables.seq_tup_read`): reading only the subject's rows, that stays near 0.
3. Retention: limits of 30 days (customer and agent pseudonyms) and 32 days (raw payloads),
   applied on successive "todays" that expire 1, 1, 1, 2 and then 0 more days: seconds against
   the rows deleted or unlinked, with the same million chats stored throughout.
4. Landing cost of the erasure lookup indexes: one day landed and applied again, three times
   with the indexes and three times with them dropped.

Run: .venv/bin/python -m benchmarks.erasure [--days 5] [--copies 10] [--chats 20000]
     [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta

import sqlalchemy as sa

from benchmarks.database import database
from chat_assets.grammar import parse_instant
from chat_assets.privacy import erasure, lookup, retention
from chat_assets.privacy.lookup import pseudonym_columns
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.retention import Policy
from chat_assets.privacy.rotation import PSEUDONYM_RULES
from chat_assets.privacy.sanitize import WindowSanitizer
from chat_assets.privacy.suppression import Mode
from chat_assets.tables import (
    AGGREGATE_TABLES,
    CHAT_ID_FIELD,
    CHATS,
    DERIVED_TABLES,
    RAW_CHATS,
    RAW_PARTITION,
    RAW_PAYLOAD,
    PgType,
    Table,
)
from chat_assets.warehouse import aggregates, bookkeeping, newest_wins, windows
from chat_assets.warehouse.bookkeeping import ROW_COUNTS_TABLE, VERSIONS_TABLE
from chat_assets.warehouse.connection import cursor_for, engine_for
from chat_assets_demo.demo_data import chats_updated_between
from chat_assets_tests.windows import day_window, landing_frame

FIRST = date(2026, 1, 1)
SCHEMA = "erasure_bench"
KEY = "chat-assets-erasure-benchmark-" + "3d2c1b0a9f8e7d6c5b4a"
PSEUDONYMIZER = Pseudonymizer(KEY.encode())
POLICY = Policy(raw_days=32, customer_days=30, agent_days=30)


def day_frame(day: date, chats: int) -> tuple[object, list[dict]]:
    """The landing frame of one demo day, sanitized, and its raw chats."""
    start, end = day_window(day, "UTC")
    records = chats_updated_between(start, end, chats_per_day=chats, seasonal=False)
    inside = [r for r in records if start <= parse_instant(r["updated_at"]) < end]
    clean = WindowSanitizer(PSEUDONYMIZER).page(inside)
    return landing_frame(clean, "UTC", PSEUDONYMIZER.fingerprint), inside


def land_and_apply(
    engine: sa.Engine, day: date, frame, schema: str = SCHEMA
) -> tuple[float, float]:
    start, end = day_window(day, "UTC")
    began = time.perf_counter()
    windows.replace_window(engine, schema, RAW_CHATS, frame, start, end)
    landed = time.perf_counter()
    newest_wins.apply_newest(
        engine, schema, DERIVED_TABLES, start, end, timezone="UTC", interval_minutes=30
    )
    return landed - began, time.perf_counter() - landed


def _copied(table: Table, copy: int, days: int, stride: int) -> str:
    """The SELECT list that makes copy `copy` of a flattened table's rows."""
    keyed = pseudonym_columns(table, PSEUDONYM_RULES)
    shifted = []
    for column in table.columns:
        name = f'"{column.name}"'
        if column.name in ("id", "chat_id") and column.key:
            shifted.append(f"{name} + {copy * stride}")
        elif column.type is PgType.TIMESTAMPTZ:
            shifted.append(f"{name} + interval '{copy * days} days'")
        elif column.name in keyed:
            shifted.append(f"'c{copy}:' || substr({name}, 4)")
        else:
            shifted.append(name)
    return ", ".join(shifted)


def copy_days(engine: sa.Engine, days: int, copies: int) -> None:
    """Copies 1 .. copies-1 of the landed days, each `days` later than the one before, its chat
    ids above all the ids before it."""
    end = FIRST + timedelta(days=days)
    with cursor_for(engine, transaction=True) as cursor:
        stride = cursor.execute(f"SELECT max({CHAT_ID_FIELD}) + 1 FROM {SCHEMA}.raw_chats")
        stride = stride.fetchone()[0]
        for copy in range(1, copies):
            cursor.execute(
                f"INSERT INTO {SCHEMA}.raw_chats SELECT"
                f" to_char({RAW_PARTITION}::date + {copy * days}, 'YYYY-MM-DD'),"
                f" {CHAT_ID_FIELD} + {copy * stride},"
                f" updated_at + interval '{copy * days} days',"
                f" pii_key, replace({RAW_PAYLOAD}::text, '\"k1:', '\"c{copy}:')::jsonb"
                f" FROM {SCHEMA}.raw_chats WHERE {RAW_PARTITION} < '{end}'"
            )
            for table in DERIVED_TABLES:
                cursor.execute(
                    f"INSERT INTO {SCHEMA}.{table.name}"
                    f" SELECT {_copied(table, copy, days, stride)} FROM {SCHEMA}.{table.name}"
                    f" WHERE {table.key[0]} < {stride}"
                )
            cursor.execute(
                f"INSERT INTO {SCHEMA}.{VERSIONS_TABLE} SELECT table_name,"
                f" chat_id + {copy * stride}, updated_at + interval '{copy * days} days'"
                f" FROM {SCHEMA}.{VERSIONS_TABLE} WHERE chat_id < {stride}"
            )
            print(f"copy {copy} of {copies - 1}: {cursor.rowcount:,} chats", flush=True)
        for table in (RAW_CHATS, *DERIVED_TABLES):
            cursor.execute(
                f"UPDATE {SCHEMA}.{ROW_COUNTS_TABLE} SET row_count ="
                f" (SELECT count(*) FROM {SCHEMA}.{table.name}) WHERE table_name = %s",
                (table.name,),
            )
    for offset in range(days * copies):
        start, end = day_window(FIRST + timedelta(days=offset), "UTC")
        for mart in AGGREGATE_TABLES:
            aggregates.recompute_window(
                engine, SCHEMA, mart, "UTC", start, end, interval_minutes=30
            )


def seq_rows_read(engine: sa.Engine) -> int:
    """Rows read by sequential scans of the schema's tables so far. The pooled connections
    are closed first, so their backends have reported what they read."""
    engine.dispose()
    time.sleep(0.5)
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables WHERE schemaname = %s",
            (SCHEMA,),
        ).scalar()


def subjects(seen: Counter[int], count: int) -> list[int]:
    """The end users with the most chats among those landed."""
    return [end_user for end_user, _ in seen.most_common(count)]


def erase_in_process(engine: sa.Engine, end_user: int, mode: Mode) -> None:
    request = erasure.Request(
        "end_user", PSEUDONYMIZER.pseudonym("end_user", end_user), f"BENCH-{mode}", mode
    )
    before = seq_rows_read(engine)
    began = time.perf_counter()
    outcome = erasure.erase(engine, SCHEMA, request, timezone="UTC", interval_minutes=30, dry=False)
    seconds = time.perf_counter() - began
    scanned = seq_rows_read(engine) - before
    print(
        f"erase ({mode.value}, in process): {seconds:.3f} s, {outcome.chats} chats, rows "
        f"{outcome.rows}, {outcome.days_recomputed} mart days recomputed; rows read by "
        f"sequential scans: {scanned:,}",
        flush=True,
    )


def erase_by_command(engine: sa.Engine, url: str, end_user: int) -> None:
    env = {
        **os.environ,
        "CHAT_ASSETS_DATABASE_URL": url,
        "CHAT_ASSETS_SCHEMA": SCHEMA,
        "CHAT_ASSETS_PII_KEY": KEY,
    }
    env.pop("CHAT_ASSETS_PII_PREVIOUS_KEYS", None)
    env.pop("CHAT_ASSETS_PII_KEY_VERSION", None)
    argv = ["erase", "end_user", str(end_user), "--ref", "BENCH-CLI"]
    before = seq_rows_read(engine)
    began = time.perf_counter()
    command = [sys.executable, "-m", "chat_assets.privacy", *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    scanned = seq_rows_read(engine) - before
    if done.returncode:
        raise SystemExit(done.stderr)
    first = done.stdout.splitlines()[0]
    print(
        f"erase (unlink, the command): {seconds:.3f} s wall ({first}); rows read by "
        f"sequential scans: {scanned:,}",
        flush=True,
    )


def retention_runs(engine: sa.Engine) -> None:
    today = FIRST + timedelta(days=POLICY.customer_days + 1)
    print(
        f"retention: customer and agent pseudonyms {POLICY.customer_days} days, raw "
        f"{POLICY.raw_days} days, {bookkeeping.row_count(engine, SCHEMA, CHATS):,} chats stored"
    )
    for step in (0, 1, 1, 2, 0):
        today += timedelta(days=step)
        began = time.perf_counter()
        outcome = retention.apply(engine, SCHEMA, POLICY, today, "UTC")
        seconds = time.perf_counter() - began
        rows = sum(outcome.counts.values())
        per = f", {seconds / rows * 1e6:.0f} us a row" if rows else ""
        print(
            f"  today {today}: {seconds:6.2f} s, {rows:>7,} rows deleted or unlinked{per}",
            flush=True,
        )


def landing_cost(engine: sa.Engine, day: date, frame, rounds: int = 4) -> None:
    """One day landed and applied into two schemas of their own, with the lookup indexes and
    without them, in turns (so both see the same load on the machine)."""
    with_, without = f"{SCHEMA}_with_lookups", f"{SCHEMA}_without"
    with engine.begin() as connection:
        for schema in (with_, without):
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for schema in (with_, without):
        land_and_apply(engine, day, frame, schema)
    with engine.begin() as connection:
        for table in (RAW_CHATS, *DERIVED_TABLES):
            for statement in lookup.index_statements(without, table):
                text = statement.as_string(connection.connection.dbapi_connection)
                if text.startswith("CREATE INDEX"):
                    connection.exec_driver_sql(f"DROP INDEX {without}.{text.split()[5]}")
    timed: dict[str, list[tuple[float, float]]] = {with_: [], without: []}
    for _ in range(rounds):
        for schema in timed:
            timed[schema].append(land_and_apply(engine, day, frame, schema))
    print(f"landing and applying {len(frame):,} chats of {day} again, {rounds} times in turns:")
    for schema, label in ((with_, "with the lookups"), (without, "without them")):
        landing = statistics.median(t[0] for t in timed[schema])
        apply = statistics.median(t[1] for t in timed[schema])
        print(f"  {label:<18} landing {landing:5.2f} s  apply {apply:5.2f} s (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=5, help="demo days landed")
    parser.add_argument("--copies", type=int, default=10, help="the days, copied as many times")
    parser.add_argument("--chats", type=int, default=20_000, help="new chats per day")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with database(args.database_url, "erasure") as url:
        engine = engine_for(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        middle = FIRST + timedelta(days=args.days // 2)
        began = time.perf_counter()
        seen: Counter[int] = Counter()
        for offset in range(args.days):
            day = FIRST + timedelta(days=offset)
            frame, raw = day_frame(day, args.chats)
            landing, apply = land_and_apply(engine, day, frame)
            seen.update({c["end_user"]["id"] for c in raw if (c.get("end_user") or {}).get("id")})
            if day == middle:
                middle_frame = frame
            print(
                f"day {offset + 1:>3}: landing {landing:5.2f} s, apply {apply:5.2f} s, "
                f"{bookkeeping.row_count(engine, SCHEMA, CHATS):,} chats stored "
                f"({time.perf_counter() - began:.0f} s so far)",
                flush=True,
            )
        copy_days(engine, args.days, args.copies)
        print(f"filled in {time.perf_counter() - began:.0f} s", flush=True)
        # As autovacuum would have by then: the tables analyzed, raw_chats' GIN pending list
        # merged.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in (RAW_CHATS, *DERIVED_TABLES):
                connection.exec_driver_sql(f"VACUUM ANALYZE {SCHEMA}.{table.name}")
        stored = {
            t.name: bookkeeping.row_count(engine, SCHEMA, t) for t in (RAW_CHATS, *DERIVED_TABLES)
        }
        print(
            f"stored: {stored}; rows read by sequential scans while filling: "
            f"{seq_rows_read(engine):,}"
        )
        chosen = subjects(seen, 3)
        erase_in_process(engine, chosen[0], Mode.UNLINK)
        erase_in_process(engine, chosen[1], Mode.DELETE)
        erase_by_command(engine, url, chosen[2])
        retention_runs(engine)
        landing_cost(engine, middle, middle_frame)


if __name__ == "__main__":
    main()
