"""queue_service_levels and queue_intervals through real Dagster runs: checks, metadata, loads,
the catch-up sensor."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from chat_assets.checks import reconciliation, specs
from chat_assets.partitions import daily_partitions
from chat_assets.queue_intervals import build_queue_intervals, intervals_metadata
from chat_assets.service_levels import build_catch_up, build_queue_service_levels, day_metadata
from chat_assets.settings import Settings
from chat_assets.tables import AGGREGATE_TABLES, QUEUE_INTERVALS, QUEUE_SERVICE_LEVELS
from chat_assets.warehouse import aggregates, windows
from chat_assets.warehouse.io_manager import warehouse_resources
from chat_assets.warehouse.resource import IO_MANAGER_KEY, Warehouse
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.support import materialize_day


@pytest.fixture
def settings(monkeypatch) -> Settings:
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
    monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", "Asia/Seoul")
    monkeypatch.setenv("CHAT_ASSETS_INTERVAL_MINUTES", "15")
    return Settings.from_env()


def test_demo_days_give_green_checks_plotted_figures_and_a_catch_up_for_moved_days(
    settings, database_url, engine, schema
):
    partitions = daily_partitions(settings)
    warehouse = Warehouse(database_url=database_url, db_schema=schema)
    mart = build_queue_service_levels(partitions, warehouse)
    intervals = build_queue_intervals(
        partitions, warehouse, interval_minutes=settings.interval_minutes
    )

    @dg.asset(
        partitions_def=partitions,
        ins={"levels": dg.AssetIn(QUEUE_SERVICE_LEVELS.name, input_manager_key=IO_MANAGER_KEY)},
    )
    def worst_queue(levels: pd.DataFrame) -> None:
        assert list(levels.columns) == QUEUE_SERVICE_LEVELS.column_names
        assert len(levels) > 0
        assert levels["service_day"].astype(str).unique().tolist() == ["2026-01-07"]

    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=80) as emulator:
        first = materialize_day(
            settings, emulator, database_url, schema, "2026-01-06", downstream=(mart, intervals)
        )
        # The next day's chats update some of the 6th's: the 6th changes after its run.
        second = materialize_day(
            settings,
            emulator,
            database_url,
            schema,
            "2026-01-07",
            downstream=(mart, intervals, worst_queue),
        )
    for result, table in itertools.product((first, second), AGGREGATE_TABLES):
        evaluations = [
            e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == table.name
        ]
        assert {e.check_name for e in evaluations} == {
            specs.NO_PERSONAL_TEXT,
            specs.UNIQUE_IN_PARTITION,
            specs.RECONCILED,
            *table.consistency,
            *([specs.ADDS_UP_TO_DAY] if table is QUEUE_INTERVALS else []),
        }
        assert all(e.passed for e in evaluations), [
            e.check_name for e in evaluations if not e.passed
        ]
    materialization = next(
        m for m in first.get_asset_materialization_events() if m.asset_key == mart.key
    ).materialization
    metadata = materialization.metadata
    assert materialization.partition == "2026-01-06"
    assert 0 <= metadata["service_level"].value <= 1
    assert metadata["offered"].value > metadata["answered"].value > metadata["abandoned"].value
    assert metadata["abandoned"].value > 0 and metadata["short_abandoned"].value > 0
    assert metadata["rated_chats"].value > 0
    assert 0 < metadata["abandon_rate"].value < 1 and metadata["asa_seconds"].value > 0
    assert metadata["queues"].value >= 2
    assert "| queue |" in metadata["worst_queues"].value
    assert metadata["dagster/partition_row_count"].value == metadata["queues"].value
    # The day's intervals: the worst and busiest, and a table of them, in local time.
    by_interval = next(
        m for m in first.get_asset_materialization_events() if m.asset_key == intervals.key
    ).materialization.metadata
    assert by_interval["interval_minutes"].value == 15
    assert 0 <= by_interval["worst_interval_service_level"].value <= metadata["service_level"].value
    assert by_interval["service_level"].value == metadata["service_level"].value
    worst = datetime.fromtimestamp(
        by_interval["worst_interval_start"].value, ZoneInfo("Asia/Seoul")
    )
    assert worst.date().isoformat() == "2026-01-06" and worst.minute % 15 == 0
    assert by_interval["worst_interval_local"].value == worst.strftime("%H:%M")
    table = by_interval["intervals_table"].value
    assert table.startswith("| interval (Asia/Seoul) | offered |")
    assert f"| {worst:%H:%M} |" in table
    assert len(table.splitlines()) == 2 + by_interval["intervals"].value
    stored = windows.load_window(
        engine, schema, QUEUE_INTERVALS, *partitions.time_window_for_partition_key("2026-01-06")
    )
    assert set(stored["interval_minutes"]) == {15}
    assert by_interval["busiest_interval_offered"].value == max(
        stored.groupby("interval_start")["offered"].sum()
    )

    # The 7th's apply recomputed the 6th in the warehouse, in both marts, and marked it there;
    # the sensor asks for it.
    marked = [
        d.isoformat() for d, _ in aggregates.days_to_refresh(engine, schema, QUEUE_SERVICE_LEVELS)
    ]
    assert "2026-01-06" in marked and "2026-01-07" not in marked
    assert [
        d.isoformat() for d, _ in aggregates.days_to_refresh(engine, schema, QUEUE_INTERVALS)
    ] == marked
    job, sensor = build_catch_up(partitions, running=True)
    # Evaluated as the daemon does, which hands the sensor its resources through the context.
    location = dg.Definitions(
        assets=[mart, intervals],
        jobs=[job],
        sensors=[sensor],
        resources=warehouse_resources(warehouse),
    )

    def requested() -> list[str]:
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(
                instance=instance,
                resources={"warehouse": warehouse},
                repository_def=location.get_repository_def(),
            )
            requests = list(sensor.evaluate_tick(context).run_requests or [])
        assert all(r.run_key and r.run_key.startswith(r.partition_key) for r in requests)
        return [r.partition_key for r in requests]

    assert requested() == marked
    assert {k.path[-1] for k in job.selection.resolve(location.resolve_asset_graph())} == {
        t.name for t in AGGREGATE_TABLES
    }
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"warehouse": warehouse},
            repository_def=location.get_repository_def(),
        )
        # Partitions from the 7th: every marked day lies before them. Then a warehouse where
        # nothing is marked. Each tick says why it requested nothing, on the sensor's page.
        later = daily_partitions(replace(settings, start_date=date(2026, 1, 7)))
        _, late_sensor = build_catch_up(later, running=True)
        late = late_sensor.evaluate_tick(context)
        empty = Warehouse(database_url=database_url, db_schema=f"{schema}_unmarked")
        idle = sensor.evaluate_tick(
            dg.build_sensor_context(
                instance=instance,
                resources={"warehouse": empty},
                repository_def=location.get_repository_def(),
            )
        )
    assert (late.run_requests, late.skip_message) == (
        [],
        f"marked service days outside the partitions, not requested: {len(marked)}",
    )
    assert (idle.run_requests, idle.skip_message) == (
        [],
        "no service day changed since it was materialized",
    )
    start, end = partitions.time_window_for_partition_key("2026-01-06")
    for table in AGGREGATE_TABLES:
        assert reconciliation.reconciled(
            engine, schema, table, "Asia/Seoul", start, end, interval_minutes=15
        ).passed
    assert reconciliation.adds_up_to_day(
        engine, schema, QUEUE_INTERVALS, "Asia/Seoul", start, end
    ).passed
    # The daily mart materialized alone: the day is still due for its intervals.
    aggregates.recompute_window(
        engine, schema, QUEUE_SERVICE_LEVELS, "Asia/Seoul", start, end, interval_minutes=15
    )
    assert "2026-01-06" in requested()
    aggregates.recompute_window(
        engine, schema, QUEUE_INTERVALS, "Asia/Seoul", start, end, interval_minutes=15
    )
    assert "2026-01-06" not in requested()


def test_the_worst_queues_table_guards_names_and_handles_a_quiet_day():
    rows = pd.DataFrame(
        {
            "menu_path_id": pd.array([1, 2, None], dtype="Int64"),
            "menu_path": ["Sales | EU", "Call jane@example.com now", None],
            "offered": [10, 4, 3],
            "answered": [9, 2, 0],
            "in_sla": [9, 1, 0],
            "not_in_sla": [1, 3, 0],
            "abandoned": [1, 1, 2],
            "short_abandoned": [0, 1, 1],
            "asa_seconds": [10.0, 40.0, None],
            "rated_chats": [4, 0, 1],
            "rated_4_or_5": [3, 0, 0],
            "service_level": [0.9, 0.25, None],
            "target_percent": [80.0, 90.0, None],
            "met_target": pd.array([True, False, None], dtype="boolean"),
        }
    )
    metadata = day_metadata(rows)
    table = metadata["worst_queues"].value
    assert table.index("[email]") < table.index("Sales \\| EU")  # worst first
    assert "jane" not in table
    assert metadata["queues_below_target"] == 1
    assert metadata["service_level"].value == round(10 / 14, 4)
    # Over all queues, each figure from the day's counts, not a mean of the queues' ratios.
    assert metadata["abandon_rate"].value == round(4 / (11 + 4), 4)
    assert metadata["asa_seconds"].value == round((9 * 10 + 2 * 40) / 11, 4)
    assert metadata["rated_4_or_5_share"].value == round(3 / 5, 4)
    assert (metadata["answered"], metadata["short_abandoned"], metadata["rated_chats"]) == (
        11,
        2,
        5,
    )
    quiet = day_metadata(rows.iloc[2:])
    assert "service_level" not in quiet
    assert "asa_seconds" not in quiet and quiet["abandon_rate"].value == 1.0
    assert "No queue segment" in quiet["worst_queues"].value


def test_the_catch_up_sensor_with_the_warehouse_down_says_one_line(tmp_path):
    """Through Dagster's own command, on the production location: the tick is skipped with one
    line naming the setting to check, not a database driver's traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UJET_", "CHAT_ASSETS_"))}
    env |= {
        "DAGSTER_HOME": str(tmp_path),
        "UJET_SUBDOMAIN": "acme",
        "UJET_COMPANY_KEY": "key",
        "UJET_COMPANY_SECRET": "secret",
        "CHAT_ASSETS_PII_KEY": "sensor-test-key-" + "5b4a39281f0e7d6c5b4a",
        "CHAT_ASSETS_DATABASE_URL": "postgresql+psycopg://loader:pw@127.0.0.1:1/warehouse",
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    root = str(Path(__file__).resolve().parents[1])
    sensor = ["sensor", "preview", "queue_service_levels_catch_up"]
    done = subprocess.run(
        [dagster, *sensor, "-m", "chat_assets.definitions", "-d", root],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "skipping: PostgreSQL at 127.0.0.1:1 (database warehouse) could not be reached" in said
    assert "check CHAT_ASSETS_DATABASE_URL" in said
    assert "Traceback" not in said and "pw@" not in said


def test_the_worst_interval_is_a_busy_one_and_a_clock_change_shows_its_offsets():
    def rows(starts: list[str], in_sla: list[int], not_in_sla: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "interval_start": pd.to_datetime(starts, utc=True),
                "interval_minutes": 30,
                "menu_path_id": pd.array([1] * len(starts), dtype="Int64"),
                "offered": [a + b + 1 for a, b in zip(in_sla, not_in_sla, strict=True)],
                "answered": [a + b for a, b in zip(in_sla, not_in_sla, strict=True)],
                "abandoned": [1] * len(starts),
                "in_sla": in_sla,
                "not_in_sla": not_in_sla,
            }
        )

    # 01:30 EDT and 01:30 EST on 2026-11-01 in New York: one clock time, two intervals.
    day = rows(
        ["2026-11-01 04:00Z", "2026-11-01 05:30Z", "2026-11-01 06:30Z", "2026-11-01 06:30Z"],
        [0, 4, 9, 1],
        [1, 4, 1, 0],
    )
    metadata = intervals_metadata(day, "America/New_York")
    # 00:00 judged one segment only: the worst is 01:30 EDT at 50%, not 00:00 at 0%.
    assert metadata["worst_interval_local"] == "01:30"
    assert metadata["worst_interval_start"].value == pd.Timestamp("2026-11-01 05:30Z").timestamp()
    assert metadata["worst_interval_service_level"].value == 0.5
    assert metadata["intervals"] == 3 and metadata["busiest_interval_offered"] == 13
    table = metadata["intervals_table"].value
    assert "| 01:30 -0400 | 9 | 8 | 1 | 50.0% |" in table
    assert "| 01:30 -0500 | 13 | 11 | 2 | 90.9% |" in table  # both queues' rows summed
    assert metadata["service_level"].value == round(14 / 20, 4)
    # A quiet day: the busiest interval judged one segment, so that one is the worst.
    quiet = intervals_metadata(day.iloc[:1], "America/New_York")
    assert (
        quiet["worst_interval_local"] == "00:00" and "-0400" not in quiet["intervals_table"].value
    )
    # Nothing judged: no worst interval, and no figures to plot.
    none = intervals_metadata(rows(["2026-11-02 05:00Z"], [0], [0]), "America/New_York")
    assert "worst_interval_start" not in none and "service_level" not in none
    assert "No queue segment" in intervals_metadata(day.iloc[:0], "UTC")["intervals_table"].value
