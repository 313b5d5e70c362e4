"""The Dagster instance's pooled PostgreSQL storage, on a real server: its connections stay open
across queries, in the process that loads dagster.yaml and in one rebuilt from its ref (a run
worker's), and a connection the server dropped is replaced before a query needs it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from chat_assets.instance_storage import PooledPostgresStorage

QUERIES = 30


@pytest.fixture
def dagster_database(engine: sa.Engine) -> Iterator[str]:
    """A database of the test's own, for Dagster's tables."""
    name = f"dagster_{secrets.token_hex(4)}"
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield name
    with autocommit.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def instance(
    tmp_path: Path, engine: sa.Engine, dagster_database: str
) -> Iterator[dg.DagsterInstance]:
    url = engine.url.set(drivername="postgresql+psycopg2", database=dagster_database)
    config = {
        "storage": {
            "custom": {
                "module": "chat_assets.instance_storage",
                "class": "PooledPostgresStorage",
                "config": {"postgres_url": url.render_as_string(hide_password=False)},
            }
        },
        "telemetry": {"enabled": False},
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(tmp_path)) as loaded:
        yield loaded


def sessions(engine: sa.Engine, database: str) -> int:
    """Connections to database that have ended (PostgreSQL counts one when it closes)."""
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT sessions FROM pg_stat_database WHERE datname = %(name)s", {"name": database}
        ).scalar_one()


def query_runs_and_events(instance: dg.DagsterInstance, times: int) -> None:
    for _ in range(times):
        instance.get_runs_count()
        instance.get_latest_materialization_event(dg.AssetKey("raw_chats"))
        instance.all_instigator_state()


@pytest.mark.parametrize("rebuilt", [False, True], ids=["loaded", "from_ref"])
def test_queries_share_open_connections(instance, engine, dagster_database, rebuilt):
    target = dg.DagsterInstance.from_ref(instance.get_ref()) if rebuilt else instance
    assert target.get_ref().storage_data.class_name == PooledPostgresStorage.__name__
    query_runs_and_events(target, 1)  # the storages' connections are open from here on
    before = sessions(engine, dagster_database)
    query_runs_and_events(target, QUERIES)
    # Each of the 3 x QUERIES queries would otherwise open, and close, a connection of its own.
    assert sessions(engine, dagster_database) - before == 0


def test_a_dropped_connection_is_replaced_before_a_query(instance, engine, dagster_database):
    run = instance.create_run_for_job(dg.GraphDefinition(name="g").to_job(), run_id=None)
    assert instance.get_runs_count() == 1
    with engine.connect() as connection:
        dropped = connection.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %(n)s",
            {"n": dagster_database},
        ).scalar_one()
    assert dropped >= 1
    assert instance.get_run_by_id(run.run_id) is not None
    assert instance.get_runs_count() == 1
