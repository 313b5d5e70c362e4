"""The guards find contact data and leaked values, in Python and in PostgreSQL alike."""

import itertools
import json

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from chat_assets.checks.personal_text import COLUMN_JOINER
from chat_assets.privacy import detect
from chat_assets.privacy.detect import (
    FORMAT_CHARACTERS,
    INSTANT,
    MIN_DIGITS,
    PATTERNS,
    PG_PATTERNS,
    find_personal,
    normalized,
    redact,
    watchlist,
)
from chat_assets_tests.privacy.reference import json_strings, leak_count, leaked_columns
from chat_assets_tests.support import fullwidth

POSITIVE: dict[str, list[str]] = {
    "email": [
        "olivia.lee42@example.com",
        "Olivia.Lee+chat@Mail.Example.CO.KR",
        "reach me at o_lee@example-mail.org, thanks",
    ],
    "phone": [
        "+14155550134",
        "+821012345678",
        "(415) 555-0134",
        "(415)555-0134",
        "415-555-0134",
        "415.555.0134",
        "+1 415 555 0134",
        "+1 (415) 555-0134",
        "+82 10-1234-5678",
        "+44 20 7946 0958",
        "010-1234-5678",
        "01012345678",
        "011 123 4567",
        "call me on 010-9876-5432.",
        "tel:+14155550134",
    ],
    "rrn": [
        "900101-1234567",
        "주민번호 9001011234567 입니다",
        "021231-4123456.",
    ],
    "card": [
        "4111 1111 1111 1111",
        "card: 5500-0000-0000-0004, exp 12/29",
        "3782 822463 10005",
    ],
    "url": [
        "https://cdn.example-ujet.test/photos/1.jpg?X-Amz-Signature=abc",
        "http://support.example.test",
        "see HTTPS://user:pw@host/x",
        "https://[2001:db8::1]/",
    ],
}

# Values the warehouse holds on purpose, none of which is contact data.
NEGATIVE = [
    "2019-07-17T07:27:14.000Z",
    "2024-03-05 10:00:00+09:00",
    "2024-03-05",
    "07:27:14",
    "123e4567-e89b-12d3-a456-426614174000",
    "12345678-0101-2345-6789-010123456789",
    "3.14159",
    "0.0101234567",
    "-12.75",
    "1234567.8901",
    "PT1H2M3S",
    "00:05:12",
    "Support/Billing",
    "고객센터/배송 문의",
    "3300/3389",
    "Deathstar/Shipping",
    "360949501087",
    "19783000123",
    "4155550134",
    "k1:6b8545efdcc9be2a7beca82a59b9cb3b",
    "Messaging Inbound (App Chat)",
    "Disconnected by end user",
    "Group 2",
    "user@localhost",
    "v1.2@3.4",
    "http:/not-a-link",
    "ftp://files.example.test/x",
    "+09:00",
    "",
    "901301-1234567",  # no month 13
    "900101-9234567",  # no such sex-and-century digit
    "19900101123456",  # a timestamp's digits
    "4111111111111112",  # fails Luhn's check
]


# Disguises the patterns must see through: one normalization (NFKC, format characters removed)
# comes before every pattern.
DISGUISED: dict[str, str] = {
    fullwidth("jane@mail.example"): "email",
    "jane\u200b@mail.example": "email",
    "010\u200b-1234\u200b-5678": "phone",
    fullwidth("010-1234-5678"): "phone",
    "9001\u200d01-1234567": "rrn",
    "4111\u00ad1111 1111 1111": "card",
}


def _expected(text: str) -> set[str]:
    return {kind for kind, examples in POSITIVE.items() if text in examples}


@pytest.mark.parametrize("text", [t for ts in POSITIVE.values() for t in ts])
def test_contact_data_is_found(text: str) -> None:
    assert find_personal(text) == _expected(text)


@pytest.mark.parametrize("text", NEGATIVE)
def test_ordinary_values_are_not_flagged(text: str) -> None:
    assert find_personal(text) == set()


def test_find_personal_ignores_non_text() -> None:
    assert find_personal(None) == set()
    assert find_personal(4155550134) == set()
    assert find_personal(b"olivia@example.com") == set()


@pytest.mark.parametrize(("text", "kind"), DISGUISED.items())
def test_disguised_values_are_found_and_redacted(text: str, kind: str) -> None:
    assert find_personal(text) == {kind}
    redacted, kinds = redact(f"note: {text} end")
    assert kinds == [kind]
    assert redacted == f"note: [{kind}] end"


def test_card_numbers_need_luhn_unless_grouped() -> None:
    assert find_personal("4111111111111111") == {"card"}  # Luhn-valid run of 16 digits
    assert find_personal("4111111111111112") == set()
    assert redact("pay 4111111111111111 now, or 4111 1111 1111 1111") == (
        "pay [card] now, or [card]",
        ["card", "card"],
    )


@given(st.from_regex(INSTANT, fullmatch=True))
def test_no_pattern_matches_an_instant(text: str) -> None:
    # Sanitizing skips the scan for instants; the full scan must agree that none can match.
    assert detect._spans(text) == []


def _compositions(total: int) -> list[tuple[int, ...]]:
    """Every way to write `total` as an ordered sum of parts from 1 to 4 (digit groups)."""
    if total == 0:
        return [()]
    return [
        (part, *rest)
        for part in range(1, min(4, total) + 1)
        for rest in _compositions(total - part)
    ]


def test_no_pattern_matches_with_fewer_digits_than_the_threshold() -> None:
    # Sanitizing skips the scan for text with fewer digits (and no @ or ://): every way of
    # writing so few digits as a number must agree.
    fills = ("0123", "1234", "9876", "0101")
    for digits in range(1, MIN_DIGITS):
        for sizes in _compositions(digits):
            for fill, lead, joint in itertools.product(fills, ("", "+", "("), " .-/:_"):
                text = lead + joint.join(fill[:size] for size in sizes)
                assert detect._spans(text) == [], text
                assert detect._spans(text.replace(joint, ") ", 1)) == [], text


def test_the_shortest_phone_number_is_redacted() -> None:
    assert MIN_DIGITS == 6
    assert redact("call +1 2 34 56 now") == ("call [phone] now", ["phone"])


def test_text_without_personal_data_comes_back_unchanged() -> None:
    assert redact(fullwidth("Support/") + "B") == (fullwidth("Support/") + "B", [])


def test_postgres_normalizes_like_python(engine: sa.Engine) -> None:
    query = sa.text("SELECT regexp_replace(normalize(:t, NFKC), :f, '', 'g')")
    with engine.connect() as connection:
        for text in DISGUISED:
            sql_form = connection.execute(
                query, {"t": text, "f": f"[{FORMAT_CHARACTERS}]"}
            ).scalar_one()
            assert sql_form == normalized(text)


def test_python_and_postgres_share_one_pattern_per_kind() -> None:
    assert set(PATTERNS) == set(PG_PATTERNS) == {"email", "phone", "rrn", "card", "url"}
    for kind, pattern in PATTERNS.items():
        assert pattern.pattern == PG_PATTERNS[kind]
        assert "(?<" not in pattern.pattern and "(?=" not in pattern.pattern
        assert "\\d" not in pattern.pattern


def test_postgres_agrees_with_python_on_every_example(engine: sa.Engine) -> None:
    texts = [t for ts in POSITIVE.values() for t in ts] + NEGATIVE
    query = sa.text(
        "SELECT array_agg(t ~ :pattern ORDER BY n) "
        "FROM unnest(CAST(:texts AS text[])) WITH ORDINALITY AS u(t, n)"
    )
    with engine.connect() as connection:
        for kind, pattern in PG_PATTERNS.items():
            found = connection.execute(query, {"pattern": pattern, "texts": texts}).scalar_one()
            expected = [kind in _expected(t) for t in texts]
            wrong = [t for t, f, e in zip(texts, found, expected, strict=True) if f != e]
            assert wrong == [], f"{kind}: PostgreSQL disagrees on {wrong}"


def test_a_match_in_either_column_is_a_match_in_their_join(engine: sa.Engine) -> None:
    """`no_personal_text` filters a row by its columns joined before it counts by column: for
    every ordered pair of the examples (and fragments a boundary could hang on), a kind that
    matches either text alone matches the two joined."""
    fragments = ["", " ", ".", "+", "-", "x", "7", "(", "@", ".com", "a@b", "http", "://"]
    pool = [t for ts in POSITIVE.values() for t in ts] + NEGATIVE + fragments
    ordered = list(itertools.product(pool, repeat=2))
    firsts, seconds = [a for a, _ in ordered], [b for _, b in ordered]
    query = sa.text(
        "SELECT count(*) FILTER (WHERE (a ~ :pattern OR b ~ :pattern)"
        " AND NOT concat_ws(:joiner, a, b) ~ :pattern), count(*)"
        " FROM unnest(CAST(:a AS text[]), CAST(:b AS text[])) AS u(a, b)"
    )
    with engine.connect() as connection:
        for kind, pattern in PG_PATTERNS.items():
            lost, pairs = connection.execute(
                query, {"pattern": pattern, "joiner": COLUMN_JOINER, "a": firsts, "b": seconds}
            ).one()
            assert pairs == len(ordered)
            assert lost == 0, f"{kind}: {lost} pairs match alone but not joined"


def test_one_sql_query_counts_contact_data_per_kind(engine: sa.Engine) -> None:
    cells = ["Billing", "olivia@example.com", "+14155550134", None, "https://x.test/a", "ok"]
    filters = ", ".join(f"count(*) FILTER (WHERE t ~ :{kind}) AS {kind}" for kind in PG_PATTERNS)
    query = sa.text(f"SELECT {filters} FROM unnest(CAST(:cells AS text[])) AS u(t)")
    with engine.connect() as connection:
        row = connection.execute(query, {"cells": cells, **PG_PATTERNS}).mappings().one()
    assert dict(row) == {"email": 1, "phone": 1, "rrn": 0, "card": 0, "url": 1}


SENSITIVE = {
    "olivia.lee@example.com",
    "+14155550134",
    "Emma Garcia",
    "김민준",  # three characters, nine bytes: still watched
    "Mia",  # three ASCII characters: matches too much by chance, ignored
    "007",
    "Billing",  # an agent named like a menu: allow-listed
}


def test_the_canary_counts_exact_leaks_per_column_and_never_returns_values() -> None:
    columns = {
        "sub_status": ["Disconnected by end user", " olivia.lee@example.com ", None],
        "agent_name": ["Emma Garcia", "Emma Garcia", "Mia", "김민준"],
        "menu_name": ["Billing", "Billing", "Sales"],
        "end_user_id": ["k1:6b8545efdcc9be2a7beca82a59b9cb3b", 14155550134, "+14155550134x"],
        "notes": ["write to olivia.lee@example.com", "EMMA GARCIA"],
    }
    leaks = leaked_columns(SENSITIVE, columns, allow={"Billing"})
    assert leaks == {"sub_status": 1, "agent_name": 3}
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in leaks.items())
    assert not set(json.dumps(leaks, ensure_ascii=False).split('"')) & SENSITIVE
    assert leaked_columns(SENSITIVE, {"menu_name": columns["menu_name"]}) == {"menu_name": 2}
    assert leak_count(SENSITIVE, columns["agent_name"]) == 3
    assert leak_count(set(), columns["agent_name"]) == 0


def test_the_watchlist_skips_short_and_allowed_values() -> None:
    watched = watchlist({" Emma Garcia ", "Mia", "007", "김민준", "Billing", ""}, {" Billing"})
    assert watched == {"Emma Garcia", "김민준"}


def test_json_strings_reads_payloads_for_the_canary() -> None:
    payload = {"id": 1, "end_user": {"identifier": "+14155550134"}, "tags": ["a", 2, None]}
    strings = sorted(json_strings(payload))  # every string once per place, in no set order
    assert strings == sorted(["id", "end_user", "identifier", "+14155550134", "tags", "a"])
    as_bytes = json.dumps(payload).encode()
    assert sorted(json_strings(as_bytes)) == strings
    assert leaked_columns(SENSITIVE, {"payload": json_strings(as_bytes)}) == {"payload": 1}
