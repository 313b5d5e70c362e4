"""Erasing a data subject: through the command, on days materialized by real Dagster runs from
the emulator into the embedded PostgreSQL, and what holds afterwards."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import dagster as dg
import pytest

from chat_assets.checks import reconciliation
from chat_assets.privacy import erasure, lookup, suppression
from chat_assets.privacy.__main__ import main as privacy_command
from chat_assets.privacy.ledger import LEDGER_TABLE
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.suppression import NO_ERASED_SUBJECT, SUPPRESSION_TABLE, erased_subject
from chat_assets.raw_chats import landing_rows
from chat_assets.tables import AGGREGATE_TABLES, RAW_CHATS, TABLES
from chat_assets.warehouse import windows
from chat_assets.warehouse.staged_window import WindowStage
from chat_assets_demo.demo_data import chats_updated_between
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.privacy.reference import sanitize_batch
from chat_assets_tests.support import TEST_PII_KEY, materialize_day

DAYS = ("2026-01-05", "2026-01-06")
START = datetime(2026, 1, 5, tzinfo=UTC)
SUBJECT_ID = 987654
CONTACT_ID = "CRM-55501"
OTHER_CHANNEL_ID = 987655
REF = "DSR-2026-0012"
# The tables that hold no customer pseudonym: an unlink leaves them exactly as they were.
FACTS = tuple(t.name for t in TABLES.values() if t not in (RAW_CHATS, *suppression.LINKED_TABLES))
# What the subject's rows in the tables that link customers keep after an unlink.
KEPT = {
    "chats": ("out_ticket_id", "end_user_id", "end_user_out_contact_id"),
    "chat_participants": ("end_user_id",),
}


def the_subjects(chat: dict, end_user_id: int = SUBJECT_ID) -> dict:
    """The chat (a version of it), made the subject's: its customer, contact and participant."""
    chat = copy.deepcopy(chat)
    chat["end_user"].update(id=end_user_id, out_contact_id=CONTACT_ID)
    for participant in chat["participants"]:
        if participant["type"] == "end_user":
            participant["end_user_id"] = end_user_id
    return chat


def served_chats() -> tuple[list[dict], set[int]]:
    """Two days of demo chats, four of them (every version) the subject's: one with versions
    on both days, and one under another end-user id of the same CRM contact (another
    channel), which only the contact links to the subject."""
    chats = chats_updated_between(START, START + timedelta(days=2), 30, seasonal=False)
    versions: dict[int, int] = {}
    for chat in chats:
        versions[chat["id"]] = versions.get(chat["id"], 0) + 1
    twice = next(i for i, n in versions.items() if n > 1)
    subject = {chats[0]["id"], twice, chats[-1]["id"]}
    other = next(c["id"] for c in chats[1:] if c["id"] not in subject)
    served = [
        the_subjects(c)
        if c["id"] in subject
        else the_subjects(c, OTHER_CHANNEL_ID)
        if c["id"] == other
        else c
        for c in chats
    ]
    return served, subject | {other}


PSEUDONYMIZER = PrivacyResource(pii_key=TEST_PII_KEY).pseudonymizer()[0]


def pseudonyms_of(chats: list[dict], subject: set[int]) -> set[str]:
    """The subject's pseudonyms: customer, CRM contact and the tickets of its chats."""
    found = {
        PSEUDONYMIZER.pseudonym("end_user", SUBJECT_ID),
        PSEUDONYMIZER.pseudonym("end_user", OTHER_CHANNEL_ID),
        PSEUDONYMIZER.pseudonym("crm_contact", CONTACT_ID),
        *(
            PSEUDONYMIZER.pseudonym("crm_ticket", c["out_ticket_id"])
            for c in chats
            if c["id"] in subject
        ),
    }
    return {p for p in found if p}


def materialize(
    settings, database_url, schema, chats, instance=None
) -> list[dg.ExecuteInProcessResult]:
    with UjetEmulator(company_key="k", company_secret="s", records=chats) as emulator:
        return [
            materialize_day(settings, emulator, database_url, schema, day, instance=instance)
            for day in DAYS
        ]


def dump(engine, schema: str, name: str, without: tuple[str, ...] = ()) -> list[str]:
    """The table's rows as sorted JSON text, without the named columns."""
    with engine.connect() as connection:
        return [
            row[0]
            for row in connection.exec_driver_sql(
                f'SELECT (to_jsonb(t) - %s::text[])::text FROM "{schema}"."{name}" t ORDER BY 1',
                (list(without),),
            )
        ]


def every_table(engine, schema: str) -> dict[str, list[str]]:
    with engine.connect() as connection:
        names = [
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
    return {name: dump(engine, schema, name) for name in sorted(names)}


def found_anywhere(engine, schema: str, values: set[str]) -> dict[str, int]:
    """Where the values stand in any column of any table (payloads included), the suppression
    list aside."""
    return {
        name: hits
        for name, rows in every_table(engine, schema).items()
        if name != SUPPRESSION_TABLE
        and (hits := sum(value in row for row in rows for value in values))
    }


def chats_of(engine, schema: str, subject: set[int]) -> dict[str, int]:
    counts = {}
    with engine.connect() as connection:
        for table in TABLES.values():
            column = "id" if table.name in ("raw_chats", "chats") else "chat_id"
            if table.aggregation is None:
                counts[table.name] = connection.exec_driver_sql(
                    f'SELECT count(*) FROM "{schema}"."{table.name}" WHERE {column} = ANY(%s)',
                    (sorted(subject),),
                ).scalar()
    return counts


def check_results(results: list[dg.ExecuteInProcessResult]) -> list[tuple[str, bool]]:
    """(asset, passed) of every run's no_erased_subject checks."""
    return [
        (e.asset_key.path[-1], e.passed)
        for result in results
        for e in result.get_asset_check_evaluations()
        if e.check_name == NO_ERASED_SUBJECT
    ]


@pytest.fixture
def landed(
    settings, database_url, engine, schema
) -> Iterator[tuple[list[dict], set[int], set[str]]]:
    chats, subject = served_chats()
    materialize(settings, database_url, schema, chats)
    pseudonyms = pseudonyms_of(chats, subject)
    assert len(pseudonyms) >= 4
    where = found_anywhere(engine, schema, pseudonyms)
    # the subject is there before
    assert where.keys() == {"raw_chats", "chats", "chat_participants"}
    yield chats, subject, pseudonyms


def test_unlink_removes_every_pseudonym_and_keeps_every_fact(engine, schema, landed, command):
    _, subject, pseudonyms = landed
    facts = {name: dump(engine, schema, name) for name in FACTS}
    flat = {name: dump(engine, schema, name, linked) for name, linked in KEPT.items()}
    rows = chats_of(engine, schema, subject)
    code, printed = command("erase", "end_user", str(SUBJECT_ID), "--ref", REF)
    assert code == 0, printed
    assert found_anywhere(engine, schema, pseudonyms) == {}
    assert {name: dump(engine, schema, name) for name in FACTS} == facts
    assert {name: dump(engine, schema, name, linked) for name, linked in KEPT.items()} == flat
    assert chats_of(engine, schema, subject) == rows
    assert rows["chats"] == rows["raw_chats"] - 1 > 0  # one chat has two versions
    assert rows["chat_participants"] > 0
    assert REF in printed and "unlink" in printed and "4 chats of the subject" in printed
    assert not {str(SUBJECT_ID), str(OTHER_CHANNEL_ID), CONTACT_ID} & set(printed.split())
    assert str(SUBJECT_ID) not in printed and CONTACT_ID not in printed
    assert not any(p in printed for p in pseudonyms) and "k1:" not in printed


def test_delete_removes_the_chats_and_the_marts_follow(settings, engine, schema, landed, command):
    _, subject, pseudonyms = landed
    code, printed = command("erase", "crm_contact", CONTACT_ID, "--ref", REF, "--mode", "delete")
    assert code == 0, printed
    assert found_anywhere(engine, schema, pseudonyms) == {}
    assert set(chats_of(engine, schema, subject).values()) == {0}
    with engine.connect() as connection:
        days = connection.exec_driver_sql(
            f'SELECT min(service_day), max(service_day) FROM "{schema}".queue_service_levels'
        ).one()
        counted = dict(connection.exec_driver_sql(f'SELECT * FROM "{schema}"._row_counts').all())
        for name, n in counted.items():
            assert (
                connection.exec_driver_sql(f'SELECT count(*) FROM "{schema}"."{name}"').scalar()
                == n
            )
    first = datetime.combine(days[0], datetime.min.time(), UTC)
    last = datetime.combine(days[1], datetime.min.time(), UTC) + timedelta(days=1)
    for mart in AGGREGATE_TABLES:
        reconciled = reconciliation.reconciled(
            engine, schema, mart, "UTC", first, last, interval_minutes=30
        )
        assert reconciled.passed, (mart.name, reconciled.metadata)
    assert "delete" in printed and str(SUBJECT_ID) not in printed and CONTACT_ID not in printed


@pytest.mark.parametrize("mode", ["unlink", "delete"])
def test_materializing_again_restores_nothing(
    settings, database_url, engine, schema, landed, command, mode
):
    """Every day again, with a later version of one of the subject's chats from UJET."""
    chats, subject, pseudonyms = landed
    assert command("erase", "end_user", str(SUBJECT_ID), "--ref", REF, "--mode", mode)[0] == 0
    after = {name: dump(engine, schema, name) for name in ("chats", *FACTS)}
    later = copy.deepcopy(next(c for c in chats if c["id"] in subject))
    later["updated_at"] = "2026-01-06T23:00:00.000Z"
    instance = dg.DagsterInstance.ephemeral()
    results = materialize(settings, database_url, schema, [*chats, later], instance)
    assert found_anywhere(engine, schema, pseudonyms) == {}
    events = "\n".join(
        f"{entry.user_message} {entry.dagster_event!r}"
        for record in instance.get_run_records()
        for entry in instance.all_logs(record.dagster_run.run_id)
    )
    assert "erased_subjects" in events  # the runs' metadata is in there: counts only
    assert not [p for p in pseudonyms if p in events] and CONTACT_ID not in events
    assert sorted(check_results(results)) == [
        *[("chat_participants", True)] * 2,
        *[("chats", True)] * 2,
        *[("raw_chats", True)] * 2,
    ]
    if mode == "delete":
        assert set(chats_of(engine, schema, subject).values()) == {0}
        assert {name: dump(engine, schema, name) for name in ("chats", *FACTS)} == after
    dropped = [
        r.asset_materializations_for_node("raw_chats")[0].metadata["erased_subjects"].value
        for r in results
    ]
    key = "dropped" if mode == "delete" else "unlinked"
    assert sum(d[key] for d in dropped) >= len(subject)


def test_dry_run_changes_nothing(engine, schema, landed, command):
    before = every_table(engine, schema)
    code, printed = command("erase", "end_user", str(SUBJECT_ID), "--ref", REF, "--dry-run")
    assert code == 0
    assert "dry run" in printed and "4 chats of the subject" in printed
    assert every_table(engine, schema) == before


def test_erasing_again_changes_nothing(engine, schema, landed, command):
    assert command("erase", "end_user", str(SUBJECT_ID), "--ref", REF)[0] == 0
    before = {k: v for k, v in every_table(engine, schema).items() if k != LEDGER_TABLE}
    code, printed = command("erase", "end_user", str(SUBJECT_ID), "--ref", "DSR-2026-0013")
    assert code == 0
    assert "0 chats of the subject" in printed
    lines = printed.splitlines()
    # It says the subject was erased before, and under which request.
    assert lines[1] == f"  the subject was erased before, under {REF} (unlink)"
    assert {line.split()[1] for line in lines[2:]} == {"0"}
    after = every_table(engine, schema)
    assert {k: v for k, v in after.items() if k not in (LEDGER_TABLE, SUPPRESSION_TABLE)} == {
        k: v for k, v in before.items() if k != SUPPRESSION_TABLE
    }


def test_the_ledger_keeps_no_id_and_no_pseudonym(engine, schema, landed, command):
    _, _, pseudonyms = landed
    assert command("erase", "end_user", str(SUBJECT_ID), "--ref", REF)[0] == 0
    code, printed = command("pseudonym", "end_user", str(SUBJECT_ID), "--ref", "ROSTER-7")
    assert code == 0 and printed.strip() in pseudonyms
    rows = dump(engine, schema, LEDGER_TABLE)
    assert len(rows) == 2 and REF in rows[0] + rows[1] and "ROSTER-7" in rows[0] + rows[1]
    text = "\n".join(rows)
    assert str(SUBJECT_ID) not in text and CONTACT_ID not in text
    assert not any(p in text for p in pseudonyms) and "k1:" not in text
    with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql(f'DELETE FROM "{schema}"."{LEDGER_TABLE}"')


def test_a_ref_holding_the_id_is_refused_before_anything(engine, schema, landed, command):
    before = every_table(engine, schema)
    code, printed = command("erase", "end_user", str(SUBJECT_ID), "--ref", f"DSR-{SUBJECT_ID}")
    assert code == 2 and "--ref holds the subject's id" in printed
    assert str(SUBJECT_ID) not in printed
    assert every_table(engine, schema) == before


def test_the_check_fails_while_an_erased_subject_is_linked(
    settings, database_url, engine, schema, landed, command
):
    """An erasure recorded, then the subject's chats landed again without the list (as a run
    of an older release would): the blocking check fails, naming chats by id."""
    chats, subject, _ = landed
    assert command("erase", "end_user", str(SUBJECT_ID), "--ref", REF)[0] == 0
    with engine.begin() as connection:
        connection.exec_driver_sql(f'ALTER TABLE "{schema}".{SUPPRESSION_TABLE} RENAME TO hidden')
    materialize(settings, database_url, schema, chats)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'ALTER TABLE "{schema}".hidden RENAME TO {SUPPRESSION_TABLE}')
    for table in ("raw_chats", "chats"):
        result = checks_for(engine, schema, table)
        assert not result.passed
        assert set(result.metadata["chat_ids"].value) <= subject


def checks_for(engine, schema: str, name: str) -> dg.AssetCheckResult:
    return erased_subject(engine, schema, TABLES[name], START, START + timedelta(days=2))


def test_an_erasure_during_a_fetch_holds_when_the_run_lands(settings, engine, schema, landed):
    """The landing's second pass: a run that read the list before the erasure lands the
    subject's chats, and its own transaction unlinks them before commit."""
    chats, _, pseudonyms = landed
    pseudonymizer = PSEUDONYMIZER
    day = [c for c in chats if c["updated_at"].startswith(DAYS[0])]
    clean, _ = sanitize_batch(day, pseudonymizer)
    start, end = START, START + timedelta(days=1)

    with WindowStage(RAW_CHATS, one_row_per=("id",)) as stage:
        stage.write(landing_rows(clean, "UTC", pseudonymizer.fingerprint))
        request = erasure.Request("end_user", pseudonymizer.pseudonym("end_user", SUBJECT_ID), REF)
        erasure.erase(
            engine, schema, request, timezone="UTC", interval_minutes=30, dry=False
        )  # meanwhile
        settle = partial(suppression.reapply, schema=schema, start=start, end=end)
        windows.land_staged(engine, schema, RAW_CHATS, stage.staged(), start, end, finally_=settle)
    assert found_anywhere(engine, schema, pseudonyms) == {}


@pytest.mark.parametrize("also_future", [False, True])
def test_a_chat_opened_after_the_erasure_is_linked_unless_also_future(
    settings, database_url, engine, schema, landed, command, also_future
):
    """An erasure made late on the second day, after the subject's last chat was created; the
    subject opens a new chat minutes later."""
    chats, subject, pseudonyms = landed
    flags = ["--also-future"] if also_future else []
    assert command("erase", "end_user", str(SUBJECT_ID), "--ref", REF, *flags)[0] == 0
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE \"{schema}\".{SUPPRESSION_TABLE} SET erased_at = '2026-01-06T23:56:00Z'"
        )
    new = the_subjects(next(c for c in chats if c["id"] not in subject))
    new.update(id=1, created_at="2026-01-06T23:57:00.000Z", updated_at="2026-01-06T23:59:00.000Z")
    results = materialize(settings, database_url, schema, [*chats, new])
    assert all(passed for _, passed in check_results(results))
    with engine.connect() as connection:
        linked = (
            connection.exec_driver_sql(
                f'SELECT id FROM "{schema}".chats WHERE end_user_id = %s',
                (PSEUDONYMIZER.pseudonym("end_user", SUBJECT_ID),),
            )
            .scalars()
            .all()
        )
    assert linked == ([] if also_future else [1])
    if also_future:
        assert found_anywhere(engine, schema, pseudonyms) == {}


def test_a_dry_run_on_an_empty_warehouse_creates_nothing(engine, schema, command):
    code, printed = command("erase", "end_user", str(SUBJECT_ID), "--ref", REF, "--dry-run")
    assert code == 0 and "0 chats of the subject" in printed
    with engine.connect() as connection:
        assert (
            connection.exec_driver_sql(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
            ).scalar()
            == 0
        )


def test_the_lookups_list_every_customer_pseudonym_and_answer_through_their_indexes(
    engine, schema, landed
):
    """What an erasure finds chats by: the indexed function gives exactly the pseudonyms the
    suppression list reads from a payload, and the planner can answer both lookups from the
    indexes (with sequential scans off, as on a table too large to read)."""
    _, subject, pseudonyms = landed
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f'SELECT payload, "{schema}".{lookup.FUNCTION}(payload) FROM "{schema}".raw_chats'
        ).all()
        assert rows and all(
            sorted(listed) == sorted(suppression.held_pseudonyms(p)) for p, listed in rows
        )
        connection.exec_driver_sql("SET enable_seqscan = off")
        for table in (RAW_CHATS, TABLES["chats"]):
            where = lookup.holds(schema, table).as_string(connection.connection.dbapi_connection)
            query = f'SELECT id FROM "{schema}"."{table.name}" WHERE {where}'
            plan = "\n".join(
                connection.exec_driver_sql(
                    f"EXPLAIN {query}", {"pseudonyms": sorted(pseudonyms)}
                ).scalars()
            )
            assert f"{table.name}_customers_" in plan, plan
            found = connection.exec_driver_sql(query, {"pseudonyms": sorted(pseudonyms)})
            assert set(found.scalars()) == subject


def test_the_report_counts_one_chat_row_and_day_in_the_singular():
    outcome = erasure.Outcome(
        "DSR-1", suppression.Mode.UNLINK, True, 1, {"chats": 1, "chat_participants": 2}, 1
    )
    lines = outcome.report().splitlines()
    assert lines[0].endswith(", 1 chat of the subject")
    assert lines[1].split() == ["chats", "1", "row", "would", "change"]
    assert lines[2].split() == ["chat_participants", "2", "rows", "would", "change"]
    assert lines[3].split()[1:] == ["1", "day", "would", "be", "recomputed"]


@pytest.mark.parametrize("dry", [False, True])
def test_an_erasure_under_another_key_than_the_stored_ones_is_refused(
    engine, schema, landed, command, monkeypatch, dry
):
    """Under a key that did not write the stored payloads, no chat can be found: the command
    says so and changes nothing, rather than report an erasure of 0 chats."""
    _, subject, pseudonyms = landed
    rows = chats_of(engine, schema, subject)
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY", "a-different-pseudonym-key-" + "7c5e3a91f0d2b864")
    args = ["--dry-run"] if dry else []
    code, printed = command("erase", "end_user", str(SUBJECT_ID), "--ref", REF, *args)
    assert code == 2
    [line] = printed.strip().splitlines()
    assert line.startswith("chat_assets: raw_chats holds ") and "other keys" in line
    assert line.endswith("set the pseudonym key that wrote them; nothing changed")
    assert str(SUBJECT_ID) not in line and not any(p in line for p in pseudonyms)
    assert chats_of(engine, schema, subject) == rows
    assert found_anywhere(engine, schema, pseudonyms) != {}


@pytest.mark.parametrize(
    "argv",
    [
        ["erase", "4711893", "--ref", "DSR-1"],  # the namespace left out
        ["erase", "end_user", "4711893", "4711894", "--ref", "DSR-1"],  # one id too many
        ["pseudonym", "4711893"],
        ["4711893", "erase", "end_user"],  # no command first
    ],
)
def test_a_wrong_command_line_does_not_echo_an_id(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        privacy_command(argv)
    assert stopped.value.code == 2
    said = capsys.readouterr()
    assert "4711893" not in said.err + said.out and "4711894" not in said.err + said.out
    assert "error:" in said.err
