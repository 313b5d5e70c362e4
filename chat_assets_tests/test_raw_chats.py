"""raw_chats through real Dagster runs, the emulator over HTTP and a real PostgreSQL."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from chat_assets.collection import YOUNG
from chat_assets.location import production_definitions, production_resources
from chat_assets.partitions import daily_partitions
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.resource import PrivacyResource
from chat_assets.privacy.sanitize import WindowSanitizer
from chat_assets.raw_chats import build_raw_chats
from chat_assets.settings import Settings, SettingsError
from chat_assets.tables import RAW_CHATS
from chat_assets.ujet.resource import UjetResource
from chat_assets.warehouse import windows
from chat_assets.warehouse.connection import engine_for
from chat_assets.warehouse.io_manager import warehouse_resources
from chat_assets.warehouse.resource import Warehouse
from chat_assets_demo.embedded import embedded_database_url
from chat_assets_demo.emulator import StoredChat, UjetEmulator
from chat_assets_demo.location import demo_definitions
from chat_assets_demo.resource import DemoUjetResource
from chat_assets_tests.support import TEST_PII_KEY
from chat_assets_tests.windows import day_window, landing_frame

DAY = "2026-01-05"


@pytest.fixture
def settings(monkeypatch) -> Settings:
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
    monkeypatch.setenv("CHAT_ASSETS_TIMEZONE", "Asia/Seoul")
    return Settings.from_env()


def materialize_raw(
    settings: Settings,
    ujet: UjetResource,
    database_url: str,
    schema: str,
    *,
    raise_on_error: bool = True,
    instance: dg.DagsterInstance | None = None,
):
    warehouse = Warehouse(database_url=database_url, db_schema=schema)
    return dg.materialize(
        [build_raw_chats(daily_partitions(settings), warehouse)],
        partition_key=DAY,
        instance=instance,
        resources={
            "ujet": ujet,
            "privacy": PrivacyResource(pii_key=TEST_PII_KEY),
            **warehouse_resources(warehouse),
        },
        raise_on_error=raise_on_error,
    )


def stored(engine, schema: str) -> list[tuple]:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            f"SELECT partition_key, id, updated_at, payload FROM {schema}.raw_chats ORDER BY id"
        ).fetchall()


def test_materializing_twice_leaves_identical_rows(settings, database_url, engine, schema):
    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=150) as emulator:
        ujet = UjetResource(
            base_url=emulator.base_url, company_key="k", company_secret="s", requests_per_second=50
        )
        first_run = materialize_raw(settings, ujet, database_url, schema)
        first = stored(engine, schema)
        second_run = materialize_raw(settings, ujet, database_url, schema)
    assert first_run.success and second_run.success
    assert stored(engine, schema) == first
    start, end = day_window(date(2026, 1, 5), "Asia/Seoul")
    assert first and all(start <= row[2] < end for row in first)
    assert {row[0] for row in first} == {DAY}
    metadata = second_run.asset_materializations_for_node("raw_chats")[0].metadata
    assert metadata["source"].value == "ujet"
    assert metadata["records"].value == len(first)
    assert metadata["pages"].value >= 2
    assert metadata["dagster/row_count"].value == len(first)


def test_pages_are_sanitized_with_the_collector_held_back(
    settings, database_url, schema, monkeypatch
):
    thresholds: list[int] = []
    page = WindowSanitizer.page

    def watched(self, records):
        thresholds.append(gc.get_threshold()[0])
        return page(self, records)

    monkeypatch.setattr(WindowSanitizer, "page", watched)
    before = gc.get_threshold()
    with UjetEmulator(company_key="k", company_secret="s", chats_per_day=150) as emulator:
        ujet = UjetResource(
            base_url=emulator.base_url, company_key="k", company_secret="s", requests_per_second=50
        )
        assert materialize_raw(settings, ujet, database_url, schema).success
    assert len(thresholds) >= 2 and set(thresholds) == {max(YOUNG, before[0])}
    assert gc.get_threshold() == before


def test_no_warehouse_transaction_stays_open_while_ujet_is_read(
    settings, database_url, engine, schema
):
    """A server that takes 0.4 s to answer each page: the fetch takes seconds, and every
    transaction of the warehouse meanwhile (pg_stat_activity, sampled) lasts a fraction of it."""
    longest = 0.0
    done = threading.Event()

    def watch() -> None:
        nonlocal longest
        with engine.connect() as connection:
            while not done.wait(0.02):
                seconds = connection.exec_driver_sql(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                ).scalar()
                longest = max(longest, float(seconds))
                connection.commit()

    with UjetEmulator(
        company_key="k", company_secret="s", chats_per_day=2000, personality="slow_strict_10"
    ) as emulator:
        ujet = UjetResource(
            base_url=emulator.base_url, company_key="k", company_secret="s", requests_per_second=10
        )
        watcher = threading.Thread(target=watch)
        watcher.start()
        began = time.monotonic()
        try:
            run = materialize_raw(settings, ujet, database_url, schema)
        finally:
            done.set()
            watcher.join()
        took = time.monotonic() - began
    assert run.success
    metadata = run.asset_materializations_for_node("raw_chats")[0].metadata
    assert metadata["pages"].value >= 20 and metadata["requests_in_flight"].value >= 3
    assert took > 2.0 and longest < took / 3


def test_demo_source_says_so(settings, database_url, engine, schema):
    result = materialize_raw(settings, DemoUjetResource(), database_url, schema)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_chats")[0].metadata
    assert metadata["source"].value == "demo"
    assert metadata["records"].value == len(stored(engine, schema)) > 0


def test_a_one_page_day_is_counted_in_the_singular(settings, database_url, schema):
    """The run's line on what was fetched: 1 page and 1 request, not "1 pages"."""
    with (
        UjetEmulator(company_key="k", company_secret="s", chats_per_day=20) as emulator,
        dg.instance_for_test() as instance,
    ):
        # At one request every 2 s, no second request starts while the first is answered.
        ujet = UjetResource(
            base_url=emulator.base_url, company_key="k", company_secret="s", requests_per_second=0.5
        )
        result = materialize_raw(settings, ujet, database_url, schema, instance=instance)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    said = [m for m in messages if m.startswith("source: ujet: ")]
    assert len(said) == 1, messages
    assert re.fullmatch(
        r"source: ujet: \d+ chats from 1 page \(API total \d+, 0 duplicates dropped, "
        r"at most 1 request in flight at once\)",
        said[0],
    ), said[0]


def test_bad_credentials_fail_the_run_with_a_clear_message(settings, database_url, schema):
    with UjetEmulator(company_key="k", company_secret="s") as emulator:
        ujet = UjetResource(
            base_url=emulator.base_url, company_key="k", company_secret="wrong-secret-123"
        )
        result = materialize_raw(settings, ujet, database_url, schema, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    text = failure.to_string()
    assert "UJET_COMPANY_KEY" in text
    assert "wrong-secret-123" not in text


PRODUCTION_ENV = {
    "UJET_SUBDOMAIN": "acme",
    "UJET_COMPANY_KEY": "k",
    "UJET_COMPANY_SECRET": "s",
    "CHAT_ASSETS_PII_KEY": TEST_PII_KEY,
    "CHAT_ASSETS_DATABASE_URL": "postgresql+psycopg://loader:pw@db.internal:5432/warehouse",
}


def load_definitions(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`import chat_assets.definitions` in a fresh interpreter with exactly these settings;
    prints the demo modules it loaded."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("UJET_", "CHAT_ASSETS_"))}
    code = (
        "import sys, chat_assets.definitions as d; d.defs.get_assets_def('raw_chats'); "
        "print(sorted(m for m in sys.modules if m.startswith('chat_assets_demo')))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, timeout=120
    )


COLLECTIONS_WHILE_LOADING = """
import gc
import dagster
before, walks = gc.get_threshold(), []
gc.callbacks.append(lambda phase, info: walks.append(phase) if phase == "start" else None)
import chat_assets.definitions
print(len(walks), gc.get_threshold() == before)
"""


def test_loading_the_location_leaves_the_collector_alone_until_it_is_loaded():
    """A run's process loads the location: its modules' objects are made with the collector
    held back, and the thresholds come back once it is loaded."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("UJET_", "CHAT_ASSETS_"))}
    loaded = subprocess.run(
        [sys.executable, "-c", COLLECTIONS_WHILE_LOADING],
        env=clean | PRODUCTION_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    walks, restored = loaded.stdout.split()
    assert int(walks) < 20 and restored == "True"


OWN_WARNINGS = """
import pathlib, warnings
import dagster as dg
ours = [str(pathlib.Path(m.__file__).parent) for m in (__import__("chat_assets"),
        __import__("chat_assets_demo"))]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import chat_assets.definitions, chat_assets_demo.definitions
    for module in (chat_assets.definitions, chat_assets_demo.definitions):
        dg.Definitions.validate_loadable(module.defs)
        for job in module.defs.get_repository_def().get_all_jobs():
            job.partitions_def
for w in caught:
    if w.filename.startswith(tuple(ours)):
        print(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}")
"""


def test_the_locations_use_no_deprecated_dagster_api(tmp_path):
    """Warnings our own code raises (Dagster's from inside itself are Dagster's to fix)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("UJET_", "CHAT_ASSETS_"))}
    env = clean | PRODUCTION_ENV | {"CHAT_ASSETS_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", OWN_WARNINGS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""


def test_production_definitions_load_no_demo_module():
    loaded = load_definitions(PRODUCTION_ENV)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (("UJET_SUBDOMAIN",), ("UJET_SUBDOMAIN", "UJET_BASE_URL")),
        (("CHAT_ASSETS_DATABASE_URL",), ("CHAT_ASSETS_DATABASE_URL",)),
        (
            ("UJET_COMPANY_SECRET", "CHAT_ASSETS_PII_KEY"),
            ("UJET_COMPANY_SECRET", "CHAT_ASSETS_PII_KEY"),
        ),
    ],
)
def test_production_definitions_refuse_a_missing_source_or_warehouse(unset, named):
    loaded = load_definitions({k: v for k, v in PRODUCTION_ENV.items() if k not in unset})
    assert loaded.returncode != 0
    assert all(name in loaded.stderr for name in named)
    assert "pw" not in loaded.stderr.splitlines()[-1]


@pytest.mark.parametrize("weak", ["changeme", "ab" * 20])
def test_the_locations_refuse_a_weak_pseudonym_key_as_they_load(monkeypatch, weak):
    loaded = load_definitions(PRODUCTION_ENV | {"CHAT_ASSETS_PII_KEY": weak})
    assert loaded.returncode != 0
    assert "CHAT_ASSETS_PII_KEY" in loaded.stderr.splitlines()[-1]
    assert weak not in loaded.stderr
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY", weak)
    with pytest.raises(SettingsError, match=r"^CHAT_ASSETS_PII_KEY ") as refused:
        demo_definitions()
    assert weak not in str(refused.value)


def test_the_location_refuses_a_base_url_carrying_credentials_as_it_loads():
    """The base URL is resource configuration the UI shows: a key and secret before its host
    would show with it."""
    url = "https://acme-key:s3cret-in-url@acme.ujet.co/manager/api/v1"
    loaded = load_definitions(PRODUCTION_ENV | {"UJET_BASE_URL": url})
    assert loaded.returncode != 0
    assert "UJET_BASE_URL must not carry credentials" in loaded.stderr.splitlines()[-1]
    assert "s3cret-in-url" not in loaded.stderr


def test_production_loads_previous_keys_and_refuses_a_chain_that_cannot_follow(monkeypatch):
    old = "an-old-pseudonym-key-" + "7c6b5a4938271605" * 2
    rotated = PRODUCTION_ENV | {
        "CHAT_ASSETS_PII_PREVIOUS_KEYS": f"k1:{old}",
        "CHAT_ASSETS_PII_KEY_VERSION": "k2",
    }
    for name, value in rotated.items():
        monkeypatch.setenv(name, value)
    privacy = production_definitions().resources["privacy"].process_config_and_initialize()
    assert privacy.pseudonymizer()[0].versions == ("k1", "k2")
    loaded = load_definitions(rotated | {"CHAT_ASSETS_PII_KEY_VERSION": "k1"})
    assert loaded.returncode != 0
    assert "also a version in CHAT_ASSETS_PII_PREVIOUS_KEYS" in loaded.stderr.splitlines()[-1]
    assert old not in loaded.stderr


def test_the_demo_reads_previous_keys_as_production_does(monkeypatch, database_url):
    # After `rotate` on the demo's warehouse, its runs land under the same chain of keys.
    old = "an-old-pseudonym-key-" + "7c6b5a4938271605" * 2
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", database_url)
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY", TEST_PII_KEY)
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY_VERSION", "k2")
    monkeypatch.setenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", f"k1:{old}")
    privacy = demo_definitions().resources["privacy"].process_config_and_initialize()
    expected = Pseudonymizer(TEST_PII_KEY.encode(), "k2", [("k1", old.encode())])
    assert privacy.pseudonymizer()[0].fingerprint == expected.fingerprint


def test_code_locations_load(monkeypatch, database_url):
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    production = production_definitions()
    dg.Definitions.validate_loadable(production)
    assert production.get_assets_def("raw_chats").partitions_def is not None
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", database_url)
    dg.Definitions.validate_loadable(demo_definitions())


def test_real_source_without_credentials_fails_before_any_request(settings, database_url, schema):
    ujet = UjetResource(subdomain="acme")
    result = materialize_raw(settings, ujet, database_url, schema, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "UJET_COMPANY_KEY and UJET_COMPANY_SECRET must both be set" in error


def test_real_source_is_chosen_by_environment(monkeypatch):
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UJET_DOMAIN", "ujet.example")
    monkeypatch.setenv("UJET_REQUESTS_PER_SECOND", "0.5")
    resource = production_resources(Settings.from_env())["ujet"]
    assert resource.source == "ujet"
    assert resource.endpoint() == "https://acme.ujet.example/manager/api/v1"
    assert resource.requests_per_second == 0.5
    monkeypatch.setenv("UJET_REQUESTS_PER_SECOND", "fast")
    with pytest.raises(SettingsError, match="UJET_REQUESTS_PER_SECOND"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("UJET_SUBDOMAIN", "acme.ujet.co", "UJET_SUBDOMAIN must be a host label"),
        ("UJET_SUBDOMAIN", "https://k3y:s3cret@acme", "UJET_SUBDOMAIN must be a host label"),
        ("UJET_DOMAIN", "https://ujet.co", "UJET_DOMAIN must be a domain name"),
        ("UJET_DOMAIN", "ujet.co/", "UJET_DOMAIN must be a domain name"),
        ("UJET_BASE_URL", "https://k3y:s3cret@[acme/manager/api/v1", "UJET_BASE_URL is not a URL"),
    ],
)
def test_a_ujet_host_setting_of_the_wrong_shape_is_refused_as_the_location_loads(
    monkeypatch, database_url, name, value, says
):
    """Found before anything starts, naming the setting and never repeating it (a URL pasted
    there may carry the key and secret), not at the first run as a host that does not resolve;
    the demo, which never reads it, still loads."""
    for setting, text in PRODUCTION_ENV.items():
        monkeypatch.setenv(setting, text)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        production_definitions()
    assert says in str(refused.value) and value not in str(refused.value)
    assert "s3cret" not in str(refused.value)
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", database_url)
    dg.Definitions.validate_loadable(demo_definitions())


def test_production_fails_at_once_on_a_ujet_domain_that_does_not_resolve(
    monkeypatch, settings, database_url, schema
):
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UJET_DOMAIN", "ujet.invalid")  # reserved: never resolves (RFC 6761)
    ujet = production_resources(Settings.from_env())["ujet"]
    started = time.monotonic()
    result = materialize_raw(settings, ujet, database_url, schema, raise_on_error=False)
    assert not result.success
    assert time.monotonic() - started < 10  # five retries with backoff took 16 s
    failure = result.get_step_failure_events()[0].event_specific_data.error
    error = failure.cause.message if failure.cause else failure.message  # Dagster's wrapping
    assert "UJET host acme.ujet.invalid did not resolve (" in error
    assert "check UJET_SUBDOMAIN and UJET_DOMAIN" in error
    assert "retries" not in error


def test_embedded_defaults_end_to_end(tmp_path: Path):
    """`bin/demo materialize DAY`: demo source, embedded PostgreSQL, Dagster's CLI."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UJET_", "CHAT_ASSETS_", "DAGSTER_"))
    }
    env |= {"CHAT_ASSETS_HOME": str(tmp_path / "state"), "CHAT_ASSETS_START_DATE": "2026-01-01"}
    done = subprocess.run(
        [sys.executable, "-m", "chat_assets_demo", "materialize", DAY],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedded PostgreSQL at postgresql+psycopg://" in done.stdout
    url = embedded_database_url(tmp_path / "state")
    rows = stored(engine_for(url), "ujet")
    assert len(rows) > 0
    assert {row[0] for row in rows} == {DAY}


def test_an_unreachable_warehouse_fails_before_the_fetch(settings, schema):
    with UjetEmulator(company_key="k", company_secret="s") as emulator:
        ujet = UjetResource(base_url=emulator.base_url, company_key="k", company_secret="s")
        dead = "postgresql+psycopg://loader:pw-never-shown-9f@127.0.0.1:9/warehouse"
        result = materialize_raw(settings, ujet, dead, schema, raise_on_error=False)
        requests_made = len(emulator.requests)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "127.0.0.1:9" in error and "CHAT_ASSETS_DATABASE_URL" in error
    assert "pw-never-shown-9f" not in error
    assert requests_made == 0


def test_a_bad_chat_costs_only_itself(settings, database_url, engine, schema):
    """The day lands without the chat that has no usable updated_at; complete_window fails and
    names it by id."""
    start, _ = day_window(date.fromisoformat(DAY), settings.timezone)
    good = [
        {"id": i, "updated_at": (start.replace(tzinfo=None).isoformat() + f".{i:03d}Z")}
        for i in range(1, 4)
    ]
    broken = StoredChat(start, {"id": 77, "updated_at": "not a time"})
    with UjetEmulator(company_key="k", company_secret="s", records=[*good, broken]) as emulator:
        ujet = UjetResource(base_url=emulator.base_url, company_key="k", company_secret="s")
        result = materialize_raw(settings, ujet, database_url, schema)
    assert [row[1] for row in stored(engine, schema)] == [1, 2, 3]
    complete = {e.check_name: e for e in result.get_asset_check_evaluations()}["complete_window"]
    assert not complete.passed
    assert complete.metadata["left_out_chats"].value == ["id 77"]
    materialization = result.asset_materializations_for_node("raw_chats")[0]
    assert materialization.metadata["left_out"].value == 1


def test_an_owned_schema_works_without_create_on_the_database(database_url, engine, schema):
    """The README's promise: a role that owns an existing schema but may not CREATE on the
    database loads into it (even `CREATE SCHEMA IF NOT EXISTS` needs CREATE)."""
    role = f"{schema}_loader"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw'")
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
        database = connection.exec_driver_sql("SELECT current_database()").scalar()
        connection.exec_driver_sql(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
    url = engine.url.set(username=role, password="pw")
    try:
        role_engine = engine_for(url.render_as_string(hide_password=False))
        frame = landing_frame([{"id": 1, "updated_at": "2026-01-05T01:00:00Z"}], "UTC", "k1:test")
        start, end = day_window(date(2026, 1, 5), "UTC")
        windows.replace_window(role_engine, schema, RAW_CHATS, frame, start, end)
        assert len(stored(engine, schema)) == 1
        role_engine.dispose()
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("pg_catalog", "reserved"),
        ("pg_mine", "reserved"),
        ("information_schema", "reserved"),
        ("s" * 64, "63"),
        ("1abc", "plain identifier"),
        ("ü_schema", "plain identifier"),
    ],
)
def test_schemas_postgresql_would_refuse_or_truncate_are_refused(monkeypatch, value, says):
    monkeypatch.setenv("CHAT_ASSETS_SCHEMA", value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert "CHAT_ASSETS_SCHEMA" in str(caught.value) and says in str(caught.value)


def test_the_demo_command_refuses_production_without_an_account():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("UJET_", "CHAT_ASSETS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "chat_assets_demo", "--production", "materialize", DAY],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    # Everything missing is named at once, not one setting per attempt.
    for name in (
        "UJET_SUBDOMAIN",
        "UJET_BASE_URL",
        "CHAT_ASSETS_PII_KEY",
        "CHAT_ASSETS_DATABASE_URL",
    ):
        assert name in done.stderr, name
    assert "Traceback" not in done.stderr
