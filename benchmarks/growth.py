"""Does a day cost more when years of history are already stored? Per step, the day-1 time and
the growth in seconds per million chats of history.

Consecutive demo days (default 30 x 20,000 chats, no seasonality) go through the project's own
functions in order: land raw_chats, apply the flattened tables newest-wins (with the
service-level recompute), then every query the assets' checks and metadata run. Each step's
times are fitted by least squares against the chats stored before the day; each growth is printed
with its standard error, since a day's time varies by about as much as the growth measured.

A demo day holds second versions of chats of up to five days before it, and its apply recomputes
the service levels of every day those chats touch. Before the first five days have been stored, a
day finds fewer of those chats and recomputes fewer days, for reasons that have nothing to do with
the size of the history. So that many days are landed and applied first, not timed (`--warm-up`),
and the measured days all have the same mix.

Run: .venv/bin/python -m benchmarks.growth [--days 30] [--warm-up 5] [--chats 20000]
     [--database-url URL]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import date, timedelta
from functools import partial

from benchmarks.database import database
from chat_assets.checks import declared, landing, personal_text, reconciliation, uniqueness
from chat_assets.grammar import parse_instant
from chat_assets.tables import AGGREGATE_TABLES, CHATS, DERIVED_TABLES, QUEUE_INTERVALS, RAW_CHATS
from chat_assets.warehouse import aggregates, bookkeeping, newest_wins, windows
from chat_assets.warehouse.connection import engine_for
from chat_assets_demo.demo_data import LATE_SHARES, chats_updated_between
from chat_assets_tests.windows import day_window, landing_frame

FIRST = date(2026, 1, 1)
FINGERPRINT = "k1:bench"
SCHEMA = "growth"


def check_queries(engine, day: date) -> None:
    """Every query of the checks of raw_chats, chat_tables and both queue marts."""
    start, end = day_window(day, "UTC")
    landing.pii_key_unchanged(engine, SCHEMA, FINGERPRINT)
    personal_text.no_personal_text(engine, SCHEMA, RAW_CHATS, start, end)
    for table in DERIVED_TABLES:
        stored = windows.load_window(
            engine, SCHEMA, table, start, end, columns=declared.columns_checked(table)
        )
        personal_text.no_personal_text(engine, SCHEMA, table, start, end)
        uniqueness.unique_in_partition(table, stored)
        uniqueness.unique_table_wide(engine, SCHEMA, table, start, end)
        list(declared.partition_checks(table, stored))
    for mart in AGGREGATE_TABLES:
        stored = windows.load_window(engine, SCHEMA, mart, start, end)
        personal_text.no_personal_text(engine, SCHEMA, mart, start, end)
        reconciliation.reconciled(engine, SCHEMA, mart, "UTC", start, end, interval_minutes=30)
        if mart is QUEUE_INTERVALS:
            reconciliation.adds_up_to_day(engine, SCHEMA, mart, "UTC", start, end)
        list(declared.partition_checks(mart, stored))


def metadata_queries(engine, day: date) -> None:
    """What the IO manager reads for metadata: each table's row count, the mart's day."""
    start, end = day_window(day, "UTC")
    for table in (RAW_CHATS, *DERIVED_TABLES, *AGGREGATE_TABLES):
        bookkeeping.row_count(engine, SCHEMA, table)
    for mart in AGGREGATE_TABLES:
        aggregates.recompute_window(engine, SCHEMA, mart, "UTC", start, end, interval_minutes=30)


def one_day(engine, day: date, frame) -> dict[str, float]:
    """Seconds of each step of one day, in the order the assets run them."""
    start, end = day_window(day, "UTC")
    steps: dict[str, Callable[[], object]] = {
        "landing": partial(windows.replace_window, engine, SCHEMA, RAW_CHATS, frame, start, end),
        "apply": partial(
            newest_wins.apply_newest,
            engine,
            SCHEMA,
            DERIVED_TABLES,
            start,
            end,
            timezone="UTC",
            interval_minutes=30,
        ),
        "checks": partial(check_queries, engine, day),
        "metadata": partial(metadata_queries, engine, day),
    }
    seconds = {}
    for name, step in steps.items():
        began = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - began
    return seconds


def day_frame(day: date, chats: int):
    """The landing frame of one demo day: its chat versions updated inside the day."""
    start, end = day_window(day, "UTC")
    records = chats_updated_between(start, end, chats_per_day=chats, seasonal=False)
    inside = [r for r in records if start <= parse_instant(r["updated_at"]) < end]
    return landing_frame(inside, "UTC", FINGERPRINT)


def slope(history: list[float], seconds: list[float]) -> tuple[float, float]:
    """Least-squares growth, seconds per million chats of history, and its standard error (the
    spread of the days around the line, as the fit sees it)."""
    n = len(history)
    mean_x, mean_y = sum(history) / n, sum(seconds) / n
    spread = sum((x - mean_x) ** 2 for x in history)
    if not spread or n < 3:
        return 0.0, float("nan")
    grows = sum((x - mean_x) * (y - mean_y) for x, y in zip(history, seconds, strict=True)) / spread
    residuals = sum(
        (y - mean_y - grows * (x - mean_x)) ** 2 for x, y in zip(history, seconds, strict=True)
    )
    return grows, (residuals / (n - 2) / spread) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--warm-up",
        type=int,
        default=len(LATE_SHARES),
        help="days stored before the measured ones, not timed",
    )
    parser.add_argument("--chats", type=int, default=20_000, help="new chats per day")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with database(args.database_url, "growth") as url:
        engine = engine_for(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        steps: dict[str, list[float]] = {"landing": [], "apply": [], "checks": [], "metadata": []}
        history: list[float] = []
        if args.warm_up:
            print(f"warm-up: {args.warm_up} days stored first, not timed", flush=True)
        for offset in range(-args.warm_up, args.days):
            day = FIRST + timedelta(days=offset)
            frame = day_frame(day, args.chats)
            if offset < 0:
                one_day(engine, day, frame)
                continue
            stored = bookkeeping.row_count(engine, SCHEMA, CHATS) if offset or args.warm_up else 0
            history.append(stored / 1e6)
            line = [f"day {offset + 1:>2}  history {stored:>9,} chats"]
            for name, seconds in one_day(engine, day, frame).items():
                steps[name].append(seconds)
                line.append(f"{name} {seconds:5.2f} s")
            print("  ".join(line), flush=True)
        print()
        print(f"{'step':<10}{'day 1':>8}{'mean':>8}{'growth, s per million chats':>32}")
        for name, seconds in steps.items():
            grows, error = slope(history, seconds)
            mean = sum(seconds) / len(seconds)
            print(f"{name:<10}{seconds[0]:>7.2f}s{mean:>7.2f}s{grows:>+24.2f} ± {error:.2f}")
        together = [sum(day) for day in zip(*steps.values(), strict=True)]
        grows, error = slope(history, together)
        print(f"{'together':<10}{'':>16}{grows:>+24.2f} ± {error:.2f}  (target below 0.5)")
        print(f"history at the end: {history[-1] * 1e6:,.0f} chats")


if __name__ == "__main__":
    main()
