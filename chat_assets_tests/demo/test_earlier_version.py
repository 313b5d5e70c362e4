"""bin/demo on a warehouse an earlier version left: its synthetic chats go, the demo starts
afresh; a warehouse of today's shape is kept as it is."""

from __future__ import annotations

from chat_assets.tables import QUEUE_SERVICE_LEVELS, RAW_CHATS
from chat_assets.warehouse import ddl
from chat_assets_demo.earlier_version import start_afresh_if_earlier


def _tables(engine, schema: str) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).scalars()
        )


def test_a_demo_warehouse_of_today_is_kept(database_url, engine, schema):
    ddl.prepare(engine, schema, RAW_CHATS)
    ddl.prepare(engine, schema, QUEUE_SERVICE_LEVELS)
    assert start_afresh_if_earlier(database_url, schema) is False
    assert {"raw_chats", "queue_service_levels"} <= _tables(engine, schema)


def test_a_demo_warehouse_of_an_earlier_shape_starts_afresh(database_url, engine, schema):
    ddl.prepare(engine, schema, RAW_CHATS)
    with engine.begin() as connection:  # as an earlier version made it
        connection.exec_driver_sql(
            f'CREATE TABLE "{schema}".queue_service_levels (service_day date, offered integer)'
        )
    assert start_afresh_if_earlier(database_url, schema) is True
    assert _tables(engine, schema) == set()
