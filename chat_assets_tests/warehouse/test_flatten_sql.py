"""The warehouse's flattening (SQL compiled from the declarations) equals the pure reference.

Chats are landed in a real PostgreSQL's raw_chats and applied there; every table must then hold
exactly the rows the reference flattening (`reference_flattening.flatten`) gives, with the same
failure counts.
"""

from __future__ import annotations

import copy
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from chat_assets.tables import (
    CHAT_HANDLE_DURATIONS,
    CHATS,
    DERIVED_TABLES,
    RAW_CHATS,
    Column,
    PgType,
    Table,
)
from chat_assets.warehouse import flatten_sql, newest_wins, windows
from chat_assets.warehouse.connection import cursor_for
from chat_assets_tests.reference_flattening import coerce, flatten
from chat_assets_tests.support import DATA
from chat_assets_tests.windows import landing_frame

START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=1)
_schemas = itertools.count()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def land_and_apply(engine, schema: str, chats: list[dict], start=START, end=END) -> dict:
    windows.replace_window(
        engine, schema, RAW_CHATS, landing_frame(chats, "UTC", "k1:test"), start, end
    )
    applied = newest_wins.apply_newest(
        engine, schema, DERIVED_TABLES, start, end, timezone="UTC", interval_minutes=30
    )
    return {t.name: a for t, a in zip(DERIVED_TABLES, applied, strict=True)}


def assert_same_as_reference(engine, schema: str, chats: list[dict], applied: dict) -> None:
    for table in DERIVED_TABLES:
        reference = flatten(chats, table)
        stored = windows.load_window(engine, schema, table, START, END)
        pd.testing.assert_frame_equal(
            stored.reset_index(drop=True),
            reference.rows.sort_values(table.key).reset_index(drop=True),
            obj=table.name,
        )
        assert applied[table.name].coercion_failures == reference.coercion_failures, table.name
        assert applied[table.name].rows_written == len(reference.rows)
        if table.summary_by:
            column = reference.rows[table.summary_by]
            expected = {v: int((column == v).sum()) for v in table.column(table.summary_by).values}
            assert applied[table.name].summary == expected, table.name


def in_window(chats: list[dict]) -> list[dict]:
    for n, chat in enumerate(chats):
        chat["updated_at"] = stamp(START + timedelta(minutes=n))
    return chats


@pytest.mark.parametrize("name", ["vendor_sample.json", "vendor_model.json"])
def test_vendor_documents(engine, schema, name):
    chats = in_window(json.loads((DATA / name).read_text()))
    applied = land_and_apply(engine, schema, chats)
    assert_same_as_reference(engine, schema, chats, applied)


def test_a_window_holding_a_chat_twice_keeps_its_newest_version(engine, schema):
    sample = json.loads((DATA / "vendor_sample.json").read_text())
    old, new = copy.deepcopy(sample[0]), copy.deepcopy(sample[0])
    old["updated_at"] = stamp(START + timedelta(hours=1))
    new["updated_at"] = stamp(START + timedelta(days=1, hours=1))
    new["handle_durations"] = []
    day_two = (END, END + timedelta(days=1))
    windows.replace_window(
        engine, schema, RAW_CHATS, landing_frame([old], "UTC", "k1:test"), START, END
    )
    windows.replace_window(
        engine, schema, RAW_CHATS, landing_frame([new], "UTC", "k1:test"), *day_two
    )
    # both days at once, as a range
    newest_wins.apply_newest(
        engine, schema, DERIVED_TABLES, START, day_two[1], timezone="UTC", interval_minutes=30
    )
    chats = windows.load_window(engine, schema, CHATS, START, day_two[1])
    assert chats["updated_at"].tolist() == [pd.Timestamp(new["updated_at"])]
    assert windows.load_window(engine, schema, CHAT_HANDLE_DURATIONS, START, day_two[1]).empty


# Values of every kind UJET has been seen to send where a scalar belongs, and more.
_WHITESPACE = st.sampled_from(["", " ", "\t", "\n ", "\u00a0"])
_NUMBER_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        ["1e5", ".5", "5.", "+3", "-0", "1e1000", "0e9999", "--5", "1_000", "0x10", "Infinity"]
    ),
    st.sampled_from(
        ["NaN", "\u0661\u0662", "\u00b2", "1.0000000000000002", "9223372036854775808", ""]
    ),
)
_WORDS = st.sampled_from(["true", "FALSE", "t", "F", "yes", "No", "y", "n", "1", "0", "maybe"])


# Timestamp fields at and beyond their ranges.
_YEARS = ["0000", "0999", "1000", "2016", "2024", "8999", "9999"]
_MONTHS = ["00", "01", "02", "04", "12", "13"]
_DAYS = ["00", "01", "28", "29", "30", "31", "32"]
_HOURS = ["00", "09", "23", "24"]
_MINUTES = _SECONDS = ["00", "59", "60"]


@st.composite
def _timestamps(draw) -> str:
    def pick(options: list[str]) -> str:
        return draw(st.sampled_from(options))

    year, month, day = pick(_YEARS), pick(_MONTHS), pick(_DAYS)
    hour, minute, second = pick(_HOURS), pick(_MINUTES), pick(_SECONDS)
    if draw(st.booleans()):  # UJET's own form, with fields in range or not
        return f"{year}-{month}-{day}T{hour}:{minute}:{second}.{draw(st.integers(0, 999)):03}Z"
    text = f"{year}-{month}-{day}"
    if draw(st.booleans()):
        text += pick(["T", " ", "t"]) + f"{hour}:{minute}"
        if draw(st.booleans()):
            text += ":" + second + pick(["", ".1", ".123", ".123456", ".1234567"])
        text += pick(["", "Z", "+05:30", "-0800", "+14", "+15:00", "z"])
    return draw(_WHITESPACE) + text if draw(st.integers(0, 5)) == 0 else text


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8),
    st.tuples(_WHITESPACE, _NUMBER_TEXT, _WHITESPACE).map("".join),
    _WORDS,
    _timestamps(),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=2),
    st.dictionaries(st.sampled_from(["a", "bb", "id", "ÿ"]), _SCALARS, max_size=3),
)


def _tree(table: Table, on_chat: bool) -> dict[str, Any]:
    """The paths the table reads, as a tree of keys (a leaf is None)."""
    tree: dict[str, Any] = {}
    for column in table.columns:
        read = table.read(column)
        if read is None or read.position or read.identity or read.on_chat != on_chat:
            continue
        node = tree
        *parents, leaf = read.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, None)
    return tree


def _objects(tree: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the tree's keys, each holding any value, or an object where the
    tree goes deeper."""
    return st.fixed_dictionaries(
        {},
        optional={
            key: _VALUES if sub is None else st.one_of(_objects(sub), _VALUES)
            for key, sub in tree.items()
        },
    )


_LISTS = {t.items: _tree(t, on_chat=False) for t in DERIVED_TABLES if t.items}
_CHAT_TREE = {**_tree(CHATS, on_chat=True), **{name: None for name in _LISTS}}


@st.composite
def _chats(draw) -> list[dict[str, Any]]:
    chats = []
    for n in range(draw(st.integers(1, 4))):
        chat = draw(_objects({k: v for k, v in _CHAT_TREE.items() if k not in _LISTS}))
        for name, item_tree in _LISTS.items():
            if draw(st.booleans()):
                chat[name] = draw(
                    st.one_of(
                        st.lists(st.one_of(_objects(item_tree), _SCALARS), max_size=3),
                        _VALUES,
                    )
                )
        chat["id"] = 1000 + n
        chats.append(chat)
    return in_window(chats)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chats=_chats())
def test_any_drifted_chats_flatten_in_the_warehouse_as_in_the_reference(engine, chats):
    schema = f"eq_{next(_schemas)}"
    try:
        applied = land_and_apply(engine, schema, chats)
        assert_same_as_reference(engine, schema, chats, applied)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


_FIXTURES = [HealthCheck.function_scoped_fixture]
_KINDS = [PgType.BIGINT, PgType.INTEGER, PgType.DOUBLE, PgType.BOOLEAN, PgType.TEXT]


def _convert_in_sql(engine, kind: PgType, values: list[Any]) -> list[Any]:
    query = sql.SQL(
        "SELECT {} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS v(value, n) ORDER BY n"
    ).format(flatten_sql.converted(kind, sql.SQL("v.value")))
    with cursor_for(engine, transaction=True) as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        return [row[0] for row in cursor.execute(query, (json.dumps(values),)).fetchall()]


def _convert_in_python(kind: PgType, values: list[Any]) -> list[Any]:
    converted, _ = coerce(values, Column("c", kind, ""))
    return [None if pd.isna(v) else v for v in converted]


@pytest.mark.parametrize("kind", _KINDS, ids=lambda k: k.name)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_VALUES, min_size=1, max_size=40))
def test_each_conversion_matches_the_reference(engine, kind, values):
    assert _convert_in_sql(engine, kind, values) == _convert_in_python(kind, values)


@pytest.mark.parametrize("kind", [PgType.INTEGER, PgType.BIGINT], ids=lambda k: k.name)
def test_integers_at_and_beyond_the_bounds_of_their_type(engine, kind):
    bound = 2**31 if kind is PgType.INTEGER else 2**63
    edges = [-bound - 1, -bound, -bound + 1, bound - 1, bound, 0]
    values = [
        *edges,
        *(float(n) for n in edges),
        *(f"{n}" for n in edges),
        *(f" {n}.0 " for n in edges),
        -bound - 0.5,
        bound - 0.5,
    ]
    assert _convert_in_sql(engine, kind, values) == _convert_in_python(kind, values)
    assert -bound in _convert_in_python(kind, values)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.one_of(_timestamps(), _VALUES), min_size=1, max_size=40))
def test_timestamps_match_the_reference_on_both_paths(engine, values):
    """UJET's usual form takes a shortcut in SQL; in range or not, it must agree."""
    in_sql = _convert_in_sql(engine, PgType.TIMESTAMPTZ, values)
    expected = _convert_in_python(PgType.TIMESTAMPTZ, values)
    assert [None if v is None else pd.Timestamp(v) for v in in_sql] == expected


def test_every_field_range_of_the_usual_form(engine):
    """Each field of UJET's form at and beyond its range, in every combination."""
    fields = itertools.product(_YEARS, _MONTHS, _DAYS, _HOURS, _MINUTES, _SECONDS, ["000", "5"])
    values = [f"{y}-{mo}-{d}T{h}:{mi}:{s}.{f}Z" for y, mo, d, h, mi, s, f in fields]
    in_sql = _convert_in_sql(engine, PgType.TIMESTAMPTZ, values)
    expected = _convert_in_python(PgType.TIMESTAMPTZ, values)
    assert [None if v is None else pd.Timestamp(v) for v in in_sql] == expected
    assert 0 < sum(v is not None for v in expected) < len(values)


def test_the_usual_form_with_any_character_changed_moved_or_missing(engine):
    """Near misses of UJET's form: each character replaced, swapped with the next, dropped or
    doubled. The shortcut must take only what the pattern takes; the rest goes to it."""
    usual = "2024-02-29T23:59:59.999Z"
    characters = ["0", "1", "9", "a", "-", ":", ".", "T", "Z", "t", " ", "_", "%", "\u0661"]
    values = {usual}
    for n in range(len(usual)):
        values.update(usual[:n] + c + usual[n + 1 :] for c in characters)
        values.add(usual[:n] + usual[n + 1 : n + 2] + usual[n] + usual[n + 2 :])
        values.add(usual[:n] + usual[n + 1 :])
        values.add(usual[:n] + usual[n] + usual[n:])
    values = sorted(values)
    in_sql = _convert_in_sql(engine, PgType.TIMESTAMPTZ, values)
    expected = _convert_in_python(PgType.TIMESTAMPTZ, values)
    assert [None if v is None else pd.Timestamp(v) for v in in_sql] == expected
    assert 0 < sum(v is not None for v in expected) < len(values)
