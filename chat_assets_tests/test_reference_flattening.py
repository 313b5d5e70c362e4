"""Flattening: the vendor's own sample, drifted and null-laden records."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from chat_assets.tables import (
    CHAT_CONSUMER_EVENT_DURATIONS,
    CHAT_CONSUMER_HANDLE_DURATIONS,
    CHAT_HANDLE_DURATIONS,
    CHAT_OFFER_EVENTS,
    CHAT_PARTICIPANTS,
    CHAT_QUEUE_DURATIONS,
    CHAT_TRANSFERS,
    CHAT_VIRTUAL_AGENT_DEFLECTED_ESCALATIONS,
    CHAT_VIRTUAL_AGENT_HANDLE_DURATIONS,
    CHATS,
    DERIVED_TABLES,
)
from chat_assets_tests.reference_flattening import flatten, newest_versions
from chat_assets_tests.support import DATA


@pytest.fixture
def sample() -> list[dict]:
    """The two chats of the vendor's sample response, rebuilt as valid JSON."""
    return json.loads((DATA / "vendor_sample.json").read_text())


@pytest.fixture
def model() -> list[dict]:
    """The vendor's chat model (placeholders, no child ids), rebuilt as valid JSON."""
    return json.loads((DATA / "vendor_model.json").read_text())


def test_sample_chats(sample):
    chats = flatten(sample, CHATS).rows
    assert chats["id"].tolist() == [1, 2]
    assert chats["agent_id"].tolist()[0] == "4"  # text: sanitized payloads hold pseudonyms
    assert pd.isna(chats["agent_id"].iloc[1])  # agent_info: null
    assert chats["end_user_id"].tolist() == ["1", "1"]
    assert chats["photo_count"].tolist() == [1, 0]
    assert chats["virtual_agent_name"].iloc[1] == "D2-R2"
    assert chats["rating"].tolist() == [5.0, 2.0]
    assert str(chats["updated_at"].dtype) == "datetime64[us, UTC]"
    assert chats["updated_at"].iloc[0] == pd.Timestamp("2016-02-26T18:37:24Z")


def test_sample_child_ids_repeat_across_chats_and_no_row_is_lost(sample):
    handles = flatten(sample, CHAT_HANDLE_DURATIONS).rows
    queues = flatten(sample, CHAT_QUEUE_DURATIONS).rows
    assert handles[["chat_id", "id"]].values.tolist() == [[1, 30001], [2, 30001]]
    assert queues[["chat_id", "id"]].values.tolist() == [[1, 41234], [2, 41234]]
    assert handles["transfer"].tolist() == [False, False]  # sent as 0
    assert handles["menu_path"].tolist() == ["Deathstar/Shipping"] * 2  # a string inside lists
    assert queues["service_level_event"].tolist() == ["not_in_sla"] * 2
    assert queues["queue_duration"].tolist() == [22, 12]
    assert flatten(sample, CHAT_TRANSFERS).rows.empty


def test_versions_cover_chats_without_child_rows(sample):
    transfers = flatten(sample, CHAT_TRANSFERS)
    assert transfers.rows.empty
    assert transfers.versions["chat_id"].tolist() == [1, 2]


def test_model_with_object_menu_path_and_missing_child_ids(model):
    chats = flatten(model, CHATS)
    assert chats.rows["menu_path_name"].tolist() == ["Ringo"]
    assert chats.rows["menu_path_materialized_path"].tolist() == ["3389"]
    assert chats.rows["selected_menu_hidden"].tolist() == ["string"]
    # "string" placeholders in timestamp columns cannot be times: NULL, and counted
    handles = flatten(model, CHAT_HANDLE_DURATIONS)
    assert len(handles.rows) == 1
    assert pd.isna(handles.rows["id"].iloc[0])  # the model's segments have no id
    transfers = flatten(model, CHAT_TRANSFERS)
    assert transfers.rows["from_menu_name"].tolist() == ["string"]
    assert transfers.rows["from_agent_id"].tolist() == ["0"]


def test_the_sample_customer_and_bot_lists(sample):
    consumer = flatten(sample, CHAT_CONSUMER_HANDLE_DURATIONS).rows
    assert consumer[["chat_id", "id", "message_count", "response_count"]].values.tolist() == [
        [1, 100, 10, 6]
    ]
    assert consumer["response_time_avg"].tolist() == [12.0]
    assert consumer["started_at"].tolist() == [pd.Timestamp("2016-02-19T18:50:08Z")]
    survey = flatten(sample, CHAT_CONSUMER_EVENT_DURATIONS).rows
    assert survey[["chat_id", "id", "type", "event", "duration"]].values.tolist() == [
        [1, 11, "csat", "finished", 4]
    ]
    assert survey["menu_path_id"].tolist() == [11]
    bot = flatten(sample, CHAT_VIRTUAL_AGENT_HANDLE_DURATIONS).rows
    assert bot[["chat_id", "id", "virtual_agent_id", "virtual_agent_name"]].values.tolist() == [
        [2, 1, 10, "D2-R2"]
    ]
    assert bot["escalation_reason"].tolist() == ["by_end_user_message"]
    assert bot["transfer"].tolist() == [False]  # a boolean here, 0/1 in the other lists
    assert bot["fallback_response_count"].tolist() == [1]
    escalations = flatten(sample, CHAT_VIRTUAL_AGENT_DEFLECTED_ESCALATIONS).rows
    assert escalations[["chat_id", "deflection", "virtual_agent_id"]].values.tolist() == [
        [2, "after_hours", 10]
    ]
    assert escalations["escalated_at"].tolist() == [pd.Timestamp("2016-03-02T23:23:56Z")]
    assert flatten(sample, CHAT_PARTICIPANTS).rows.empty  # sent as []


def test_the_model_participants_and_offers(model):
    people = flatten(model, CHAT_PARTICIPANTS).rows
    assert people[["chat_id", "position", "id", "type", "status"]].values.tolist() == [
        [31354, 0, 0, "end_user", "waiting"]
    ]
    # text: sanitized payloads hold pseudonyms (sanitizing turns the placeholder 0 into NULL)
    assert people["end_user_id"].tolist() == ["0"]
    offers = flatten(model, CHAT_OFFER_EVENTS).rows
    assert offers[["chat_id", "position", "group_name"]].values.tolist() == [[31354, 0, "Group 1"]]
    assert offers["casting_time"].tolist() == [pd.Timestamp("2019-07-17T07:27:15Z")]
    assert "id" not in offers.columns  # offers have no id of their own
    assert CHAT_OFFER_EVENTS.own_id is None and CHAT_PARTICIPANTS.own_id == "id"


def test_type_drift_is_coerced_and_failures_counted(sample):
    chat = copy.deepcopy(sample[0])
    chat["rating"] = "4.5"
    chat["queue_duration"] = "22"
    chat["verified"] = "true"
    chat["created_at"] = "string"
    chat["agent_info"] = {"id": "4", "name": None}
    chat["handle_durations"][0]["transfer"] = True
    chat["handle_durations"][0]["acw_duration"] = "n/a"
    chat["queue_durations"] = None
    chat["transfers"] = {"id": 1}
    chats = flatten([chat], CHATS)
    row = chats.rows.iloc[0]
    assert row["rating"] == 4.5
    assert row["queue_duration"] == 22
    assert bool(row["verified"]) is True
    assert pd.isna(row["created_at"])
    assert row["agent_id"] == "4"
    assert chats.coercion_failures == {"created_at": 1}
    handles = flatten([chat], CHAT_HANDLE_DURATIONS)
    assert bool(handles.rows["transfer"].iloc[0]) is True
    assert handles.coercion_failures == {"acw_duration": 1}
    assert flatten([chat], CHAT_QUEUE_DURATIONS).rows.empty
    transfers = flatten([chat], CHAT_TRANSFERS)
    assert transfers.rows.empty
    assert transfers.coercion_failures == {"transfers": 1}


def test_newest_version_of_each_chat_is_flattened(sample):
    old = copy.deepcopy(sample[0])
    new = copy.deepcopy(sample[0])
    new["updated_at"] = "2016-02-27T00:00:00.000Z"
    new["status"] = "assigned"
    new["handle_durations"] = []
    assert [r["status"] for r in newest_versions([new, old])] == ["assigned"]
    flat = flatten([old, new], CHAT_HANDLE_DURATIONS)
    assert flat.rows.empty
    assert flat.versions["updated_at"].tolist() == [pd.Timestamp("2016-02-27", tz="UTC")]


@pytest.mark.parametrize("table", DERIVED_TABLES, ids=lambda t: t.name)
def test_frames_have_declared_columns_and_dtypes(sample, table):
    rows = flatten(sample, table).rows
    assert list(rows.columns) == table.column_names
    assert {c: str(t) for c, t in rows.dtypes.items()} == {
        c.name: c.type.pandas_dtype for c in table.columns
    }


def test_values_that_only_look_numeric_become_null_and_are_counted(sample):
    chat = copy.deepcopy(sample[0])
    chat["queue_duration"] = "²"
    chat["chat_duration"] = "--5"
    chat["message_count"] = 10**400
    chat["average_response_time"] = 10**400
    chat["longest_response_time"] = "1e999"
    flat = flatten([chat], CHATS)
    row = flat.rows.iloc[0]
    for name in ["queue_duration", "chat_duration", "message_count", "average_response_time"]:
        assert pd.isna(row[name]), name
    assert flat.coercion_failures == {
        "queue_duration": 1,
        "chat_duration": 1,
        "message_count": 1,
        "average_response_time": 1,
        "longest_response_time": 1,
    }
