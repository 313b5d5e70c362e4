"""The suppression list's decisions on chats, in memory: which chats, which values, which mode."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

from chat_assets.privacy.lookup import CUSTOMER_PSEUDONYMS
from chat_assets.privacy.suppression import (
    LINKED_TABLES,
    Erased,
    Mode,
    Suppression,
    customer_columns,
    held_pseudonyms,
    unlinked,
)
from chat_assets.tables import CHAT_PARTICIPANTS, CHATS

ERASED_AT = datetime(2026, 3, 1, tzinfo=UTC)
SUBJECT, CONTACT, TICKET, OTHER = (
    "k1:" + "a" * 32,
    "k1:" + "b" * 32,
    "k1:" + "c" * 32,
    "k1:" + "d" * 32,
)


def chat(created_at: str = "2026-01-05T10:00:00.000Z") -> dict:
    """A sanitized chat of the subject, with an agent and another participant."""
    return {
        "id": 1,
        "created_at": created_at,
        "out_ticket_id": TICKET,
        "agent_info": {"id": OTHER},
        "end_user": {"id": SUBJECT, "out_contact_id": CONTACT},
        "participants": [
            {"type": "end_user", "end_user_id": SUBJECT, "user_id": None},
            {"type": "agent", "end_user_id": None, "user_id": OTHER},
        ],
    }


def listing(mode: Mode = Mode.UNLINK, also_future: bool = False, *pseudonyms: str) -> Suppression:
    return Suppression(
        {p: Erased(p, mode, ERASED_AT, also_future) for p in pseudonyms or (SUBJECT,)}
    )


def test_the_customer_pseudonyms_come_from_the_catalog():
    assert sorted(rule.path for rule in CUSTOMER_PSEUDONYMS) == [
        "end_user.id",
        "end_user.out_contact_id",
        "out_ticket_id",
        "participants[].end_user_id",
    ]
    assert LINKED_TABLES == (CHATS, CHAT_PARTICIPANTS)
    assert customer_columns(CHATS) == ["out_ticket_id", "end_user_id", "end_user_out_contact_id"]
    assert customer_columns(CHAT_PARTICIPANTS) == ["end_user_id"]


def test_unlinking_nulls_every_customer_pseudonym_and_nothing_else():
    record = chat()
    before = copy.deepcopy(record)
    clean, removed = unlinked(record)
    assert record == before  # the input is not changed
    assert removed == 4
    assert held_pseudonyms(clean) == set()
    assert clean["agent_info"] == {"id": OTHER}
    assert clean["participants"][1] == before["participants"][1]
    assert clean["end_user"] == {"id": None, "out_contact_id": None}
    assert SUBJECT not in json.dumps(clean) and TICKET not in json.dumps(clean)
    assert unlinked(clean) == (clean, 0)


def test_drifted_shapes_are_left_as_they_are():
    odd = {"id": 2, "end_user": None, "participants": "x", "out_ticket_id": None}
    assert unlinked(odd) == (odd, 0)
    assert held_pseudonyms(odd) == set()


def test_a_chat_holding_any_listed_pseudonym_is_the_subjects():
    for held in (SUBJECT, CONTACT, TICKET):
        assert listing(Mode.UNLINK, False, held).action(chat()) is Mode.UNLINK
    assert listing(Mode.UNLINK, False, OTHER).action(chat()) is None  # an agent's: not listed
    assert listing().action({"id": 3, "end_user": {"id": "k1:" + "e" * 32}}) is None


def test_past_only_covers_chats_created_before_the_erasure():
    before, after = chat("2026-02-28T23:59:59Z"), chat("2026-03-01T00:00:00Z")
    assert listing().action(before) is Mode.UNLINK
    assert listing().action(after) is None
    assert listing().action(chat("not a time")) is Mode.UNLINK  # unknown: covered
    assert listing(Mode.UNLINK, True).action(after) is Mode.UNLINK


def test_delete_wins_and_drops_the_chat():
    both = Suppression(
        {
            SUBJECT: Erased(SUBJECT, Mode.UNLINK, ERASED_AT, False),
            TICKET: Erased(TICKET, Mode.DELETE, ERASED_AT, False),
        }
    )
    kept, done = both.apply([chat(), {"id": 9, "end_user": {"id": OTHER}}])
    assert [c["id"] for c in kept] == [9] and done == {Mode.DELETE: 1}
    kept, done = listing().apply([chat()])
    assert held_pseudonyms(kept[0]) == set() and done == {Mode.UNLINK: 1}


def test_versions_of_the_listed_pseudonyms():
    assert listing(Mode.UNLINK, False, SUBJECT, "k2:" + "f" * 32).versions() == {"k1", "k2"}
