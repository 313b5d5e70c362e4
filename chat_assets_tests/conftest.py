"""Real parts for every test: an embedded PostgreSQL server and the UJET emulator on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chat_assets.privacy.resource import PrivacyResource
from chat_assets.warehouse.connection import engine_for
from chat_assets_demo.embedded import embedded_database
from chat_assets_tests.support import TEST_PII_KEY

_schemas = itertools.count()
_tenant_schemas = itertools.count()


@pytest.fixture
def privacy() -> PrivacyResource:
    return PrivacyResource(pii_key=TEST_PII_KEY)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A real PostgreSQL for the session: the embedded server, data in a temporary folder, or
    the server at CHAT_ASSETS_TEST_DATABASE_URL (each test works in a schema of its own)."""
    if url := os.environ.get("CHAT_ASSETS_TEST_DATABASE_URL"):
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix="chat_assets_pg_") as state,
        embedded_database(Path(state)) as url,
    ):
        yield url


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    return engine_for(database_url)


@pytest.fixture
def schema(engine: sa.Engine) -> Iterator[str]:
    """A schema of the test's own, dropped afterwards."""
    name = f"t{next(_schemas)}_{Path(tempfile.mktemp()).name[-6:].lower()}"
    yield name
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def schemas(engine: sa.Engine) -> Iterator[dict[str, str]]:
    """A schema of the test's own per tenant (acme, globex), dropped afterwards."""
    n = next(_tenant_schemas)
    names = {tenant: f"t_component_{n}_{tenant}" for tenant in ("acme", "globex")}
    yield names
    with engine.begin() as connection:
        for name in names.values():
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared deployed topology (chat_assets_tests.topology) run last, in their
    order: it is started for the first of them and stopped after the last, so no other test
    shares the machine with its services and the runs its sensor starts."""
    shared = {"deployment", "ui_deployment"}

    def on_shared(item: pytest.Item) -> bool:
        uses = shared & set(getattr(item, "fixturenames", ()))
        return bool(uses) and item.get_closest_marker("topology") is not None

    items.sort(key=on_shared)
