"""queue_service_levels through real Dagster runs: checks, metadata, loads, the catch-up sensor."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from chat_assets.checks import reconciliation, specs
from chat_assets.partitions import daily_partitions
from chat_assets.service_levels import build_catch_up, build_queue_service_levels, day_metadata
from chat_assets.settings import Settings
from chat_assets.tables import QUEUE_SERVICE_LEVELS
from chat_assets.warehouse import aggregates
from chat_assets.warehouse.io_manager import warehouse_resources
from chat_assets.warehouse.resource import IO_MANAGER_KEY, Warehouse
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.support import materialize_day


@pytest.fixture
def settings(monkeypatch) -> Settings:
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
    monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", "Asia/Seoul")
    return Settings.from_env()


def test_demo_days_give_green_checks_plotted_figures_and_a_catch_up_for_moved_days(
    settings, database_url, engine, schema
):
    partitions = daily_partitions(settings)
    warehouse = Warehouse(database_url=database_url, db_schema=schema)
    mart = build_queue_service_levels(partitions, warehouse)

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
            settings, emulator, database_url, schema, "2026-01-06", downstream=(mart,)
        )
        # The next day's chats update some of the 6th's: the 6th changes after its run.
        second = materialize_day(
            settings,
            emulator,
            database_url,
            schema,
            "2026-01-07",
            downstream=(mart, worst_queue),
        )
    for result in (first, second):
        evaluations = [
            e
            for e in result.get_asset_check_evaluations()
            if e.asset_key.path[-1] == mart.key.path[-1]
        ]
        assert {e.check_name for e in evaluations} == {
            specs.NO_PERSONAL_TEXT,
            specs.UNIQUE_IN_PARTITION,
            specs.RECONCILED,
            *QUEUE_SERVICE_LEVELS.consistency,
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
    assert metadata["offered"].value > metadata["abandoned"].value > 0
    assert metadata["queues"].value >= 2
    assert "| queue |" in metadata["worst_queues"].value
    assert metadata["dagster/partition_row_count"].value == metadata["queues"].value

    # The 7th's apply recomputed the 6th in the warehouse and marked it; the sensor asks for it.
    marked = [
        d.isoformat() for d, _ in aggregates.days_to_refresh(engine, schema, QUEUE_SERVICE_LEVELS)
    ]
    assert "2026-01-06" in marked and "2026-01-07" not in marked
    job, sensor = build_catch_up(partitions, running=True)
    # Evaluated as the daemon does, which hands the sensor its resources through the context.
    location = dg.Definitions(
        assets=[mart], jobs=[job], sensors=[sensor], resources=warehouse_resources(warehouse)
    )
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"warehouse": warehouse},
            repository_def=location.get_repository_def(),
        )
        requests = list(sensor.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == marked
    assert all(r.run_key and r.run_key.startswith(r.partition_key) for r in requests)
    start, end = partitions.time_window_for_partition_key("2026-01-06")
    assert reconciliation.reconciled(
        engine, schema, QUEUE_SERVICE_LEVELS, "Asia/Seoul", start, end
    ).passed


def test_the_worst_queues_table_guards_names_and_handles_a_quiet_day():
    rows = pd.DataFrame(
        {
            "menu_path_id": pd.array([1, 2, None], dtype="Int64"),
            "menu_path": ["Sales | EU", "Call jane@example.com now", None],
            "offered": [10, 4, 3],
            "in_sla": [9, 1, 0],
            "not_in_sla": [1, 3, 0],
            "abandoned": [1, 2, 3],
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
    quiet = day_metadata(rows.iloc[2:])
    assert "service_level" not in quiet
    assert "No queue segment" in quiet["worst_queues"].value
