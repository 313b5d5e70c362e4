"""Sanitizing must treat every field as catalogued, survive type drift and leak nothing."""

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chat_assets.privacy.catalog import Category, Rule, RuleIndex, Subject, Treatment
from chat_assets.privacy.detect import MIN_CANARY_BYTES, find_personal
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.sanitize import WindowSanitizer, host_only
from chat_assets_demo import demo_data
from chat_assets_tests.privacy.reference import (
    json_strings,
    sanitize,
    sanitize_batch,
    sanitize_guarded,
    sensitive_values,
)
from chat_assets_tests.support import DATA

DAY = datetime(2024, 3, 5, tzinfo=UTC)
SIGNED = (
    "https://cdn.example-ujet.test/photos/7/ab12.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20240305%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
)


@pytest.fixture(scope="module")
def pz() -> Pseudonymizer:
    return Pseudonymizer(b"sanitize-test-key-0123456789abcdef")


def _agent(agent_id: Any, name: str) -> dict[str, Any]:
    first, last = name.split(" ")
    return {
        "id": agent_id,
        "name": name,
        "first_name": first,
        "last_name": last,
        "agent_number": "0042",
        "avatar_url": f"https://cdn.example-ujet.test/avatars/{agent_id}/face.png",
    }


def _chat(identifier: str = "+14155550134", **changes: Any) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "id": 9001,
        "status": "finished",
        "sub_status": "Disconnected by end user",
        "updated_at": "2024-03-05T10:00:00.000Z",
        "out_ticket_id": "TCK-88123",
        "out_ticket_url": "https://support.example.test/tickets/88123?token=s3cr3t#note",
        "selected_menu": {"id": 3389, "name": "Billing", "output_msg": "Connecting you"},
        "agent_info": _agent(1004, "Emma Garcia"),
        "end_user": {"id": 5150, "identifier": identifier, "out_contact_id": "360949501087"},
        "photos": [{"id": 3, "photo_type": "photo", "url": SIGNED}],
        "videos": [],
        "transfers": [
            {
                "id": 7001,
                "status": "transferred",
                "from_agent": _agent(1001, "Olivia Johnson"),
                "to_agent": _agent(1004, "Emma Garcia"),
                "from_menu": {"items_count": 2, "name": "Billing", "materialized_path": "3300"},
            }
        ],
        "handle_durations": [{"id": 30001, "agent_id": 1001}, {"id": 30002, "agent_id": "1004"}],
        "participants": [
            {"id": 1, "type": "end_user", "user_id": None, "end_user_id": "5150"},
            {"id": 2, "type": "agent", "user_id": 1004, "end_user_id": None},
        ],
    }
    chat.update(changes)
    return chat


def test_the_input_is_never_changed(pz: Pseudonymizer) -> None:
    chat = _chat()
    before = copy.deepcopy(chat)
    clean, _ = sanitize(chat, pz)
    assert chat == before
    assert clean is not chat and clean["agent_info"] is not chat["agent_info"]


def test_each_field_is_treated_as_catalogued(pz: Pseudonymizer) -> None:
    clean, report = sanitize(_chat(), pz)
    assert clean["agent_info"] == {"id": pz.pseudonym("agent", 1004)}
    assert clean["end_user"] == {
        "id": pz.pseudonym("end_user", 5150),
        "out_contact_id": pz.pseudonym("crm_contact", "360949501087"),
    }
    assert clean["out_ticket_id"] == pz.pseudonym("crm_ticket", "TCK-88123")
    assert clean["out_ticket_url"] == "https://support.example.test"
    assert clean["photos"] == [
        {"id": 3, "photo_type": "photo", "url": "https://cdn.example-ujet.test"}
    ]
    assert clean["videos"] == []
    assert clean["selected_menu"] == {"id": 3389, "name": "Billing", "output_msg": "Connecting you"}
    assert clean["sub_status"] == "Disconnected by end user"
    transfer = clean["transfers"][0]
    assert transfer["from_agent"] == {"id": pz.pseudonym("agent", 1001)}
    assert transfer["to_agent"] == {"id": pz.pseudonym("agent", 1004)}
    assert transfer["from_menu"]["name"] == "Billing"
    assert report.records == 1
    assert report.counts[Treatment.DROP] == 3 * 5 + 1  # five per agent object + identifier
    assert report.counts[Treatment.HOST_ONLY] == 2
    assert report.unknown_paths == set() and report.drifted_paths == set()


def test_pseudonyms_join_across_fields_of_one_person(pz: Pseudonymizer) -> None:
    clean, _ = sanitize(_chat(), pz)
    agent = clean["agent_info"]["id"]
    assert clean["transfers"][0]["to_agent"]["id"] == agent
    assert clean["handle_durations"][1]["agent_id"] == agent  # "1004" as a string
    assert clean["participants"][1]["user_id"] == agent
    assert clean["participants"][0]["end_user_id"] == clean["end_user"]["id"]
    assert clean["participants"][0]["user_id"] is None
    assert clean["handle_durations"][0]["agent_id"] != agent


@pytest.mark.parametrize(
    "phone",
    ["+14155550134", "(415) 555-0134", "415-555-0134", "+1 415 555 0134", "010-1234-5678"],
)
def test_a_phone_number_identifier_never_survives(pz: Pseudonymizer, phone: str) -> None:
    assert find_personal(phone) == {"phone"}
    clean, _ = sanitize(_chat(identifier=phone), pz)
    assert "identifier" not in clean["end_user"]
    text = json.dumps(clean, ensure_ascii=False)
    assert phone not in text
    assert "phone" not in set().union(*(find_personal(s) for s in json_strings(clean)))
    assert phone in sensitive_values(_chat(identifier=phone))


def test_null_and_missing_agents(pz: Pseudonymizer) -> None:
    chat = _chat(agent_info=None)
    chat["transfers"][0]["to_agent"] = None
    del chat["transfers"][0]["from_agent"]
    clean, report = sanitize(chat, pz)
    assert clean["agent_info"] is None
    assert clean["transfers"][0]["to_agent"] is None
    assert "from_agent" not in clean["transfers"][0]
    assert report.drifted_paths == set()


@pytest.mark.parametrize("missing", [None, "", "   ", 0, "0", "string"])
def test_missing_ids_become_null_not_a_hash(pz: Pseudonymizer, missing: Any) -> None:
    chat = _chat()
    chat["end_user"]["id"] = missing
    chat["agent_info"]["id"] = missing
    clean, _ = sanitize(chat, pz)
    assert clean["end_user"]["id"] is None
    assert clean["agent_info"] == {"id": None}


def test_an_unknown_field_is_dropped_and_reported_by_path_only(pz: Pseudonymizer) -> None:
    email = "olivia.lee@example.com"
    chat = _chat(customer_email=email, survey={"answers": [{"comment": f"mail me: {email}"}]})
    chat["agent_info"]["email"] = "emma.garcia@example.com"
    clean, report = sanitize(chat, pz)
    assert "customer_email" not in clean and "survey" not in clean
    assert "email" not in clean["agent_info"]
    assert report.unknown_paths == {"customer_email", "survey", "agent_info.email"}
    shown = json.dumps(report.as_metadata()) + repr(report)
    assert "@" not in shown
    assert email not in json.dumps(clean)
    assert {email, f"mail me: {email}", "emma.garcia@example.com"} <= sensitive_values(chat)


def test_unknown_keys_that_look_like_data_are_not_reported(pz: Pseudonymizer) -> None:
    chat = _chat(custom_fields={"kim.minji@example.com": "vip", "010-9876-5432": 1})
    chat["Kim Minji"] = True
    chat["010-1111-2222"] = "x"
    _, report = sanitize(chat, pz)
    assert report.unknown_paths == {"custom_fields", "<unnamed key>"}
    shown = json.dumps(report.as_metadata())
    assert "minji" not in shown.lower() and "9876" not in shown and "1111" not in shown


def test_personal_data_in_kept_text_is_redacted_before_landing(
    pz: Pseudonymizer,
) -> None:
    chat = _chat(sub_status="Closed: customer olivia.lee@example.com asked to stop")
    clean, report = sanitize(chat, pz)
    assert clean["sub_status"] == "Closed: customer [email] asked to stop"
    assert report.redacted == {"sub_status: email": 1}
    assert find_personal(_chat()["sub_status"]) == set()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (SIGNED, "https://cdn.example-ujet.test"),
        ("https://user:pw@host/x", "https://host"),
        ("https://user@Host.Example.test:8443/a?b=c#d", "https://host.example.test:8443"),
        ("HTTP://[2001:db8::1]:8080/p", "http://[2001:db8::1]:8080"),
        ("  https://support.example.test/tickets/1  ", "https://support.example.test"),
        ("true", None),
        ("string", None),
        ("", None),
        ("/relative/path", None),
        ("ftp://files.example.test/x", None),
        ("javascript:alert(1)", None),
        ("https://host:notaport/x", None),
        ("https:///nohost", None),
        (None, None),
        (12, None),
    ],
)
def test_host_only_keeps_scheme_host_and_port(url: Any, expected: str | None) -> None:
    assert host_only(url) == expected


def test_type_drift_never_crashes_and_never_lets_data_through(pz: Pseudonymizer) -> None:
    chat = _chat(
        agent_info="Emma Garcia",  # a string where an object is expected
        photos=None,  # a null list
        videos={"id": 1, "url": SIGNED},  # an object where a list is expected
        sub_status={"text": "olivia.lee@example.com"},  # an object where text is expected
        transfers=[None, "7001", {"id": 7002, "to_agent": ["Emma Garcia"]}],
    )
    chat["end_user"]["id"] = {"value": 5150}
    clean, report = sanitize(chat, pz)
    assert clean["agent_info"] is None
    assert clean["photos"] is None
    assert clean["videos"] is None
    assert clean["sub_status"] is None
    assert clean["end_user"]["id"] is None
    assert clean["transfers"] == [None, None, {"id": 7002, "to_agent": None}]
    assert report.drifted_paths == {
        "agent_info",
        "videos",
        "sub_status",
        "end_user.id",
        "transfers[]",
        "transfers[].to_agent",
    }
    text = json.dumps(clean)
    assert "Emma" not in text and "@" not in text and "X-Amz" not in text
    assert {"Emma Garcia", "olivia.lee@example.com", "5150", SIGNED} <= sensitive_values(chat)


def test_count_only_replaces_a_list_by_its_length(pz: Pseudonymizer) -> None:
    index = RuleIndex(
        [
            Rule("id", Category.LINKABLE_ID, Subject.NONE, Treatment.KEEP),
            Rule("photos", Category.MEDIA, Subject.CUSTOMER, Treatment.COUNT_ONLY),
            Rule("notes", Category.FREE_TEXT, Subject.CUSTOMER, Treatment.COUNT_ONLY),
            Rule("videos", Category.MEDIA, Subject.CUSTOMER, Treatment.COUNT_ONLY),
        ]
    )
    chat = {"id": 1, "photos": [{"url": SIGNED}, {"url": SIGNED}], "notes": None, "videos": "x"}
    clean, report = sanitize(chat, pz, index)
    assert clean == {"id": 1, "photos": 2, "notes": None, "videos": None}
    assert report.counts[Treatment.COUNT_ONLY] == 3
    assert report.drifted_paths == {"videos"}
    assert SIGNED in sensitive_values(chat, index)


def test_a_batch_merges_its_reports(pz: Pseudonymizer) -> None:
    sample = json.loads((DATA / "vendor_sample.json").read_text())
    sample[1]["new_field"] = "x"
    clean, report = sanitize_batch(sample, pz)
    singles = [sanitize(r, pz) for r in sample]
    assert clean == [c for c, _ in singles]
    assert report.records == 2
    assert report.counts == singles[0][1].counts + singles[1][1].counts
    assert report.unknown_paths == {"new_field"}
    assert report.as_metadata()["treated"]["pseudonym"] == report.counts[Treatment.PSEUDONYM]
    assert clean[0]["agent_info"] == {"id": pz.pseudonym("agent", 4)}
    assert clean[1]["agent_info"] is None
    assert clean[0]["photos"] == [{"id": 3, "photo_type": "photo", "url": None}]  # "true"
    with pytest.raises(TypeError, match="JSON object"):
        sanitize_batch([[1, 2]], pz)  # type: ignore[list-item]


def test_sensitive_values_cover_what_is_not_kept() -> None:
    sample = json.loads((DATA / "vendor_sample.json").read_text())
    values = sensitive_values(sample[0])
    assert {"Storm Trooper 1", "Storm", "Trooper 1", "007", "Death Star Carpentry"} <= values
    assert {"4", "5", "1", "360949501087", "209"} <= values  # ids that get pseudonyms
    assert not {"finished", "Deathstar/Shipping", "en", "not_in_sla"} & values


def test_a_sanitized_demo_day_holds_none_of_its_sensitive_values(pz: Pseudonymizer) -> None:
    chats = demo_data.chats_updated_between(DAY, DAY + timedelta(days=1, microseconds=-1))
    before = copy.deepcopy(chats)
    clean, report = sanitize_batch(chats, pz)
    assert chats == before
    assert report.unknown_paths == set() and report.drifted_paths == set()
    sensitive = set().union(*(sensitive_values(c) for c in chats))
    watched = {v for v in sensitive if len(v.encode()) >= MIN_CANARY_BYTES}
    # The demo day holds every kind: phones, emails, Korean names, signed links, agent names.
    kinds = set().union(*(find_personal(v) for v in watched))
    assert kinds == {"email", "phone", "url"}
    assert any("X-Amz-Signature" in v for v in watched)
    strings = set(json_strings(json.loads(json.dumps(clean, ensure_ascii=False))))
    assert not watched & strings
    assert set().union(*(find_personal(s) for s in strings)) <= {"url"}
    hosts = {s for s in strings if find_personal(s) == {"url"}}
    assert hosts == {"https://cdn.example-ujet.test", "https://support.example.test"}


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("selected_menu", "jane.doe@mail.example"),
        ("selected_menu", "010-1234-5678"),
        ("", "Jane Roe"),
        ("", "end_user.identifier"),  # a dot inside a key is not a path
    ],
)
def test_a_key_that_is_not_a_field_name_is_dropped_and_never_shown(
    pz: Pseudonymizer, where: str, key: str
) -> None:
    chat = _chat()
    target = chat[where] if where else chat
    target[key] = {"note": "x"} if where else "+14155550199"
    guarded = sanitize_guarded([chat], pz)
    clean, report = guarded.records[0], guarded.report
    assert key not in json.dumps(clean, ensure_ascii=False)
    placeholder = f"{where}.<unnamed key>" if where else "<unnamed key>"
    assert report.unknown_paths == {placeholder}
    assert report.unnamed_keys == 1
    shown = json.dumps(report.as_metadata(), ensure_ascii=False)
    assert key not in shown and key.split(".")[0] not in shown.replace("end_user", "")
    assert key in guarded.sensitive  # the canary watches the key itself


def _menu_chat(chat_id: int, agent_name: str, menu_name: str) -> dict[str, Any]:
    chat = _chat(id=chat_id)
    chat["agent_info"] = _agent(chat_id + 100, agent_name)
    chat["selected_menu"] = {"id": 3389, "name": menu_name, "output_msg": "Connecting you"}
    return chat


def test_a_name_copied_into_the_menus_of_three_chats_is_not_configuration(
    pz: Pseudonymizer,
) -> None:
    copied = [_menu_chat(n, "Jane Roe", "Jane Roe") for n in (1, 2, 3)]
    guarded = sanitize_guarded(copied, pz)
    assert "Jane Roe" in guarded.sensitive
    assert "Jane Roe" not in guarded.configuration


def test_a_menu_named_like_some_agent_is_still_configuration(pz: Pseudonymizer) -> None:
    """A queue named "Billing Team" in many chats, and one agent of that name elsewhere."""
    chats = [_menu_chat(n, "Emma Garcia", "Billing Team") for n in (1, 2)]
    chats.append(_menu_chat(3, "Billing Team", "Returns"))
    guarded = sanitize_guarded(chats, pz)
    assert "Billing Team" in guarded.sensitive
    assert "Billing Team" in guarded.configuration
    lone = sanitize_guarded([_menu_chat(4, "Emma Garcia", "Billing Team")], pz)
    assert "Billing Team" not in lone.configuration  # one chat shows no configuration


def test_the_window_canary_reaches_across_pages(pz: Pseudonymizer) -> None:
    """Page by page, the canary still sees the whole window: a name held back on one page and
    kept on another is caught, and a queue shown on two pages stays configuration."""
    leaky = WindowSanitizer(pz)
    first = _menu_chat(1, "Jane Roe", "Billing Team")
    second = _menu_chat(2, "Emma Garcia", "Billing Team")
    second["sub_status"] = "Jane Roe"  # kept text: the first page's agent, copied
    leaky.page([first])
    leaky.page([second])
    assert leaky.leaks() == 1
    assert leaky.report.records == 2

    sound = WindowSanitizer(pz)
    sound.page([_menu_chat(1, "Emma Garcia", "Billing Team")])
    sound.page([_menu_chat(2, "Jane Roe", "Billing Team")])
    sound.page([_menu_chat(3, "Billing Team", "Returns")])  # an agent named like the queue
    assert sound.leaks() == 0
    lone = WindowSanitizer(pz)
    lone.page([_menu_chat(1, "Emma Garcia", "Billing Team")])
    lone.page([_menu_chat(3, "Billing Team", "Returns")])
    assert lone.leaks() == 1  # one chat shows no configuration
    assert WindowSanitizer(pz).leaks() == 0


def test_the_window_canary_reads_every_kept_text_at_any_depth(pz: Pseudonymizer) -> None:
    """A held-back name copied into kept text is caught wherever that text lies: at the top,
    in a nested object, or as an item of a list of texts, and only there."""
    index = RuleIndex(
        [
            Rule("id", Category.LINKABLE_ID, Subject.NONE, Treatment.KEEP),
            Rule("agent", Category.DIRECT_IDENTIFIER, Subject.AGENT, Treatment.PSEUDONYM, "agent"),
            Rule("note", Category.FREE_TEXT, Subject.AGENT, Treatment.KEEP),
            Rule("menu.label", Category.FREE_TEXT, Subject.NONE, Treatment.KEEP),
            Rule("tags[]", Category.FREE_TEXT, Subject.NONE, Treatment.KEEP),
        ]
    )
    clean = {"agent": "Jane Roe", "note": "ok", "menu": {"label": "Billing"}, "tags": ["vip"]}
    copies = [
        {"note": "Jane Roe"},
        {"menu": {"label": "Jane Roe"}},
        {"tags": ["vip", "Jane Roe", 3]},
    ]
    for copied in [{}, *copies]:
        window = WindowSanitizer(pz, index)
        window.page([{"id": 1} | clean, {"id": 2} | clean | copied])
        assert window.leaks() == (1 if copied else 0), copied
