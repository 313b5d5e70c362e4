"""No raw personal value from the source reaches the database, the run logs or event metadata."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import dagster as dg
import pytest

from chat_assets.checks import personal_text, specs
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.detect import PATTERNS, normalized
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.raw_chats import build_raw_chats
from chat_assets.settings import Settings
from chat_assets.tables import CHATS, RAW_CHATS
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse import newest_wins, windows
from chat_assets.warehouse.io_manager import warehouse_resources
from chat_assets.warehouse.resource import Warehouse
from chat_assets_demo.demo_data import chats_updated_between
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.privacy.reference import sensitive_values
from chat_assets_tests.support import DATA, TEST_PII_KEY, fullwidth, materialize_day
from chat_assets_tests.windows import landing_frame

DAYS = ["2026-01-05", "2026-01-06"]
OTHER_KEY = "a-second-test-key-7e6d5c4b3a291807"


@pytest.fixture
def settings(monkeypatch) -> Settings:
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2016-01-01")
    return Settings.from_env()


run = materialize_day


def crafted_day() -> list[dict]:
    """Hard cases on 2016-03-02: a new field with an email, signed and credentialed links,
    null and nested agent objects."""
    sample = json.loads((DATA / "vendor_sample.json").read_text())
    first, second = (copy.deepcopy(chat) for chat in sample)
    for chat, hour in ((first, 10), (second, 11)):
        chat["updated_at"] = f"2016-03-02T{hour}:00:00.000Z"
    first["customer_email"] = "jane.doe@example.com"
    first["end_user"]["identifier"] = "+82 10-2345-6789"
    first["photos"][0]["url"] = "https://user:pw@cdn.example.net/p/1.jpg?X-Amz-Signature=abc123def"
    first["out_ticket_url"] = "https://support.example.org/tickets/98765?token=s3cr3t"
    second["transfers"] = [
        {
            "id": 5,
            "status": "transferred",
            "from_agent": copy.deepcopy(first["agent_info"]),
            "to_agent": None,
        },
    ]
    return [first, second]


def run_crafted(settings, database_url: str, schema: str, chats: list[dict]):
    """Materialize the crafted day from `chats`; a failed run is returned, not raised."""
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        return run(settings, emulator, database_url, schema, "2016-03-02", raise_on_error=False)


def distinctive(values: set[str]) -> set[str]:
    """Sensitive values that cannot occur by chance: names, emails, phones, links, long ids."""
    return {v for v in values if len(v.encode()) >= 5 and not v.isdigit()}


def database_text(engine, schema: str) -> str:
    with engine.connect() as connection:
        tables = [
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        dumps = [
            connection.exec_driver_sql(f'SELECT t::text FROM "{schema}"."{name}" t').fetchall()
            for name in tables
        ]
    return "\n".join(row[0] for rows in dumps for row in rows)


def logs_and_metadata_text(instance: dg.DagsterInstance) -> str:
    parts = []
    for run_record in instance.get_run_records():
        for entry in instance.all_logs(run_record.dagster_run.run_id):
            parts.append(entry.user_message or "")
            parts.append(repr(entry.dagster_event) if entry.dagster_event else "")
    return "\n".join(parts)


def test_no_raw_personal_value_lands_anywhere(settings, database_url, engine, schema):
    instance = dg.DagsterInstance.ephemeral()
    served: list[dict] = []
    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=40) as emulator:
        for day in DAYS:
            run(settings, emulator, database_url, schema, day, instance=instance)
        start = datetime(2026, 1, 5, tzinfo=UTC)
        served += chats_updated_between(start, start + timedelta(days=2), chats_per_day=40)
        emulator.serve_records(crafted_day())
        crafted = run(settings, emulator, database_url, schema, "2016-03-02", instance=instance)
    served += crafted_day()
    secrets = distinctive(set().union(*(sensitive_values(r) for r in served)))
    assert any("@" in s for s in secrets) and any(s.startswith("010-") for s in secrets)
    stored = database_text(engine, schema)
    logged = logs_and_metadata_text(instance)
    assert [s for s in secrets if s in stored] == []
    assert [s for s in secrets if s in logged] == []
    assert not PATTERNS["email"].search(stored)
    # the unknown field was dropped and named by path only
    drift = {
        (e.asset_key.path[-1], e.check_name): e for e in crafted.get_asset_check_evaluations()
    }[("raw_chats", specs.NO_UNKNOWN_FIELDS)]
    assert not drift.passed
    assert drift.metadata["unknown_paths"].value == ["customer_email"]
    # links keep their host only; the credentials and signature are gone
    assert "cdn.example.net" in stored and "X-Amz-Signature" not in stored
    assert "support.example.org" in stored and "98765" not in stored


def test_pseudonymised_keys_join_across_tables(settings, database_url, engine, schema):
    instance = dg.DagsterInstance.ephemeral()
    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=40) as emulator:
        run(settings, emulator, database_url, schema, DAYS[0], instance=instance)
    with engine.connect() as connection:
        joined = connection.exec_driver_sql(
            f"SELECT count(*), count(*) FILTER (WHERE c.agent_id = h.agent_id)"
            f" FROM {schema}.chats c JOIN {schema}.chat_handle_durations h ON h.chat_id = c.id"
            " WHERE c.agent_id IS NOT NULL AND h.agent_id IS NOT NULL"
        ).one()
        end_users = connection.exec_driver_sql(
            f"SELECT count(*) FROM {schema}.chats c JOIN {schema}.raw_chats r ON r.id = c.id,"
            " jsonb_array_elements(r.payload->'participants') p"
            " WHERE p->>'end_user_id' = c.end_user_id"
        ).scalar()
        formats = connection.exec_driver_sql(
            f"SELECT bool_and(end_user_id ~ '^k1:[0-9a-f]{{32}}$') FROM {schema}.chats"
            " WHERE end_user_id IS NOT NULL"
        ).scalar()
    assert joined[0] > 0 and joined[1] > 0  # agents' pseudonyms match across tables
    assert end_users > 0  # end_user.id and participants[].end_user_id share a namespace
    assert formats is True


def test_columns_say_which_are_personal_in_the_ui():
    schema = {c.name: c for c in CHATS.dagster_schema().columns}
    assert schema["end_user_id"].tags == {"personal_data": "pseudonym", "subject": "customer"}
    assert "keyed pseudonym" in schema["end_user_id"].description
    assert schema["out_ticket_url"].tags["personal_data"] == "host_only"
    assert schema["status"].tags == {}


def test_a_changed_key_fails_the_key_check(settings, database_url, schema):
    instance = dg.DagsterInstance.ephemeral()
    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=10) as emulator:
        run(settings, emulator, database_url, schema, DAYS[0], instance=instance)
        other = run(
            settings, emulator, database_url, schema, DAYS[1], instance=instance, key=OTHER_KEY
        )
    found = {e.check_name: e for e in other.get_asset_check_evaluations()}
    check = found[specs.PII_KEY_UNCHANGED]
    assert not check.passed
    assert list(check.metadata["rows_with_other_keys"].value) == [
        PrivacyResource(pii_key=TEST_PII_KEY).pseudonymizer()[0].fingerprint
    ]
    assert OTHER_KEY not in repr(check.metadata)


def test_a_sensitive_value_echoed_into_a_kept_field_stops_the_write(
    settings, database_url, engine, schema
):
    """A name no pattern can find, copied from a dropped field into a kept one: the canary."""
    chats = crafted_day()
    chats[0]["agent_info"]["name"] = "Minji Seo-Park"
    chats[1]["sub_status"] = "Minji Seo-Park"
    result = run_crafted(settings, database_url, schema, chats)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "Privacy canary: 1 raw sensitive values" in error
    assert "Minji" not in error
    with engine.connect() as connection:
        exists = connection.exec_driver_sql(
            "SELECT to_regclass(%s)", (f"{schema}.raw_chats",)
        ).scalar()
    assert exists is None  # nothing was written


def stored_payloads(engine, schema: str) -> str:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f'SELECT payload::text FROM "{schema}".raw_chats')
        return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("sub_status", "call me: +82 10-2345-6789", "phone"),
        ("selected_menu.output_msg", "Write to ops@example.com", "email"),
        ("selected_menu.name", "RRN 900101-1234567", "rrn"),
        ("sub_status", "card 4111 1111 1111 1111 exp 12/29", "card"),
        ("transfers[].status", fullwidth("jane@mail.example"), "email"),
        ("sub_status", "010\u200b-9876\u200b-5432", "phone"),
    ],
)
def test_personal_data_in_kept_text_is_redacted_before_landing(
    settings, database_url, engine, schema, field, value, kind
):
    """The first line: replaced in memory by a typed marker, so no table ever holds it; the
    blocking check (the second line) then finds nothing."""
    chats = crafted_day()
    target = chats[1]
    if field == "selected_menu.output_msg" or field == "selected_menu.name":
        target["selected_menu"] = {"id": 3, "name": "Billing", "output_msg": "Hello"}
        target["selected_menu"][field.split(".")[1]] = value
    elif field == "transfers[].status":
        target["transfers"][0]["status"] = value
    else:
        target[field] = value
    result = run_crafted(settings, database_url, schema, chats)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_chats")[0].metadata
    assert metadata["redacted"].value == {f"{field}: {kind}": 1}
    assert f"[{kind}]" in stored_payloads(engine, schema)
    everything = database_text(engine, schema)
    for form in (value, normalized(value)):
        assert form not in everything
    found = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    assert all(found[(t, specs.NO_PERSONAL_TEXT)].passed for t in ("raw_chats", "chats"))


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Write to ops@example.com", "email"),
        (f"Write to {fullwidth('ops@example.com')}", "email"),
        ("Write to ops\u200b@exam\u00adple.com", "email"),
        ("call me: +82 10-2345-6789", "phone"),
        ("010\u200b-9876\u200b-5432", "phone"),
        ("RRN 900101-1234567", "rrn"),
        ("card 4111 1111 1111 1111 exp 12/29", "card"),
        ("Menú ﬁnal: see https://example.com/help", "url"),
        ("Menú ﬁnal, ½ off, nothing personal", None),
    ],
)
def test_the_stored_tables_are_scanned_normalized(database_url, engine, schema, message, kind):
    """Stored text is read normalized, as the Python patterns read it: each kind is found, in
    the flattened column and in the raw payload (links are kept there by design), disguised or
    not, and text that only looks unusual is not."""
    start = datetime(2016, 3, 2, tzinfo=UTC)
    end = start + timedelta(days=1)

    def stored(output_msg: str) -> tuple[dict[str, int], dict[str, int]]:
        """What the check finds in chats and in raw_chats (unsanitized here, so the crafted
        day's own personal data is in its payloads)."""
        chats = crafted_day()
        chats[1]["selected_menu"] = {"id": 3, "name": "Billing", "output_msg": output_msg}
        frame = landing_frame(chats, "UTC", "k1:test")
        windows.replace_window(engine, schema, RAW_CHATS, frame, start, end)
        newest_wins.apply_newest(
            engine, schema, [CHATS], start, end, timezone="UTC", interval_minutes=30
        )
        return tuple(
            personal_text.no_personal_text(engine, schema, table, start, end)
            .metadata["cells_found"]
            .value
            for table in (CHATS, RAW_CHATS)
        )

    _, raw_before = stored("Welcome")
    flat, raw = stored(message)
    assert flat == ({f"selected_menu_output_msg: {kind}": 1} if kind else {})
    added = {key: n - raw_before.get(key, 0) for key, n in raw.items()}
    assert {key: n for key, n in added.items() if n} == (
        {f"payload: {kind}": 1} if kind not in (None, "url") else {}
    )


def test_the_scan_finds_what_each_column_holds_not_what_their_join_makes(
    database_url, engine, schema
):
    """The scan reads a row's columns joined by line breaks before it counts by column: a
    number that is a column's whole text is found there, and one that reads as a phone number
    only after the line break before it (".415-555-0134" needs a character before its dot) is
    no finding. Both columns' texts are kept in chats as they are."""
    start = datetime(2016, 3, 2, tzinfo=UTC)
    end = start + timedelta(days=1)
    chats = crafted_day()
    chats[1]["selected_menu"] = {"id": 3, "name": ".415-555-0134", "output_msg": "415-555-0134"}
    frame = landing_frame(chats, "UTC", "k1:test")
    windows.replace_window(engine, schema, RAW_CHATS, frame, start, end)
    newest_wins.apply_newest(
        engine, schema, [CHATS], start, end, timezone="UTC", interval_minutes=30
    )
    stored = database_text(engine, schema)
    assert ".415-555-0134" in stored
    result = personal_text.no_personal_text(engine, schema, CHATS, start, end)
    assert result.metadata["cells_found"].value == {"selected_menu_output_msg: phone": 1}
    assert not result.passed


def test_a_real_source_without_a_key_fails_with_a_clear_message(settings, database_url, schema):
    partitions = daily_partitions(settings)
    result = dg.materialize(
        [build_raw_chats(partitions, Warehouse(database_url=database_url, db_schema=schema))],
        partition_key=DAYS[0],
        raise_on_error=False,
        resources={
            "ujet": UjetResource(subdomain="acme", company_key="k", company_secret="s"),
            "privacy": PrivacyResource(),
            **warehouse_resources(Warehouse(database_url=database_url, db_schema=schema)),
        },
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "CHAT_ASSETS_PII_KEY is not set" in error


def forms(value: str) -> set[str]:
    """The encodings a leaked value could hide in: plain, NFKC, \\u-escaped JSON, URL-encoded,
    case-folded."""
    nfkc = normalized(value)
    return {
        value,
        nfkc,
        json.dumps(value)[1:-1],
        json.dumps(nfkc)[1:-1],
        quote(value),
        quote(nfkc),
        value.casefold(),
        nfkc.casefold(),
    }


def test_planted_personal_data_is_found_nowhere(settings, database_url, engine, schema, tmp_path):
    """The audit's categories, planted in one day: a key that is an email, a key with dots,
    fullwidth and zero-width disguises, a resident registration number and a card number in kept
    text. Searched in every table, the run logs and events, and the instance's own files."""
    planted = {
        "key": "jane.doe@mail.example",
        "dotted": "agent.jane.roe",
        "fullwidth": fullwidth("olivia@mail.example"),
        "zero_width": "010\u200b-2222\u200b-3333",
        "rrn": "900101-1234567",
        "card": "4111 1111 1111 1111",
    }
    chats = crafted_day()
    chats[0]["selected_menu"] = {"id": 3, "name": "Billing", planted["key"]: {"x": 1}}
    chats[1]["selected_menu"] = {"id": 3, "name": "Billing", planted["dotted"]: "y"}
    chats[0]["sub_status"] = f"mail {planted['fullwidth']} or call {planted['zero_width']}"
    chats[1]["sub_status"] = f"RRN {planted['rrn']}, card {planted['card']}"
    (tmp_path / "instance").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "instance"))
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        result = run(settings, emulator, database_url, schema, "2016-03-02", instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_chats")[0].metadata
    assert metadata["unnamed_keys"].value == 2
    assert sorted(metadata["redacted"].value) == [
        "sub_status: card",
        "sub_status: email",
        "sub_status: phone",
        "sub_status: rrn",
    ]
    places = {
        "tables": database_text(engine, schema),
        "logs and events": logs_and_metadata_text(instance),
        "instance files": "\n".join(
            path.read_bytes().decode("utf-8", "replace")
            for path in (tmp_path / "instance").rglob("*")
            if path.is_file()
        ),
    }
    # Each place was searched: it holds the day's pseudonyms, or its run's events.
    assert "k1:" in places["tables"]
    assert "raw_chats" in places["logs and events"] and "raw_chats" in places["instance files"]
    found = [
        (name, where)
        for name, value in planted.items()
        for form in forms(value) | forms(value.split("@")[0] if "@" in value else value)
        for where, text in places.items()
        if len(form) >= 8 and form in text
    ]
    assert found == []


def test_the_pseudonym_command_matches_the_warehouse(settings, database_url, engine, schema):
    """A roster joins without un-pseudonymising: the command prints what `chats` stores."""
    chats = crafted_day()
    agent_id = chats[0]["agent_info"]["id"]
    result = run_crafted(settings, database_url, schema, chats)
    assert result.success
    with engine.connect() as connection:
        stored = connection.exec_driver_sql(
            f'SELECT agent_id FROM "{schema}".chats WHERE id = %s', (chats[0]["id"],)
        ).scalar_one()
    env = {
        **os.environ,
        "CHAT_ASSETS_PII_KEY": TEST_PII_KEY,
        "CHAT_ASSETS_DATABASE_URL": database_url,
        "CHAT_ASSETS_SCHEMA": schema,
    }
    env.pop("CHAT_ASSETS_PII_KEY_VERSION", None)
    done = subprocess.run(
        [sys.executable, "-m", "chat_assets.privacy", "pseudonym", "agent", str(agent_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == stored


def test_a_name_copied_into_three_chats_menus_stops_the_write(
    settings, database_url, engine, schema
):
    base = crafted_day()[0]
    chats = []
    for n in range(3):
        chat = copy.deepcopy(base)
        chat["id"] = 7000 + n
        chat["agent_info"]["name"] = "Jane Roe-Kim"
        chat["selected_menu"] = {"id": 3, "name": "Jane Roe-Kim", "output_msg": "Hi"}
        chats.append(chat)
    result = run_crafted(settings, database_url, schema, chats)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "Privacy canary" in error and "Jane" not in error
