"""The table declarations agree with the privacy catalog and with themselves."""

import dataclasses

import pytest

from chat_assets.privacy.catalog import INDEX, Treatment
from chat_assets.tables import AGGREGATE_TABLES, TABLES, PgType, Table


@pytest.mark.parametrize("table", TABLES.values(), ids=lambda t: t.name)
def test_every_sourced_column_is_classified_and_never_a_dropped_field(table: Table):
    for column in table.columns:
        path = table.catalog_path(column)
        if path is None:
            continue
        if column.source and column.source.startswith("count:"):
            assert INDEX.container(path) == "list", column.name
            continue
        rule = table.rule(column)
        assert rule is not None, f"{table.name}.{column.name}: {path} is not in the catalog"
        assert rule.treatment not in (Treatment.DROP, Treatment.COUNT_ONLY), column.name
        if rule.treatment is Treatment.PSEUDONYM:
            assert column.type is PgType.TEXT, f"{column.name} holds pseudonyms: text"


@pytest.mark.parametrize("table", TABLES.values(), ids=lambda t: t.name)
def test_keys_are_declared_and_only_an_aggregate_group_may_be_null(table: Table):
    assert table.key
    groups = table.aggregation.group_by if table.aggregation else ()
    assert all(not table.column(name).nullable for name in table.key if name not in groups)
    assert set(table.unique_by) <= set(table.column_names)


@pytest.mark.parametrize("table", AGGREGATE_TABLES, ids=lambda t: t.name)
def test_an_aggregate_column_is_its_time_a_group_its_interval_or_a_formula(table: Table):
    aggregation = table.aggregation
    assert aggregation is not None
    assert table.key == [table.time_column, *aggregation.group_by]
    interval = aggregation.interval
    for column in table.columns:
        made = column.name in table.key or (
            interval is not None and column.name == interval.minutes
        )
        assert (column.formula is None) == made, column.name
        assert column.source is None, column.name
    assert set(aggregation.derived) <= set(table.column_names)
    for name in aggregation.group_by:
        assert table.column(name).type is aggregation.facts.column(name).type


def test_a_measure_over_facts_the_aggregate_does_not_count_is_refused():
    table = AGGREGATE_TABLES[0]
    assert [c.name for c in table.columns if c.over] == [
        "rated_chats",
        "mean_rating",
        "rated_4_or_5",
    ]
    misplaced = [
        dataclasses.replace(c, over="chat_transfers") if c.name == "rated_chats" else c
        for c in table.columns
    ]
    with pytest.raises(ValueError, match="rated_chats is over facts it does not count"):
        dataclasses.replace(table, columns=tuple(misplaced))
