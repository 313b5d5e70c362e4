"""Flatten and apply a 100,000-chat day, against the floor of a bare COPY of the same rows.

1. A child process generates the day with the demo generator and lands it in raw_chats (not
   timed, and its memory is not this process's).
2. Then, five times over (each time into tables of a fresh schema, raw_chats copied there
   untimed, the previous round's dropped):
   - timed: flatten the ten chat tables from raw_chats and apply each newest-wins, with the
     recompute of queue_service_levels and queue_intervals for the days touched;
   - timed floor: a bare binary COPY of the same final rows (read back untimed) into empty
     tables with primary keys.
   Before each timing a CHECKPOINT, and autovacuum is off for these tables: the writes of one
   timing, flushed or analyzed in the background, would otherwise land in the next one.
Prints each round, the ratio of the median apply to the median floor, the recompute timed alone,
and this process's peak RSS through the first apply.

Run: .venv/bin/python -m benchmarks.flatten_apply [--chats 100000] [--rounds 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from datetime import date
from pathlib import Path

from psycopg import sql

from benchmarks.database import database
from chat_assets.tables import (
    AGGREGATE_TABLES,
    CHAT_QUEUE_DURATIONS,
    DERIVED_TABLES,
    RAW_CHATS,
)
from chat_assets.warehouse import aggregates, ddl, newest_wins, staging, windows
from chat_assets.warehouse.connection import cursor_for, engine_for
from chat_assets_demo.demo_data import chats_updated_between
from chat_assets_tests.windows import day_window, landing_frame

DAY = date(2026, 1, 15)


def land(url: str, schema: str, chats: int) -> None:
    start, end = day_window(DAY, "UTC")
    # Exactly chats_per_day new chats (no seasonality) plus 20% second versions of earlier days
    per_day = round(chats / 1.2)
    records = chats_updated_between(start, end, chats_per_day=per_day, seasonal=False)
    frame = landing_frame([r for r in records if start <= _ts(r) < end], "UTC", "k1:bench")
    windows.replace_window(engine_for(url), schema, RAW_CHATS, frame, start, end)
    print(f"landed                  {len(frame)} chats in {schema}.raw_chats")


def _ts(record: dict):
    from chat_assets.grammar import parse_instant

    return parse_instant(record["updated_at"])


def server_only_copy(engine, schema: str, tables) -> float:
    """COPY of rows already encoded (read back from the floor tables): the database's share."""
    encoded = {}
    with cursor_for(engine) as cursor:
        for table in tables:
            target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table.name))
            with cursor.copy(sql.SQL("COPY {} TO STDOUT (FORMAT BINARY)").format(target)) as copy:
                encoded[table.name] = b"".join(bytes(block) for block in copy)
    began = time.perf_counter()
    with cursor_for(engine, transaction=True) as cursor:
        for table in tables:
            target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table.name))
            cursor.execute(sql.SQL("TRUNCATE {}").format(target))
            with cursor.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(target)) as copy:
                copy.write(encoded[table.name])
    return time.perf_counter() - began


def server_peak_rss_mb(engine) -> float | None:
    """The largest peak RSS (VmHWM) of the server's processes, when the server is local.
    Shared buffers a process touched count in its RSS."""
    with cursor_for(engine) as cursor:
        pids = [row[0] for row in cursor.execute("SELECT pid FROM pg_stat_activity").fetchall()]
    peaks = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return max(peaks) if peaks else None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_copy(engine, landed: str, schema: str) -> None:
    """`schema` with the landed raw_chats and nothing else, autovacuum off for its tables."""
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    ddl.prepare(engine, schema, RAW_CHATS)
    with cursor_for(engine, transaction=True) as cursor:
        cursor.execute(f"INSERT INTO {schema}.raw_chats SELECT * FROM {landed}.raw_chats")
        cursor.execute(f"ANALYZE {schema}.raw_chats")
    quiet(engine, schema, (RAW_CHATS, *DERIVED_TABLES, *AGGREGATE_TABLES))


def quiet(engine, schema: str, tables) -> None:
    """Autovacuum off for the schema's tables (creating them), then a CHECKPOINT."""
    for table in tables:
        ddl.prepare(engine, schema, table)
    with engine.begin() as connection:
        for table in tables:
            connection.exec_driver_sql(
                f"ALTER TABLE {schema}.{table.name} SET (autovacuum_enabled = false)"
            )
    checkpoint(engine)


def checkpoint(engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("CHECKPOINT")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with database(args.database_url, "bench") as url:
        engine = engine_for(url)
        landed = "bench_landed"
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {landed} CASCADE")
        child = multiprocessing.get_context("spawn").Process(
            target=land, args=(url, landed, args.chats)
        )
        child.start()
        child.join()
        start, end = day_window(DAY, "UTC")

        applies, floors = [], []
        rss_applied = 0.0
        for round_ in range(args.rounds):
            schema, floor_schema = f"bench_{round_}", f"bench_floor_{round_}"
            fresh_copy(engine, landed, schema)
            began = time.perf_counter()
            applied = newest_wins.apply_newest(
                engine, schema, DERIVED_TABLES, start, end, timezone="UTC", interval_minutes=30
            )
            applies.append(time.perf_counter() - began)
            rss_applied = rss_applied or peak_rss_mb()
            rows = sum(a.rows_written for a in applied)

            # The floor: the same final rows, read back (not timed), COPYed into empty tables.
            finals = [windows.load_window(engine, schema, t, start, end) for t in DERIVED_TABLES]
            with engine.begin() as connection:
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {floor_schema} CASCADE")
                connection.exec_driver_sql(f"CREATE SCHEMA {floor_schema}")
            checkpoint(engine)
            began = time.perf_counter()
            with cursor_for(engine, transaction=True) as cursor:
                for table, frame in zip(DERIVED_TABLES, finals, strict=True):
                    ddl.ensure_table(cursor, floor_schema, table)
                    staging.copy_into(
                        cursor,
                        sql.SQL("{}.{}").format(
                            sql.Identifier(floor_schema), sql.Identifier(table.name)
                        ),
                        table,
                        frame,
                    )
            floors.append(time.perf_counter() - began)
            del finals
            if round_ < args.rounds - 1:  # the database stays the same size from round to round
                with engine.begin() as connection:
                    connection.exec_driver_sql(f"DROP SCHEMA {schema}, {floor_schema} CASCADE")
            print(
                f"round {round_ + 1}                 flatten + apply {applies[-1]:.2f} s, "
                f"floor {floors[-1]:.2f} s: ratio {applies[-1] / floors[-1]:.2f}",
                flush=True,
            )

        # The last round's apply included the recompute of both marts; timed again on its own.
        days = set(applied[DERIVED_TABLES.index(CHAT_QUEUE_DURATIONS)].days_recomputed)
        checkpoint(engine)
        recompute_began = time.perf_counter()
        with cursor_for(engine, transaction=True) as cursor:
            levels = sum(
                aggregates.recompute_days(
                    cursor, schema, mart, "UTC", days, mark=True, interval_minutes=30
                )
                for mart in AGGREGATE_TABLES
            )
        recompute = time.perf_counter() - recompute_began
        server_floor = server_only_copy(engine, floor_schema, DERIVED_TABLES)

        total, floor = statistics.median(applies), statistics.median(floors)
        print(f"rows                    {rows} across {len(applied)} tables")
        for table, result in zip(DERIVED_TABLES, applied, strict=True):
            print(f"  {table.name:<22}{result.rows_written}")
        print(f"flatten + apply         {total:.2f} s median ({rows / total:,.0f} rows/s)")
        print(f"bare COPY (floor)       {floor:.2f} s median ({rows / floor:,.0f} rows/s)")
        print(f"ratio to the floor      {total / floor:.2f} (target 3.0)")
        print(
            f"recompute of both marts {recompute:.2f} s: {levels} rows of {len(days)} service "
            f"days, {recompute / total:.1%} of the apply"
        )
        print(
            f"server-only COPY        {server_floor:.2f} s (the same rows as pre-encoded binary "
            f"COPY data; ratio {total / server_floor:.2f})"
        )
        print(f"peak RSS, this process  {rss_applied:.0f} MB through the first apply")
        backends = server_peak_rss_mb(engine)
        if backends is not None:
            print(f"peak RSS, PostgreSQL    {backends:.0f} MB (largest server process)")


if __name__ == "__main__":
    main()
