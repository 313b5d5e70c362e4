"""raw_chats -> the four flattened tables, through real Dagster runs, with their checks."""

from __future__ import annotations

import copy
import json

import dagster as dg
import pandas as pd
import pytest

from chat_assets.checks import specs
from chat_assets.partitions import daily_partitions
from chat_assets.settings import Settings
from chat_assets.tables import CHATS, DERIVED_TABLES, SLA_CONSISTENT, SLA_EVENT_VALID
from chat_assets.warehouse.resource import IO_MANAGER_KEY
from chat_assets.warehouse.summary import summary_markdown
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.support import DATA, materialize_day


@pytest.fixture
def settings(monkeypatch) -> Settings:
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2016-01-01")
    return Settings.from_env()


def run(settings: Settings, emulator: UjetEmulator, url: str, schema: str, day: str):
    return materialize_day(settings, emulator, url, schema, day)


def evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def count(engine, schema: str, table: str) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f"SELECT count(*) FROM {schema}.{table}").scalar()


def test_demo_days_in_any_order_give_green_checks_and_newest_chats(
    settings, database_url, engine, schema
):
    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=60) as emulator:
        results = [
            run(settings, emulator, database_url, schema, day)
            for day in ["2026-01-06", "2026-01-05", "2026-01-07", "2026-01-06"]
        ]
    for result in results:
        assert result.success
        failed = [key for key, e in evaluations(result).items() if not e.passed]
        assert failed == []
    # raw_chats 5; each flattened table 3, but chat_offer_events 2 (its items have no id to
    # look up table-wide); chat_queue_durations 2 more; chats and chat_participants
    # no_erased_subject; current_key_version on the 5 tables that hold pseudonyms
    assert len(evaluations(results[0])) == 5 + 9 * 3 + 2 + 2 + 2 + 5
    assert ("chat_participants", "no_erased_subject") in evaluations(results[0])
    for table in DERIVED_TABLES:
        assert count(engine, schema, table.name) > 0, table.name
    with engine.connect() as connection:
        # every chat's kept version is the newest one landed in raw_chats
        stale = connection.exec_driver_sql(
            f"SELECT count(*) FROM {schema}.chats c JOIN {schema}.raw_chats r ON r.id = c.id"
            " WHERE r.updated_at > c.updated_at"
        ).scalar()
        children = connection.exec_driver_sql(
            f"SELECT count(*) FROM {schema}.chat_handle_durations h"
            f" JOIN {schema}.chats c ON c.id = h.chat_id WHERE h.chat_updated_at <> c.updated_at"
        ).scalar()
    assert stale == 0
    assert children == 0
    metadata = results[0].asset_materializations_for_node("chat_tables")
    queue = next(m for m in metadata if m.asset_key.path[-1] == "chat_queue_durations").metadata
    assert 0.0 <= queue["in_sla_rate"].value <= 1.0
    assert queue["source"].value == "ujet"
    assert queue["dagster/partition_row_count"].value > 0
    assert "| service_level_event | rows |" in queue["preview"].value
    # The chats output's plan wrote all four tables; the others record what they hold.
    chats = next(m for m in metadata if m.asset_key.path[-1] == "chats").metadata
    written = chats["tables_written"].value
    assert list(written) == [t.name for t in DERIVED_TABLES]
    assert queue["written_with"].value == "chats"
    assert "rows_written" not in queue
    # the first day landed into empty tables: what was written is what the partition holds
    for table in DERIVED_TABLES[1:]:
        stored = next(m for m in metadata if m.asset_key.path[-1] == table.name).metadata
        assert stored["dagster/partition_row_count"].value == written[table.name]["rows_written"]
    assert written["chat_queue_durations"]["service_days_recomputed"]


def crafted_chats() -> list[dict]:
    """The vendor sample's two chats moved into one day, then broken on purpose."""
    sample = json.loads((DATA / "vendor_sample.json").read_text())
    first, second = (copy.deepcopy(chat) for chat in sample)
    first["updated_at"] = "2016-03-02T10:00:00.000Z"
    second["updated_at"] = "2016-03-02T11:00:00.000Z"
    first["queue_durations"][0]["service_level_event"] = "abandoned"
    first["queue_durations"].append(
        {**first["queue_durations"][0], "id": 42, "service_level_event": "Abandoned By Customer"}
    )
    second["queue_durations"][0]["service_level_event"] = "in_sla"  # 12 s <= 60 s: consistent
    second["queue_durations"].append(
        {**second["queue_durations"][0], "queue_duration": 95, "service_level_event": "in_sla"}
    )
    second["queue_durations"].append(
        {
            **second["queue_durations"][0],
            "id": 99,
            "queue_duration": 10,
            "event": "answered",
            "service_level_event": "not_in_sla",
        }
    )
    # Answered after exactly its target: a miss by a partner's reading, a hit by another; the
    # vendor does not say, so neither verdict is inconsistent.
    second["queue_durations"].append(
        {
            **second["queue_durations"][0],
            "id": 100,
            "queue_duration": 60,
            "event": "answered",
            "service_level_event": "not_in_sla",
        }
    )
    # Still waiting: no end, no outcome and no verdict yet.
    first["queue_durations"].append(
        {
            **first["queue_durations"][0],
            "id": 43,
            "ended_at": None,
            "event": None,
            "service_level_event": None,
        }
    )
    first["transfers"] = [{"id": 7, "status": "transferred"}, {"id": 7, "status": "failed"}]
    return [first, second]


def test_the_table_wide_check_finds_an_id_an_earlier_day_already_holds(
    settings, database_url, engine, schema
):
    """The check looks up only the partition's ids, yet a repeat across days is found, on the
    day that brings it, while the days before it stay clean."""
    sample = json.loads((DATA / "vendor_sample.json").read_text())
    first, second = (copy.deepcopy(chat) for chat in sample)
    first["updated_at"] = "2016-03-02T10:00:00.000Z"
    second["updated_at"] = "2016-03-03T11:00:00.000Z"
    first["handle_durations"] = first["handle_durations"][:1]
    second["handle_durations"] = [{**second["handle_durations"][0], "id": 777}]
    first["handle_durations"][0]["id"] = 777
    with UjetEmulator(company_key="k", company_secret="s", records=[first, second]) as emulator:
        earlier = run(settings, emulator, database_url, schema, "2016-03-02")
        later = run(settings, emulator, database_url, schema, "2016-03-03")
    assert evaluations(earlier)[("chat_handle_durations", specs.UNIQUE_TABLE_WIDE)].passed
    wide = evaluations(later)[("chat_handle_durations", specs.UNIQUE_TABLE_WIDE)]
    assert not wide.passed
    assert wide.metadata["repeated_ids"].value == [
        {"id": 777, "chat_ids": sorted([first["id"], second["id"]])}
    ]
    materialized = {
        m.asset_key.path[-1]: m.metadata
        for m in later.asset_materializations_for_node("chat_tables")
    }
    for table in ("chats", "chat_handle_durations"):
        assert materialized[table]["dagster/row_count"].value == count(engine, schema, table)


def test_crafted_bad_data_turns_the_right_checks_red_and_keeps_every_row(
    settings, database_url, engine, schema
):
    with UjetEmulator(company_key="k", company_secret="s", records=crafted_chats()) as emulator:
        result = run(settings, emulator, database_url, schema, "2016-03-02")
    assert result.success
    found = evaluations(result)
    sla = found[("chat_queue_durations", SLA_EVENT_VALID)]
    assert not sla.passed and sla.severity == dg.AssetCheckSeverity.ERROR
    assert sla.metadata["bad_values"].value == [
        {"value": "<21 characters, not shown>", "rows": 1, "chat_ids": [1]},
        {"value": "abandoned", "rows": 1, "chat_ids": [1]},
    ]
    assert sla.metadata["not_recorded"].value == 1  # the segment still waiting: no verdict yet
    consistent = found[("chat_queue_durations", SLA_CONSISTENT)]
    assert not consistent.passed and consistent.severity == dg.AssetCheckSeverity.WARN
    assert consistent.metadata["in_sla_over_target"].value == 1
    assert consistent.metadata["in_sla_over_target_chat_ids"].value == [2]
    assert consistent.metadata["not_in_sla_within_target"].value == 1  # the answered one only
    in_partition = found[("chat_transfers", specs.UNIQUE_IN_PARTITION)]
    assert not in_partition.passed
    assert in_partition.metadata["duplicated_keys"].value == [{"key": [1, 7], "rows": 2}]
    wide = found[("chat_handle_durations", specs.UNIQUE_TABLE_WIDE)]
    assert not wide.passed  # the vendor repeats handle id 30001 under chats 1 and 2
    assert wide.metadata["repeated_ids"].value == [{"id": 30001, "chat_ids": [1, 2]}]
    assert found[("chats", specs.UNIQUE_IN_PARTITION)].passed
    assert found[("chats", specs.UNIQUE_TABLE_WIDE)].passed
    assert found[("raw_chats", specs.COMPLETE_WINDOW)].passed
    assert count(engine, schema, "chat_queue_durations") == 7
    assert count(engine, schema, "chat_transfers") == 2
    assert count(engine, schema, "chat_handle_durations") == 2


def test_the_lists_keep_every_row_when_ids_repeat_and_their_checks_name_the_repeats(
    settings, database_url, engine, schema
):
    """The vendor's sample chats with each new list filled so that child ids repeat across the
    two chats, as UJET's own sample repeats segment ids, and one offer listed twice."""
    first, second = crafted_chats()
    participant = {
        "id": 5,
        "type": "end_user",
        "status": "finished",
        "end_user_id": 1,
        "call_duration": 90,
        "connected_at": "2016-03-02T09:58:00.000Z",
    }
    agent = {**participant, "id": 6, "type": "agent", "end_user_id": None, "user_id": 4}
    first["participants"] = [participant, agent]
    second["participants"] = [participant]
    first["virtual_agent_handle_durations"] = copy.deepcopy(
        second["virtual_agent_handle_durations"]
    )
    first["consumer_event_durations"] = [
        {**first["consumer_event_durations"][0], "id": 11},
        {**first["consumer_event_durations"][0], "id": 12, "type": "survey"},
    ]
    second["consumer_event_durations"] = [{**first["consumer_event_durations"][0], "id": 11}]
    offer = {"casting_time": "2016-03-02T09:59:00.000Z", "group": "Group 1"}
    first["offer_events"] = [offer, {**offer, "group": "Group 2"}, offer]
    second["offer_events"] = [offer]
    with UjetEmulator(company_key="k", company_secret="s", records=[first, second]) as emulator:
        result = run(settings, emulator, database_url, schema, "2016-03-02")
    assert result.success
    found = evaluations(result)
    for table, repeated in [
        ("chat_participants", 5),
        ("chat_consumer_event_durations", 11),
        ("chat_virtual_agent_handle_durations", 1),
    ]:
        wide = found[(table, specs.UNIQUE_TABLE_WIDE)]
        assert not wide.passed and wide.severity == dg.AssetCheckSeverity.WARN, table
        assert wide.metadata["repeated_ids"].value == [{"id": repeated, "chat_ids": [1, 2]}]
        assert found[(table, specs.UNIQUE_IN_PARTITION)].passed, table
    offers = found[("chat_offer_events", specs.UNIQUE_IN_PARTITION)]
    assert not offers.passed
    assert offers.metadata["duplicated_keys"].value == [
        {"key": [1, "2016-03-02T09:59:00+00:00", "<7 characters, not shown>"], "rows": 2}
    ]
    assert ("chat_offer_events", specs.UNIQUE_TABLE_WIDE) not in found
    assert found[("chat_virtual_agent_deflected_escalations", specs.UNIQUE_TABLE_WIDE)].passed
    # Every row stays, keyed by its chat and its place in the list.
    assert count(engine, schema, "chat_participants") == 3
    assert count(engine, schema, "chat_consumer_event_durations") == 3
    assert count(engine, schema, "chat_offer_events") == 4
    assert count(engine, schema, "chat_virtual_agent_handle_durations") == 2
    with engine.connect() as connection:
        people = connection.exec_driver_sql(
            f"SELECT p.type, p.user_id = c.agent_id, p.end_user_id = c.end_user_id"
            f" FROM {schema}.chat_participants p JOIN {schema}.chats c ON c.id = p.chat_id"
            " WHERE p.chat_id = 1 ORDER BY p.position"
        ).fetchall()
        raw_ids = connection.exec_driver_sql(
            f"SELECT count(*) FROM {schema}.chat_participants"
            " WHERE end_user_id = '1' OR user_id = '4'"
        ).scalar()
    # Participants join to the chat's agent and customer by the same pseudonyms, never raw ids.
    assert people == [("end_user", None, True), ("agent", True, None)]
    assert raw_ids == 0


def test_fewer_chats_than_the_api_total_fails_completeness(settings, database_url, schema):
    with UjetEmulator(company_key="k", company_secret="s", records=crafted_chats()) as emulator:
        emulator.inject("wrong_total", count=20, delta=3)  # every answer: both reads are short
        result = materialize_day(
            settings, emulator, database_url, schema, "2016-03-02", raise_on_error=False
        )
    complete = evaluations(result)[("raw_chats", specs.COMPLETE_WINDOW)]
    assert not complete.passed
    assert complete.metadata["api_total"].value == 5
    assert complete.metadata["distinct_received"].value == 2
    assert complete.metadata["shortfall"].value == 3
    assert complete.metadata["reread"].value is True


def test_previews_show_documented_values_only():
    # four rows: two finished, one with an email where a status belongs, one without status
    preview = summary_markdown(CHATS, 4, {"finished": 2})
    assert "| finished | 2 |" in preview
    assert "| other values (not shown) | 2 |" in preview
    assert "minji" not in preview


def test_a_downstream_asset_loads_a_partition_as_a_frame(settings, database_url, engine, schema):
    """load_input: the IO manager serves a day of a flattened table with its declared dtypes."""
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(
        partitions_def=daily_partitions(settings),
        ins={"chats": dg.AssetIn(input_manager_key=IO_MANAGER_KEY)},
    )
    def chat_report(chats: pd.DataFrame) -> None:
        seen["chats"] = chats

    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=30) as emulator:
        materialize_day(
            settings, emulator, database_url, schema, "2026-01-05", downstream=(chat_report,)
        )
    frame = seen["chats"]
    with engine.connect() as connection:
        stored = (
            connection.exec_driver_sql(
                f"SELECT id FROM {schema}.chats WHERE updated_at >= '2026-01-05'"
                " AND updated_at < '2026-01-06' ORDER BY id"
            )
            .scalars()
            .all()
        )
    assert sorted(frame["id"].tolist()) == stored and len(stored) > 0
    assert list(frame.columns) == CHATS.column_names
    assert str(frame["id"].dtype) == "Int64"
    assert str(frame["updated_at"].dtype) == "datetime64[us, UTC]"
