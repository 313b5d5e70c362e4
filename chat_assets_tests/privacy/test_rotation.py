"""Key rotation through the command, on days materialized by real Dagster runs from the
emulator: nothing is fetched again, a chat UJET no longer serves is re-keyed too, joins and
erasures hold across the rotation, and the checks see a row left under the old key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from chat_assets.checks import specs
from chat_assets.privacy.ledger import LEDGER_TABLE
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.rotation import (
    CURRENT_KEY_VERSION,
    KEYED_COLUMNS,
    PSEUDONYM_RULES,
    current_key_version,
)
from chat_assets.privacy.suppression import NO_ERASED_SUBJECT, SUPPRESSION_TABLE
from chat_assets.tables import CHATS
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.privacy.test_erasure import (
    CONTACT_ID,
    DAYS,
    REF,
    SUBJECT_ID,
    dump,
    every_table,
    found_anywhere,
    materialize,
    pseudonyms_of,
    served_chats,
)
from chat_assets_tests.support import TEST_PII_KEY, materialize_day

NEW_KEY = "chat-assets-tests-rotated-key-" + "5e4f3a2b1c0d9e8f7a6b"
OLD = Pseudonymizer(TEST_PII_KEY.encode())
CHAIN = Pseudonymizer(NEW_KEY.encode(), "k2", [("k1", TEST_PII_KEY.encode())])
ROTATED = PrivacyResource(pii_key=NEW_KEY, key_version="k2", previous_keys=f"k1:{TEST_PII_KEY}")
PSEUDONYM = re.compile(r"\b([A-Za-z0-9_-]{1,16}):[0-9a-f]{32}\b")
FINGERPRINT = re.compile(r'"pii_key": "[^"]*"')
# The flattened tables that hold pseudonyms.
KEYED = {table.name for table in KEYED_COLUMNS}


@pytest.fixture
def cli(command, monkeypatch):
    """The erasure tests' `command`, under the test key, or with `rotated=True` under the new
    key after it (`previous`: the previous keys, when not the test key)."""

    def run(*argv: str, rotated: bool = False, previous: str | None = None) -> tuple[int, str]:
        if rotated:
            monkeypatch.setenv("CHAT_ASSETS_PII_KEY", NEW_KEY)
            monkeypatch.setenv("CHAT_ASSETS_PII_KEY_VERSION", "k2")
            monkeypatch.setenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", previous or f"k1:{TEST_PII_KEY}")
        else:
            monkeypatch.setenv("CHAT_ASSETS_PII_KEY", TEST_PII_KEY)
            monkeypatch.delenv("CHAT_ASSETS_PII_KEY_VERSION", raising=False)
            monkeypatch.delenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", raising=False)
        return command(*argv)

    return run


def ids_at(value: Any, parts: list[str]) -> Iterator[tuple[str, Any]]:
    if not parts or not isinstance(value, dict):
        return
    head, rest = parts[0], parts[1:]
    child = value.get(head.removesuffix("[]"))
    for item in (child if isinstance(child, list) else []) if head.endswith("[]") else [child]:
        if rest:
            yield from ids_at(item, rest)
        elif item is not None:
            yield head, item


def every_pseudonym(chats: list[dict], pseudonymizer: Pseudonymizer) -> set[str]:
    """The pseudonyms of every id the chats hold, in every namespace the catalog uses."""
    return {
        p
        for chat in chats
        for rule in PSEUDONYM_RULES
        for _, raw in ids_at(chat, rule.path.split("."))
        if (p := pseudonymizer.pseudonym(rule.namespace, raw))
    }


def versions_stored(engine, schema: str) -> dict[str, set[str]]:
    """Per table, the key versions of every pseudonym it stores (payloads included)."""
    return {
        name: {m.group(1) for row in rows for m in PSEUDONYM.finditer(row)}
        for name, rows in every_table(engine, schema).items()
    }


def without_pseudonyms(engine, schema: str) -> dict[str, list[str]]:
    """Every table but the ledger, without its pseudonyms and key fingerprints."""
    return {
        name: sorted(FINGERPRINT.sub("", PSEUDONYM.sub("<p>", row)) for row in rows)
        for name, rows in every_table(engine, schema).items()
        if name not in (LEDGER_TABLE,)
    }


def evaluations(results: list[dg.ExecuteInProcessResult], name: str) -> list[tuple[str, bool]]:
    return sorted(
        (e.asset_key.path[-1], e.passed)
        for result in results
        for e in result.get_asset_check_evaluations()
        if e.check_name == name
    )


@pytest.fixture
def landed(settings, database_url, engine, schema) -> tuple[list[dict], set[int]]:
    chats, subject = served_chats()
    materialize(settings, database_url, schema, chats)
    return chats, subject


def test_a_rotation_rekeys_every_table_without_fetching_and_joins_hold(
    settings, database_url, engine, schema, landed, cli
):
    chats, _ = landed
    old = every_pseudonym(chats, OLD)
    assert found_anywhere(engine, schema, old).keys() == {"raw_chats", *KEYED}
    shape = without_pseudonyms(engine, schema)

    code, printed = cli("rotate", "--ref", "CHG-2026-41", rotated=True)
    assert code == 0, printed
    assert "rotation to key version k2" in printed and not PSEUDONYM.search(printed)

    # Nothing under the old key is left, and nothing else changed.
    stored = versions_stored(engine, schema)
    assert {name for name, found in stored.items() if found} == {"raw_chats", *KEYED}
    assert all(found == {"k2"} for name, found in stored.items() if found)
    assert found_anywhere(engine, schema, old) == {}
    after = without_pseudonyms(engine, schema)
    assert after.pop(SUPPRESSION_TABLE) == [] and after == shape
    # Each stored value is what a fetch under both keys computes for its id.
    assert found_anywhere(engine, schema, every_pseudonym(chats, CHAIN)).keys() == {
        "raw_chats",
        *KEYED,
    }
    with engine.connect() as connection:
        fingerprints = connection.exec_driver_sql(
            f'SELECT DISTINCT pii_key FROM "{schema}".raw_chats'
        ).scalars()
        assert list(fingerprints) == [CHAIN.fingerprint]
        ledger = connection.exec_driver_sql(
            f'SELECT action, request_ref, key_version, counts FROM "{schema}"."{LEDGER_TABLE}"'
        ).one()
    assert ledger[:3] == ("rotate", "CHG-2026-41", "k2")
    assert ledger[3]["raw_chats"] > 0 and ledger[3]["chats"] > 0
    assert not PSEUDONYM.search(str(ledger))

    # UJET no longer serves one chat: every day fetched again under the new keys.
    gone = next(c for c in chats if c["agent_info"] and sum(d["id"] == c["id"] for d in chats) == 1)
    agent = gone["agent_info"]["id"]
    same_agent = [
        c for c in chats if (c["agent_info"] or {}).get("id") == agent and c["id"] != gone["id"]
    ]
    assert same_agent
    served = [c for c in chats if c["id"] != gone["id"]]
    with UjetEmulator(company_key="k", company_secret="s", records=served) as emulator:
        results = [
            materialize_day(settings, emulator, database_url, schema, day, privacy=ROTATED)
            for day in DAYS
        ]
    for name in (CURRENT_KEY_VERSION, specs.PII_KEY_UNCHANGED):
        assert evaluations(results, name) and all(ok for _, ok in evaluations(results, name))
    with engine.connect() as connection:
        agents = dict(
            connection.exec_driver_sql(
                f'SELECT id, agent_id FROM "{schema}".chats WHERE id = ANY(%s)',
                ([gone["id"], *(c["id"] for c in same_agent)],),
            ).all()
        )
    # The chat not served since keeps its re-keyed row, which joins the fresh rows.
    assert agents.keys() == {gone["id"], *(c["id"] for c in same_agent)}
    assert set(agents.values()) == {CHAIN.pseudonym("agent", agent)}
    assert found_anywhere(engine, schema, old) == {}
    # Someone holding only the old key computes nothing the warehouse stores, whatever
    # version they put in front.
    only_old = Pseudonymizer(TEST_PII_KEY.encode(), "k2")
    assert found_anywhere(engine, schema, every_pseudonym(chats, only_old)) == {}


def test_an_erasure_before_the_rotation_holds_after_it(
    settings, database_url, engine, schema, landed, cli
):
    chats, subject = landed
    assert cli("erase", "end_user", str(SUBJECT_ID), "--ref", REF)[0] == 0
    assert cli("rotate", rotated=True)[0] == 0
    before = {name: dump(engine, schema, name) for name in ("chats", *KEYED)}
    erased_now = pseudonyms_of(chats, subject) | {
        CHAIN.pseudonym("end_user", SUBJECT_ID),
        CHAIN.pseudonym("crm_contact", CONTACT_ID),
        *(CHAIN.pseudonym("crm_ticket", c["out_ticket_id"]) for c in chats if c["id"] in subject),
    }
    with engine.connect() as connection:
        listed = set(
            connection.exec_driver_sql(f'SELECT pseudonym FROM "{schema}".{SUPPRESSION_TABLE}')
            .scalars()
            .all()
        )
    assert CHAIN.pseudonym("end_user", SUBJECT_ID) in listed
    assert {p.partition(":")[0] for p in listed} == {"k2"}

    # Every day fetched again, under the new keys: the subject stays unlinked.
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        results = [
            materialize_day(settings, emulator, database_url, schema, day, privacy=ROTATED)
            for day in DAYS
        ]
    checked = evaluations(results, NO_ERASED_SUBJECT)
    assert {"chats", "raw_chats"} <= {name for name, _ in checked}
    assert all(passed for _, passed in checked)
    assert found_anywhere(engine, schema, erased_now) == {}
    assert {name: dump(engine, schema, name) for name in ("chats", *KEYED)} == before
    unlinked = sum(
        r.asset_materializations_for_node("raw_chats")[0]
        .metadata["erased_subjects"]
        .value["unlinked"]
        for r in results
    )
    assert unlinked >= len(subject)
    # Under the new keys the subject is still the one erased: erasing again finds nothing.
    code, printed = cli("erase", "end_user", str(SUBJECT_ID), "--ref", "DSR-2", rotated=True)
    assert code == 0 and "0 chats of the subject" in printed


def test_an_erasure_before_rotate_has_run_finds_the_rows_under_the_old_key(
    settings, database_url, engine, schema, landed, cli
):
    """The deployment has the new key and `rotate` has not run yet: an erasure under the new
    chain finds the subject's rows made under the old key, and holds after the rotation."""
    chats, subject = landed
    stored = pseudonyms_of(chats, subject)
    code, printed = cli("erase", "end_user", str(SUBJECT_ID), "--ref", REF, rotated=True)
    assert code == 0, printed
    assert f"{len(subject)} chats of the subject" in printed
    assert not PSEUDONYM.search(printed)
    assert found_anywhere(engine, schema, stored) == {}
    assert cli("rotate", rotated=True)[0] == 0
    erased_now = {CHAIN.rekey(p) for p in stored}
    assert found_anywhere(engine, schema, erased_now) == {}

    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        results = [
            materialize_day(settings, emulator, database_url, schema, day, privacy=ROTATED)
            for day in DAYS
        ]
    checked = evaluations(results, NO_ERASED_SUBJECT)
    assert checked and all(passed for _, passed in checked)
    assert found_anywhere(engine, schema, erased_now) == {}
    # The previous key stays configured: a later erasure lists nothing under it, and runs go on.
    assert cli("erase", "end_user", "424242", "--ref", "DSR-3", rotated=True)[0] == 0
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        materialize_day(settings, emulator, database_url, schema, DAYS[0], privacy=ROTATED)


def test_a_key_swapped_under_the_same_version_cannot_land_past_an_erasure(
    settings, database_url, engine, schema, landed, cli
):
    """A new key given the old version, without the old key: the suppression list's
    pseudonyms no longer match, so the run refuses to land rather than re-link the subject."""
    chats, _ = landed
    assert cli("erase", "end_user", str(SUBJECT_ID), "--ref", REF)[0] == 0
    swapped = Pseudonymizer(NEW_KEY.encode())
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        result = materialize_day(
            settings, emulator, database_url, schema, DAYS[0], key=NEW_KEY, raise_on_error=False
        )
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "suppression list" in message and "CHAT_ASSETS_PII_PREVIOUS_KEYS" in message
    assert NEW_KEY not in message and TEST_PII_KEY not in message
    assert not PSEUDONYM.search(message)
    relinked = {
        swapped.pseudonym("end_user", SUBJECT_ID),
        swapped.pseudonym("crm_contact", CONTACT_ID),
    }
    assert found_anywhere(engine, schema, relinked) == {}


def test_the_checks_fail_with_a_row_under_the_old_key(
    settings, database_url, engine, schema, landed, cli
):
    chats, _ = landed
    assert cli("rotate", rotated=True)[0] == 0
    victim = next(c for c in chats if c["agent_info"])
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f'UPDATE "{schema}".chats SET agent_id = %s WHERE id = %s',
            (OLD.pseudonym("agent", victim["agent_info"]["id"]), victim["id"]),
        )
        connection.exec_driver_sql(
            f'UPDATE "{schema}".raw_chats SET pii_key = %s WHERE id = %s',
            (OLD.fingerprint, victim["id"]),
        )
    with UjetEmulator(company_key="k", company_secret="s", records=[]) as emulator:
        # A day without chats: its own rows are none, the table holds the stale one.
        result = materialize_day(
            settings, emulator, database_url, schema, "2026-01-09", privacy=ROTATED
        )
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    raw = found[specs.PII_KEY_UNCHANGED]
    versions = sum(c["id"] == victim["id"] for c in chats)
    assert not raw.passed
    assert raw.metadata["rows_with_other_keys"].value == {OLD.fingerprint: versions}
    newest = max(c["updated_at"] for c in chats if c["id"] == victim["id"])
    start = datetime.fromisoformat(newest[:10]).replace(tzinfo=UTC)
    check = current_key_version(engine, schema, CHATS, start, start + timedelta(days=1), "k2")
    assert not check.passed and check.metadata["chat_ids"].value == [victim["id"]]
    assert not PSEUDONYM.search(repr(check.metadata))
    # Rotating again mends both.
    assert cli("rotate", rotated=True)[0] == 0
    check = current_key_version(engine, schema, CHATS, start, start + timedelta(days=1), "k2")
    assert check.passed


def test_a_key_that_did_not_make_the_rows_refuses_the_rotation(engine, schema, landed, cli):
    before = every_table(engine, schema)
    wrong = "chat-assets-tests-another-old-key-" + "a1b2c3d4e5f60789"
    code, printed = cli("rotate", rotated=True, previous=f"k1:{wrong}")
    assert code == 2 and "not configured" in printed and "CHAT_ASSETS_PII_PREVIOUS_KEYS" in printed
    assert wrong not in printed and TEST_PII_KEY not in printed and NEW_KEY not in printed
    assert every_table(engine, schema) == before


def test_a_dry_run_changes_nothing_and_a_second_rotation_finds_nothing(engine, schema, landed, cli):
    before = every_table(engine, schema)
    code, printed = cli("rotate", "--dry-run", rotated=True)
    assert code == 0 and "dry run" in printed and "would be re-keyed" in printed
    assert every_table(engine, schema) == before
    assert cli("rotate", rotated=True)[0] == 0
    after = {k: v for k, v in every_table(engine, schema).items() if k != LEDGER_TABLE}
    code, printed = cli("rotate", rotated=True)
    assert code == 0
    assert {line.split()[1] for line in printed.splitlines()[1:]} == {"0"}
    assert {k: v for k, v in every_table(engine, schema).items() if k != LEDGER_TABLE} == after


def test_a_ledger_made_before_key_versions_gets_the_column(engine, schema, cli):
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        connection.exec_driver_sql(
            f'CREATE TABLE "{schema}"."{LEDGER_TABLE}" (entry bigint GENERATED ALWAYS AS IDENTITY'
            " PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), action text NOT NULL,"
            " request_ref text, namespace text, mode text, also_future boolean,"
            " counts jsonb NOT NULL DEFAULT '{}')"
        )
    assert cli("pseudonym", "agent", "317", rotated=True)[0] == 0
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f'SELECT action, key_version FROM "{schema}"."{LEDGER_TABLE}"'
        ).all()
    assert rows == [("pseudonym", "k2")]
